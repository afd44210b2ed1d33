"""``DeviceFlow`` and ``AsyncDeviceFlow``: the code-pair sign-in's I/O, over the
:mod:`lwa_middleware.core.device` core.

They only send what :class:`~lwa_middleware.core.device.DevicePoll` decides and sleep as long as
it says: :meth:`DeviceFlow.start` asks for a code pair, :meth:`DeviceFlow.wait` polls until
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
from types import TracebackType

import anyio

from lwa_middleware.core.device import (
    MAX_INTERVAL,
    MAX_UNAVAILABLE,
    SLOW_DOWN_STEP,
    CodePair,
    DevicePoll,
    Granted,
    Poll,
    Stop,
    Wait,
)
from lwa_middleware.core.grants import DEVICE_GRANT_ERRORS, GrantError, TokenGrant
from lwa_middleware.core.settings import resolve_api_base_url
from lwa_middleware.upstream.token_client import AsyncTokenClient, TokenClient

__all__ = ["AsyncDeviceFlow", "DeviceFlow"]

Clock = Callable[[], float]
OnWait = Callable[[Wait], None]


class _DeviceFlowBase:
    def __init__(
        self,
        client_id: str,
        *,
        scope: str,
        slow_down_step: float,
        max_interval: float,
        max_unavailable: int,
        min_interval: float,
        clock: Clock,
    ) -> None:
        self.client_id = client_id
        self.scope = scope
        self.clock = clock
        self.slow_down_step = slow_down_step
        self.max_interval = max_interval
        self.max_unavailable = max_unavailable
        self.min_interval = min_interval
        #: The poller of the last :meth:`wait` (its ``interval``, ``polls``, ``slowed``).
        self.poll: DevicePoll | None = None

    def _poller(self, pair: CodePair, api_base_url: str) -> DevicePoll:
        self.poll = DevicePoll(
            pair,
            api_base_url,
            slow_down_step=self.slow_down_step,
            max_interval=self.max_interval,
            max_unavailable=self.max_unavailable,
            min_interval=self.min_interval,
        )
        return self.poll

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.client_id!r}, scope={self.scope!r})"


class DeviceFlow(_DeviceFlowBase):
    """The code-pair sign-in, blocking. ``token_client`` (kept open by its owner) or the
    options of a :class:`~lwa_middleware.upstream.token_client.TokenClient` of its own."""

    def __init__(
        self,
        client_id: str,
        *,
        scope: str = "profile",
        api_base_url: str | None = None,
        region: str | None = None,
        token_client: TokenClient | None = None,
        timeout: float = 5.0,
        allow_insecure_http: bool = False,
        sleep: Callable[[float], object] = time.sleep,
        clock: Clock = time.time,
        slow_down_step: float = SLOW_DOWN_STEP,
        max_interval: float = MAX_INTERVAL,
        max_unavailable: int = MAX_UNAVAILABLE,
        min_interval: float = 0.0,
    ) -> None:
        super().__init__(
            client_id,
            scope=scope,
            slow_down_step=slow_down_step,
            max_interval=max_interval,
            max_unavailable=max_unavailable,
            min_interval=min_interval,
            clock=clock,
        )
        self._own = token_client is None
        self.token_client = token_client or TokenClient(
            resolve_api_base_url(api_base_url, region),
            timeout=timeout,
            allow_insecure_http=allow_insecure_http,
        )
        self.sleep = sleep

    def start(self) -> CodePair:
        """Ask LWA for a code pair (``GrantError`` if it refuses or cannot answer)."""
        return self.token_client.create_code_pair(
            self.client_id, scope=self.scope, clock=self.clock
        )

    def wait(self, pair: CodePair, *, on_wait: OnWait | None = None) -> TokenGrant:
        """Poll until ``pair`` is approved: its tokens, or the ``GrantError`` that ended it."""
        poller = self._poller(pair, self.token_client.api_base_url)
        decision = poller.decide(self.clock())
        while True:
            if isinstance(decision, Wait):
                if on_wait is not None:
                    on_wait(decision)
                self.sleep(decision.seconds)
                decision = poller.decide(self.clock())
            elif isinstance(decision, Poll):
                answer: TokenGrant | GrantError
                try:
                    answer = self.token_client.grant(decision.request, errors=DEVICE_GRANT_ERRORS)
                except GrantError as error:
                    answer = error
                decision = poller.decide(self.clock(), answer)
            elif isinstance(decision, Granted):
                return decision.grant
            else:
                assert isinstance(decision, Stop)
                raise decision.error

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


class AsyncDeviceFlow(_DeviceFlowBase):
    """The code-pair sign-in, async (asyncio or trio): :class:`DeviceFlow`'s twin."""

    def __init__(
        self,
        client_id: str,
        *,
        scope: str = "profile",
        api_base_url: str | None = None,
        region: str | None = None,
        token_client: AsyncTokenClient | None = None,
        timeout: float = 5.0,
        allow_insecure_http: bool = False,
        sleep: Callable[[float], Awaitable[object]] = anyio.sleep,
        clock: Clock = time.time,
        slow_down_step: float = SLOW_DOWN_STEP,
        max_interval: float = MAX_INTERVAL,
        max_unavailable: int = MAX_UNAVAILABLE,
        min_interval: float = 0.0,
    ) -> None:
        super().__init__(
            client_id,
            scope=scope,
            slow_down_step=slow_down_step,
            max_interval=max_interval,
            max_unavailable=max_unavailable,
            min_interval=min_interval,
            clock=clock,
        )
        self._own = token_client is None
        self.token_client = token_client or AsyncTokenClient(
            resolve_api_base_url(api_base_url, region),
            timeout=timeout,
            allow_insecure_http=allow_insecure_http,
        )
        self.sleep = sleep

    async def start(self) -> CodePair:
        """Ask LWA for a code pair (``GrantError`` if it refuses or cannot answer)."""
        return await self.token_client.create_code_pair(
            self.client_id, scope=self.scope, clock=self.clock
        )

    async def wait(self, pair: CodePair, *, on_wait: OnWait | None = None) -> TokenGrant:
        """Poll until ``pair`` is approved: its tokens, or the ``GrantError`` that ended it."""
        poller = self._poller(pair, self.token_client.api_base_url)
        decision = poller.decide(self.clock())
        while True:
            if isinstance(decision, Wait):
                if on_wait is not None:
                    on_wait(decision)
                await self.sleep(decision.seconds)
                decision = poller.decide(self.clock())
            elif isinstance(decision, Poll):
                answer: TokenGrant | GrantError
                try:
                    answer = await self.token_client.grant(
                        decision.request, errors=DEVICE_GRANT_ERRORS
                    )
                except GrantError as error:
                    answer = error
                decision = poller.decide(self.clock(), answer)
            elif isinstance(decision, Granted):
                return decision.grant
            else:
                assert isinstance(decision, Stop)
                raise decision.error

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
