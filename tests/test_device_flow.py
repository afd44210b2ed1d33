"""``DeviceFlow`` and ``AsyncDeviceFlow`` against the emulator over real HTTP: pending until
approved (through the control endpoint and through the ``/activate`` page), ``slow_down``
lengthening the interval, an expired pair (``invalid_code_pair`` from LWA, or no poll
after the expiry), a denied pair (``invalid_grant``), an unknown client, and the tokens it
grants working at token-info and with the refresh grant (no new refresh token without the
secret). The sleep is injected: it moves the fake clock the emulator shares."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from dataclasses import replace

import httpx
import pytest

from lwa_middleware import (
    AsyncDeviceFlow,
    DeviceFlow,
    InvalidClient,
    InvalidCodePair,
    InvalidGrant,
    TokenClient,
    TokenGrant,
)
from lwa_middleware.core.device import Wait
from lwa_middleware.emulator import Emulator
from lwa_middleware.upstream.client import LWAClient

from conftest import FakeClock

MODES = ["sync", "async"]


class Sleeper:
    """The injected sleep: moves the clock, and runs ``then(calls)`` after each sleep."""

    def __init__(self, clock: FakeClock, then: Callable[[int], None] | None = None) -> None:
        self.clock = clock
        self.then = then
        self.slept: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.clock.advance(seconds)
        if self.then is not None:
            self.then(len(self.slept))

    async def asleep(self, seconds: float) -> None:
        self(seconds)


def run_flow(
    mode: str,
    emu: Emulator,
    emu_url: str,
    clock: FakeClock,
    sleeper: Sleeper,
    *,
    tweak: Callable[[object], object] | None = None,
    client_id: str | None = None,
    waits: list[Wait] | None = None,
) -> tuple[TokenGrant, DeviceFlow | AsyncDeviceFlow]:
    """Start and wait (sync or async); ``tweak`` changes the pair before polling."""
    on_wait = None if waits is None else waits.append
    if mode == "sync":
        with DeviceFlow(
            client_id or emu.client_id, api_base_url=emu_url, clock=clock, sleep=sleeper
        ) as flow:
            pair = flow.start()
            if tweak is not None:
                pair = tweak(pair)  # type: ignore[assignment]
            return flow.wait(pair, on_wait=on_wait), flow

    async def main() -> tuple[TokenGrant, AsyncDeviceFlow]:
        async with AsyncDeviceFlow(
            client_id or emu.client_id, api_base_url=emu_url, clock=clock, sleep=sleeper.asleep
        ) as flow:
            pair = await flow.start()
            if tweak is not None:
                pair = tweak(pair)  # type: ignore[assignment]
            return await flow.wait(pair, on_wait=on_wait), flow

    return asyncio.run(main())


def only_pair(emu: Emulator) -> str:
    (user_code,) = emu.code_pairs
    return user_code


@pytest.mark.parametrize("mode", MODES)
def test_pending_until_approved(mode: str, emu: Emulator, emu_url: str, clock: FakeClock) -> None:
    emu.device_interval = 1
    user = emu.add_user(name="Grace Hopper", email="grace@example.com")

    def approve_on_third(calls: int) -> None:
        if calls == 3:
            emu.approve_code_pair(only_pair(emu), user)

    waits: list[Wait] = []
    grant, flow = run_flow(mode, emu, emu_url, clock, Sleeper(clock, approve_on_third), waits=waits)
    assert flow.poll is not None
    assert flow.poll.polls == 3  # two pending answers, then the tokens
    assert [w.interval for w in waits] == [1.0, 1.0, 1.0]
    assert emu.token_calls["device_code"] == 3
    assert grant.refresh_token is not None
    with LWAClient(emu_url) as client:
        info = client.tokeninfo(grant.access_token, now=clock())
        assert (info.aud, info.user_id) == (emu.client_id, user.user_id)
        assert client.profile(grant.access_token).name == "Grace Hopper"


def test_approved_through_the_activate_page(emu: Emulator, emu_url: str, clock: FakeClock) -> None:
    emu.device_interval = 1
    user = emu.add_user()

    def approve_on_page(calls: int) -> None:
        if calls == 1:
            with httpx.Client() as http:
                page = http.get(f"{emu_url}/activate")
                assert page.status_code == 200
                form = {"user_code": only_pair(emu).lower(), "user": user.user_id}
                answer = http.post(f"{emu_url}/activate", data={**form, "decision": "approve"})
                assert answer.status_code == 200, answer.text

    grant, _ = run_flow("sync", emu, emu_url, clock, Sleeper(clock, approve_on_page))
    assert grant.access_token.startswith("Atza|")


@pytest.mark.parametrize("mode", MODES)
def test_slow_down_lengthens_the_interval(
    mode: str, emu: Emulator, emu_url: str, clock: FakeClock
) -> None:
    emu.device_interval = 2  # the pair asks for 2 s; the client polls at once (interval 0)

    def approve_after_slow_down(calls: int) -> None:
        if calls == 1:
            emu.approve_code_pair(only_pair(emu))

    sleeper = Sleeper(clock, approve_after_slow_down)
    waits: list[Wait] = []
    grant, flow = run_flow(
        mode,
        emu,
        emu_url,
        clock,
        sleeper,
        tweak=lambda pair: replace(pair, interval=0),  # type: ignore[type-var]
        waits=waits,
    )
    assert grant.access_token
    assert flow.poll is not None
    assert flow.poll.slowed == 1
    assert flow.poll.interval == 5.0  # 0 + 5 s (RFC 8628's rule)
    assert sleeper.slept == [pytest.approx(5.0)]
    assert [w.interval for w in waits] == [5.0]
    assert emu.token_calls["device_code"] == 3  # pending, slow_down, the tokens


@pytest.mark.parametrize("mode", MODES)
def test_expired_pair_is_invalid_code_pair(
    mode: str, emu: Emulator, emu_url: str, clock: FakeClock
) -> None:
    emu.device_interval = 1
    emu.code_pair_lifetime = 10
    # LWA's answer: the client thinks the pair lives longer than it does
    with pytest.raises(InvalidCodePair) as caught:
        run_flow(
            mode,
            emu,
            emu_url,
            clock,
            Sleeper(clock),
            tweak=lambda pair: replace(pair, expires_in=600),  # type: ignore[type-var]
        )
    assert "Request a new code pair" in caught.value.description
    assert emu.token_calls["device_code"] == 10  # polls at 1..9 s pending, 10 s expired


def test_no_poll_after_the_pair_expires(emu: Emulator, emu_url: str, clock: FakeClock) -> None:
    emu.device_interval = 1
    emu.code_pair_lifetime = 10
    with pytest.raises(InvalidCodePair) as caught:
        run_flow("sync", emu, emu_url, clock, Sleeper(clock))
    assert "expired before it was approved" in caught.value.description
    assert emu.token_calls["device_code"] == 9


@pytest.mark.parametrize("mode", MODES)
def test_denied_is_invalid_grant(mode: str, emu: Emulator, emu_url: str, clock: FakeClock) -> None:
    emu.device_interval = 1

    def deny(calls: int) -> None:
        if calls == 2:
            emu.deny_code_pair(only_pair(emu))

    with pytest.raises(InvalidGrant) as caught:
        run_flow(mode, emu, emu_url, clock, Sleeper(clock, deny))
    assert "denied" in caught.value.description


def test_unknown_client(emu: Emulator, emu_url: str, clock: FakeClock) -> None:
    with pytest.raises(InvalidClient):
        run_flow("sync", emu, emu_url, clock, Sleeper(clock), client_id="amzn1.nobody")


def test_a_redeemed_pair_gives_no_tokens_again(
    emu: Emulator, emu_url: str, clock: FakeClock
) -> None:
    emu.device_interval = 0
    with DeviceFlow(emu.client_id, api_base_url=emu_url, clock=clock, sleep=clock.advance) as flow:
        pair = flow.start()
        emu.approve_code_pair(pair.user_code)
        assert flow.wait(pair).access_token
        with pytest.raises(InvalidGrant):
            flow.wait(pair)


def test_refresh_without_secret_keeps_the_refresh_token(
    emu: Emulator, emu_url: str, clock: FakeClock
) -> None:
    emu.device_interval = 0
    with DeviceFlow(emu.client_id, api_base_url=emu_url, clock=clock, sleep=clock.advance) as flow:
        pair = flow.start()
        emu.approve_code_pair(pair.user_code)
        first = flow.wait(pair)
    assert first.refresh_token is not None
    with TokenClient(emu_url) as client:
        refreshed = client.refresh(first.refresh_token, client_id=emu.client_id)
    assert refreshed.refresh_token is None  # none without the secret: keep the old one
    assert refreshed.access_token != first.access_token


def test_reprs_hold_no_codes_or_tokens(emu: Emulator, emu_url: str, clock: FakeClock) -> None:
    emu.device_interval = 0
    with DeviceFlow(emu.client_id, api_base_url=emu_url, clock=clock, sleep=clock.advance) as flow:
        pair = flow.start()
        emu.approve_code_pair(pair.user_code)
        grant = flow.wait(pair)
        shown = " ".join(map(repr, (flow, pair, flow.poll, grant)))
    for secret in (pair.device_code, grant.access_token, grant.refresh_token or "-"):
        assert secret not in shown
    assert re.search(r"DeviceFlow\('amzn1", shown)
