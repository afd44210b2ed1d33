"""The verifiers' slots against the emulator (real HTTP on 127.0.0.1): at most
``max_concurrent_verifications`` calls at once, newest waiter first, the oldest pushed out
of a full queue, no slot ever leaked (a waiter cancelled, timed out or pushed out), and
``timeout`` a deadline for the wait too."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from lwa_middleware import Identity, LWASettings
from lwa_middleware.core.errors import InvalidToken, Overloaded
from lwa_middleware.emulator import Emulator
from lwa_middleware.upstream.verifier import AsyncVerifier, Verifier

LATENCY = 0.3


@pytest.fixture
def slow(emulator: Emulator) -> Iterator[Emulator]:
    emulator.latency(LATENCY)
    emulator.reset_counts()
    yield emulator
    emulator.latency(0)


def _settings(emu: Emulator, **options: object) -> LWASettings:
    return LWASettings(client_ids=[emu.client_id], api_base_url=emu.url, **options)  # type: ignore[arg-type]


def _bogus(i: int) -> str:
    return f"Atza|{i:03d}" + "q" * 400


def _kind(outcome: object) -> str:
    return type(outcome).__name__


def test_async_slots_queue_and_eviction(slow: Emulator) -> None:
    settings = _settings(slow, max_concurrent_verifications=2, max_queued_verifications=1)
    verifier = AsyncVerifier(settings)

    async def main() -> list[Identity | BaseException]:
        tasks = []
        for i in range(5):
            tasks.append(asyncio.create_task(verifier.verify(_bogus(i))))
            await asyncio.sleep(0.01)  # arrive in order
        outcomes = await asyncio.gather(*tasks, return_exceptions=True)
        admission = verifier._state().slots.admission
        assert admission.active == 0 and admission.waiting == 0
        await verifier.aclose()
        return outcomes

    outcomes = asyncio.run(main())
    # 0 and 1 take the slots; 2 waits, is pushed out by 3, which is pushed out by 4;
    # 4, the newest, gets the first freed slot.
    assert [_kind(o) for o in outcomes] == [
        "InvalidToken",
        "InvalidToken",
        "Overloaded",
        "Overloaded",
        "InvalidToken",
    ]
    assert slow.calls["tokeninfo"] == 3


def test_async_waiter_cancelled_or_out_of_time_leaks_no_slot(slow: Emulator) -> None:
    settings = _settings(slow, max_concurrent_verifications=1, timeout=0.2)
    verifier = AsyncVerifier(settings)

    async def main() -> None:
        slots = verifier._state().slots
        admission = slots.admission
        assert admission.acquire()  # the one slot is busy for the whole test
        cancelled = asyncio.create_task(verifier.verify(_bogus(1)))
        timed_out = asyncio.create_task(verifier.verify(_bogus(2)))
        await asyncio.sleep(0.05)
        assert admission.waiting == 2
        cancelled.cancel()
        start = time.monotonic()
        with pytest.raises(Overloaded):
            await timed_out
        assert time.monotonic() - start < 0.5  # waited only while its deadline allowed
        with pytest.raises(asyncio.CancelledError):
            await cancelled
        assert admission.waiting == 0 and admission.active == 1
        slots.give()
        assert admission.active == 0
        # The slot works again: a token verifies (and is refused by LWA) normally.
        slow.latency(0)
        with pytest.raises(InvalidToken):
            await verifier.verify(_bogus(3))
        assert admission.active == 0
        await verifier.aclose()

    asyncio.run(main())
    assert slow.calls["tokeninfo"] == 1


def test_sync_slots_queue_and_eviction(slow: Emulator) -> None:
    settings = _settings(slow, max_concurrent_verifications=2, max_queued_verifications=1)
    verifier = Verifier(settings)

    def run(i: int) -> str:
        try:
            verifier.verify(_bogus(i))
        except (InvalidToken, Overloaded) as error:
            return type(error).__name__
        return "accepted"

    with ThreadPoolExecutor(5) as pool:
        futures = []
        for i in range(5):
            futures.append(pool.submit(run, i))
            time.sleep(0.02)
        outcomes = [f.result() for f in futures]
    verifier.close()
    assert outcomes == ["InvalidToken", "InvalidToken", "Overloaded", "Overloaded", "InvalidToken"]
    assert verifier.slots.admission.active == 0 and verifier.slots.admission.waiting == 0
