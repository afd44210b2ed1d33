"""Both LWA clients against the emulator over real HTTP (uvicorn on 127.0.0.1).

One emulator serves the whole module (with a fake clock); each test starts from a
clean state (``reset()``) and runs on both clients (``mode``). Call counts read from the
emulator prove the retry policy end to end: 500, 503 and connection resets are retried
once; 429, unusable answers and timeouts are not.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from typing import Any

import pytest

from lwa_middleware.core.errors import (
    InsufficientScope,
    InvalidToken,
    LWAError,
    LWAUnavailable,
    ServerError,
)
from lwa_middleware.core.models import Profile, TokenInfo
from lwa_middleware.emulator import Emulator
from lwa_middleware.upstream.client import AsyncLWAClient, LWAClient

MODES = ["sync", "async"]
START = 1_800_000_000.0


class FakeClock:
    """A settable clock for the emulator (epoch seconds)."""

    def __init__(self, now: float = START) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def fake_clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(scope="module")
def served(fake_clock: FakeClock) -> Iterator[Emulator]:
    emulator = Emulator(clock=fake_clock, hang_seconds=5.0)
    emulator.start()
    try:
        yield emulator
    finally:
        emulator.stop()


@pytest.fixture
def emu(served: Emulator, fake_clock: FakeClock) -> Emulator:
    """The module's emulator, with no users, tokens, faults or counts, at ``START``.

    It overrides conftest's ``emu``: this module wants an absolute clock of its own.
    """
    served.reset()
    fake_clock.now = START
    return served


def verify(
    mode: str, emu: Emulator, token: str, *, now: float | None = None, **options: Any
) -> tuple[TokenInfo, Profile]:
    """Token-info then profile through the ``mode`` client; a new client per call."""
    options.setdefault("timeout", 3.0)
    if mode == "sync":
        with LWAClient(emu.url, **options) as client:
            return client.tokeninfo(token, now=now), client.profile(token)

    async def main() -> tuple[TokenInfo, Profile]:
        async with AsyncLWAClient(emu.url, **options) as client:
            info = await client.tokeninfo(token, now=now)
            return info, await client.profile(token)

    return asyncio.run(main())


def one(mode: str, emu: Emulator, endpoint: str, token: str, **options: Any) -> Any:
    """A single call to ``endpoint`` through the ``mode`` client."""
    options.setdefault("timeout", 3.0)
    if mode == "sync":
        with LWAClient(emu.url, **options) as client:
            if endpoint == "tokeninfo":
                return client.tokeninfo(token)
            return client.profile(token)

    async def main() -> Any:
        async with AsyncLWAClient(emu.url, **options) as client:
            if endpoint == "tokeninfo":
                return await client.tokeninfo(token)
            return await client.profile(token)

    return asyncio.run(main())


def error_of(mode: str, emu: Emulator, endpoint: str, token: str, **options: Any) -> LWAError:
    """The typed error a single call raises (anything else fails the test)."""
    with pytest.raises(LWAError) as caught:
        one(mode, emu, endpoint, token, **options)
    return caught.value


# Success ------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(
    ("scopes", "fields", "granted"),
    [
        (["profile"], {"name", "email"}, {"profile", "profile:user_id"}),
        (["profile:user_id"], set(), {"profile:user_id"}),
        (["postal_code"], {"postal_code"}, {"profile:user_id", "postal_code"}),
        (
            ["profile", "postal_code"],
            {"name", "email", "postal_code"},
            {"profile", "profile:user_id", "postal_code"},
        ),
    ],
    ids=["profile", "user_id", "postal_code", "profile+postal_code"],
)
def test_valid_token_for_each_scope_set(
    mode: str, emu: Emulator, scopes: list[str], fields: set[str], granted: set[str]
) -> None:
    user, token = emu.mint_for(
        name="Grace Hopper", email="grace@example.com", postal_code="10001", scopes=scopes
    )
    info, profile = verify(mode, emu, token, now=START)
    assert info.user_id == user.user_id
    assert info.aud == emu.client_id
    assert info.app_id == emu.app_id
    assert info.iss == "https://www.amazon.com"
    assert info.expires_at == START + 3600
    assert info.issued_at == START
    assert profile.user_id == user.user_id
    expected = {"name": "Grace Hopper", "email": "grace@example.com", "postal_code": "10001"}
    for field, value in expected.items():
        assert getattr(profile, field) == (value if field in fields else None)
    assert set(profile.raw) == {"user_id", *fields}
    assert profile.scopes == granted
    assert emu.calls == {"tokeninfo": 1, "profile": 1}


@pytest.mark.parametrize("mode", MODES)
def test_expires_at_follows_the_seconds_remaining(
    mode: str, emu: Emulator, fake_clock: FakeClock
) -> None:
    _, token = emu.mint_for(lifetime=600)
    fake_clock.now = START + 100
    info, _ = verify(mode, emu, token, now=START + 100)
    assert info.expires_at == START + 600


@pytest.mark.parametrize("mode", MODES)
def test_tokeninfo_and_profile_concurrently(mode: str, emu: Emulator) -> None:
    """What the async verifier does: both requests at once on one pooled client."""
    user, token = emu.mint_for()
    if mode == "sync":
        info, profile = verify(mode, emu, token)
    else:

        async def main() -> tuple[Any, ...]:
            async with AsyncLWAClient(emu.url, timeout=3.0) as client:
                infos = [client.tokeninfo(token) for _ in range(5)]
                profiles = [client.profile(token) for _ in range(5)]
                return tuple(await asyncio.gather(*infos, *profiles))

        results = asyncio.run(main())
        info, profile = results[0], results[5]
        assert emu.calls == {"tokeninfo": 5, "profile": 5}
    assert info.user_id == profile.user_id == user.user_id


@pytest.mark.parametrize("mode", MODES)
def test_latency_within_the_timeout_works(mode: str, emu: Emulator) -> None:
    user, token = emu.mint_for()
    emu.latency(0.2)
    info, profile = verify(mode, emu, token, timeout=3.0)
    assert info.user_id == profile.user_id == user.user_id
    assert emu.calls == {"tokeninfo": 1, "profile": 1}


# Invalid tokens -----------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("endpoint", ["tokeninfo", "profile"])
def test_expired_token_is_invalid(
    mode: str, endpoint: str, emu: Emulator, fake_clock: FakeClock
) -> None:
    _, token = emu.mint_for(lifetime=60)
    assert one(mode, emu, endpoint, token).user_id
    fake_clock.now = START + 61
    assert type(error_of(mode, emu, endpoint, token)) is InvalidToken


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("endpoint", ["tokeninfo", "profile"])
def test_revoked_token_is_invalid(mode: str, endpoint: str, emu: Emulator) -> None:
    _, token = emu.mint_for()
    assert one(mode, emu, endpoint, token).user_id
    assert emu.revoke(token)
    assert type(error_of(mode, emu, endpoint, token)) is InvalidToken
    assert emu.calls[endpoint] == 2, "invalid_token is not retried"


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("endpoint", ["tokeninfo", "profile"])
@pytest.mark.parametrize(
    "token",
    ["Atza|" + "x" * 400, "Atzr|" + "x" * 400, "not-an-lwa-token"],
    ids=["atza", "atzr", "other"],
)
def test_unknown_token_is_invalid(mode: str, endpoint: str, emu: Emulator, token: str) -> None:
    assert type(error_of(mode, emu, endpoint, token)) is InvalidToken
    assert emu.calls[endpoint] == 1


@pytest.mark.parametrize("mode", MODES)
def test_token_without_profile_scope_is_insufficient_on_profile(mode: str, emu: Emulator) -> None:
    user, token = emu.mint_for(scopes=["payments:widget"])
    assert one(mode, emu, "tokeninfo", token).user_id == user.user_id
    error = error_of(mode, emu, "profile", token)
    assert type(error) is InsufficientScope
    assert emu.calls == {"tokeninfo": 1, "profile": 1}


@pytest.mark.parametrize("mode", MODES)
def test_token_for_another_client_is_reported_as_such(mode: str, emu: Emulator) -> None:
    """The client reports ``aud`` as LWA says it; refusing it is the verifier's job."""
    _, token = emu.mint_for(client_id="amzn1.application-oa2-client.other")
    assert one(mode, emu, "tokeninfo", token).aud == "amzn1.application-oa2-client.other"


