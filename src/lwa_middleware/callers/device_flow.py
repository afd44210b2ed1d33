"""``DeviceFlow`` and ``AsyncDeviceFlow``: the code-pair sign-in's I/O, over the
:mod:`lwa_middleware.core.device` core.

Layer: ``callers`` (for those who call protected routes; see ``ARCHITECTURE.md``).

They only send what :class:`~lwa_middleware.core.device.DevicePoll` decides and sleep as long as
it says (one loop, ``_waiting``, over :meth:`DevicePoll.polling
<lwa_middleware.core.device.DevicePoll.polling>`, run by both): :meth:`DeviceFlow.start`
asks for a code pair, :meth:`DeviceFlow.wait` polls until
the person approved it (the :class:`~lwa_middleware.core.grants.TokenGrant`) or polling is over
(the ``GrantError``: ``InvalidCodePair`` when it expired, ``InvalidGrant`` when it was
denied, …). ``sleep`` (``time.sleep``; async: ``anyio.sleep``) and ``clock``
(``time.time``) are injectable, and ``on_wait`` sees each :class:`~lwa_middleware.core.device.Wait`
before it is slept (a countdown).

::

    flow = DeviceFlow("amzn1.application-oa2-client.abc", scope="profile")
    pair = flow.start()
    print(f"Open {pair.verification_uri} and enter {pair.user_code}")
    grant = flow.wait(pair)

"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from functools import partial
from types import TracebackType
from typing import Any, Generic, TypeVar

import anyio

from lwa_middleware.core.device import (
    MAX_INTERVAL,
    MAX_UNAVAILABLE,
    SLOW_DOWN_STEP,
    CodePair,
    DevicePoll,
    Wait,
)
from lwa_middleware.core.grants import DEVICE_GRANT_ERRORS, GrantError, TokenGrant
from lwa_middleware.core.settings import resolve_api_base_url
from lwa_middleware.upstream.steps import Steps, arun, run
from lwa_middleware.upstream.token_client import AsyncTokenClient, TokenClient

__all__ = ["AsyncDeviceFlow", "DeviceFlow"]

Clock = Callable[[], float]
OnWait = Callable[[Wait], None]
ClientT = TypeVar("ClientT", TokenClient, AsyncTokenClient)


class _DeviceFlowBase(Generic[ClientT]):
    """The code-pair sign-in: ``token_client`` (kept open by its owner), or the options of a
    token client of its own (``api_base_url`` or ``region``, ``timeout``,
    ``allow_insecure_http``). ``sleep`` (default ``time.sleep``; async: ``anyio.sleep``)
    and ``clock`` are for tests; the rest tunes the polling
    (:class:`~lwa_middleware.core.device.DevicePoll`)."""

    def __init__(
        self,
        client_id: str,
        *,
        scope: str = "profile",
        api_base_url: str | None = None,
        region: str | None = None,
        token_client: ClientT | None = None,
        timeout: float = 5.0,
        allow_insecure_http: bool = False,
        sleep: Callable[[float], object] | None = None,
        clock: Clock = time.time,
        slow_down_step: float = SLOW_DOWN_STEP,
        max_interval: float = MAX_INTERVAL,
        max_unavailable: int = MAX_UNAVAILABLE,
        min_interval: float = 0.0,
    ) -> None:
        self.client_id = client_id
        self.scope = scope
        self.clock = clock
        self.sleep = self._default_sleep if sleep is None else sleep
        self._polling: dict[str, Any] = {
            "slow_down_step": slow_down_step,
            "max_interval": max_interval,
            "max_unavailable": max_unavailable,
            "min_interval": min_interval,
        }
        #: The poller of the last :meth:`wait` (its ``interval``, ``polls``, ``slowed``).
        self.poll: DevicePoll | None = None
        self._own = token_client is None
        self.token_client: ClientT = token_client or self._new_client(
            resolve_api_base_url(api_base_url, region), timeout, allow_insecure_http
        )

    def _new_client(self, api_base_url: str, timeout: float, insecure: bool) -> ClientT:
        raise NotImplementedError

    def _default_sleep(self, seconds: float) -> object:
        """The sleep of the shell's kind (``time.sleep`` or ``anyio.sleep``)."""
        raise NotImplementedError

    def _waiting(self, pair: CodePair, on_wait: OnWait | None) -> Steps[TokenGrant]:
        """The polling's steps: sleep as :meth:`DevicePoll.polling
        <lwa_middleware.core.device.DevicePoll.polling>` says, send what it says."""
        self.poll = DevicePoll(pair, self.token_client.api_base_url, **self._polling)
        polling = self.poll.polling(self.clock())
        step = next(polling)  # never done at once: the first poll waits for the interval
        while True:
            answer: TokenGrant | GrantError | None = None
            if isinstance(step, Wait):
                if on_wait is not None:
                    on_wait(step)
                yield partial(self.sleep, step.seconds)
            else:
                try:
                    answer = yield partial(
                        self.token_client.grant, step.request, errors=DEVICE_GRANT_ERRORS
                    )
                except GrantError as error:
                    answer = error
            try:
                step = polling.send((self.clock(), answer))
            except StopIteration as done:
                return done.value  # type: ignore[no-any-return]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.client_id!r}, scope={self.scope!r})"