# Faults -------------------------------------------------------------------------

#: Fault kind → (requests per call: 2 when retried, client timeout).
FAULTS = {
    "500": (2, 3.0),
    "503": (2, 3.0),
    "reset": (2, 3.0),
    "429": (1, 3.0),
    "non_json": (1, 3.0),
    "missing_fields": (1, 3.0),
    "hang": (1, 0.3),
}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("kind", list(FAULTS))
def test_faults_are_unavailable_then_the_token_works(mode: str, kind: str, emu: Emulator) -> None:
    user, token = emu.mint_for()
    emu.fault(kind)
    per_call, timeout = FAULTS[kind]
    for endpoint in ("tokeninfo", "profile"):
        error = error_of(mode, emu, endpoint, token, timeout=timeout)
        assert type(error) is LWAUnavailable
        assert isinstance(error, ServerError)
        assert error.error == "ServerError"
        assert error.status("lwa") == 500
    assert emu.calls == {"tokeninfo": per_call, "profile": per_call}
    emu.clear_faults()
    emu.reset_counts()
    info, profile = verify(mode, emu, token)
    assert info.user_id == profile.user_id == user.user_id
    assert emu.calls == {"tokeninfo": 1, "profile": 1}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("endpoint", ["tokeninfo", "profile"])
@pytest.mark.parametrize("kind", ["500", "503", "reset"])
def test_one_fault_is_survived_by_the_retry(
    mode: str, endpoint: str, kind: str, emu: Emulator
) -> None:
    user, token = emu.mint_for()
    emu.fault(kind, endpoint, times=1)
    assert one(mode, emu, endpoint, token).user_id == user.user_id
    assert emu.calls[endpoint] == 2


@pytest.mark.parametrize("mode", MODES)
def test_two_faults_exhaust_the_retry_then_recover(mode: str, emu: Emulator) -> None:
    user, token = emu.mint_for()
    emu.fault("500", "tokeninfo", times=2)
    assert type(error_of(mode, emu, "tokeninfo", token)) is LWAUnavailable
    assert emu.calls["tokeninfo"] == 2
    assert one(mode, emu, "tokeninfo", token).user_id == user.user_id
    assert emu.calls["tokeninfo"] == 3


@pytest.mark.parametrize("mode", MODES)
def test_fault_on_one_endpoint_leaves_the_other(mode: str, emu: Emulator) -> None:
    user, token = emu.mint_for()
    emu.fault("429", "profile")
    assert one(mode, emu, "tokeninfo", token).user_id == user.user_id
    assert type(error_of(mode, emu, "profile", token)) is LWAUnavailable


@pytest.mark.parametrize("mode", MODES)
def test_latency_beyond_the_timeout_is_unavailable_without_retry(mode: str, emu: Emulator) -> None:
    _, token = emu.mint_for()
    emu.latency(2.0, "tokeninfo")
    error = error_of(mode, emu, "tokeninfo", token, timeout=0.3)
    assert type(error) is LWAUnavailable
    assert "timed out" in error.description
    assert emu.calls["tokeninfo"] == 1


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.mark.parametrize("mode", MODES)
def test_nothing_listening_is_unavailable(mode: str) -> None:
    url = f"http://127.0.0.1:{_closed_port()}"
    if mode == "sync":
        with LWAClient(url, timeout=2.0) as client, pytest.raises(LWAUnavailable) as caught:
            client.tokeninfo("Atza|" + "x" * 400)
    else:

        async def main() -> None:
            async with AsyncLWAClient(url, timeout=2.0) as client:
                await client.profile("Atza|" + "x" * 400)

        with pytest.raises(LWAUnavailable) as caught:
            asyncio.run(main())
    assert "could not be reached" in caught.value.description