class DeviceFlow(_DeviceFlowBase[TokenClient]):
    """The code-pair sign-in, blocking: its own
    :class:`~lwa_middleware.upstream.token_client.TokenClient`, or the one given."""

    def _default_sleep(self, seconds: float) -> None:
        time.sleep(seconds)

    def _new_client(self, api_base_url: str, timeout: float, insecure: bool) -> TokenClient:
        return TokenClient(api_base_url, timeout=timeout, allow_insecure_http=insecure)

    def start(self) -> CodePair:
        """Ask LWA for a code pair (``GrantError`` if it refuses or cannot answer)."""
        return self.token_client.create_code_pair(
            self.client_id, scope=self.scope, clock=self.clock
        )

    def wait(self, pair: CodePair, *, on_wait: OnWait | None = None) -> TokenGrant:
        """Poll until ``pair`` is approved: its tokens, or the ``GrantError`` that ended it."""
        return run(self._waiting(pair, on_wait))

    def login(
        self, show: Callable[[CodePair], object], *, on_wait: OnWait | None = None
    ) -> TokenGrant:
        """:meth:`start`, ``show(pair)`` (tell the person where to go), :meth:`wait`."""
        pair = self.start()
        show(pair)
        return self.wait(pair, on_wait=on_wait)

    def close(self) -> None:
        """Close the token client, when this flow opened it."""
        if self._own:
            self.token_client.close()

    def __enter__(self) -> DeviceFlow:
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class AsyncDeviceFlow(_DeviceFlowBase[AsyncTokenClient]):
    """The code-pair sign-in, async (asyncio or trio): :class:`DeviceFlow`'s twin."""

    def _default_sleep(self, seconds: float) -> Awaitable[None]:
        return anyio.sleep(seconds)

    def _new_client(self, api_base_url: str, timeout: float, insecure: bool) -> AsyncTokenClient:
        return AsyncTokenClient(api_base_url, timeout=timeout, allow_insecure_http=insecure)

    async def start(self) -> CodePair:
        """Ask LWA for a code pair (``GrantError`` if it refuses or cannot answer)."""
        return await self.token_client.create_code_pair(
            self.client_id, scope=self.scope, clock=self.clock
        )

    async def wait(self, pair: CodePair, *, on_wait: OnWait | None = None) -> TokenGrant:
        """Poll until ``pair`` is approved: its tokens, or the ``GrantError`` that ended it."""
        return await arun(self._waiting(pair, on_wait))

    async def login(
        self, show: Callable[[CodePair], object], *, on_wait: OnWait | None = None
    ) -> TokenGrant:
        """:meth:`start`, ``show(pair)``, :meth:`wait`."""
        pair = await self.start()
        show(pair)
        return await self.wait(pair, on_wait=on_wait)

    async def aclose(self) -> None:
        """Close the token client's pool of this loop, when this flow opened the client."""
        if self._own:
            await self.token_client.aclose()

    async def __aenter__(self) -> AsyncDeviceFlow:
        return self

    async def __aexit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()
