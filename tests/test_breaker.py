"""The circuit breaker's state machine with a fake clock (``now`` passed in), its errors'
rendering, its log lines, and one probe among many threads."""

from __future__ import annotations

import logging
import threading

import pytest

from lwa_middleware.core.breaker import (
    MIN_CALL_SHARE,
    BreakerRegistry,
    CircuitBreaker,
    CircuitOpen,
    call_budget,
    is_upstream_failure,
)
from lwa_middleware.core.errors import (
    ConfigurationError,
    InsufficientScope,
    InvalidRequest,
    InvalidToken,
    LWAUnavailable,
    Overloaded,
    ServerError,
    render_error,
)
from lwa_middleware.core.grants import GrantUnavailable, InvalidClient, InvalidGrant

T0 = 1_000_000.0


def state_of(breaker: CircuitBreaker) -> str:
    """The state, read afresh (so a type checker does not narrow it between calls)."""
    return breaker.state


def tripped(
    threshold: int = 3, window: float = 10.0
) -> tuple[CircuitBreaker, list[tuple[str, str]]]:
    changes: list[tuple[str, str]] = []
    breaker = CircuitBreaker(
        threshold, window, on_change=lambda old, new: changes.append((old, new))
    )
    for _ in range(threshold):
        breaker.before_call(T0)
        breaker.record_failure(T0)
    return breaker, changes


class TestStates:
    def test_starts_closed_and_lets_calls_through(self) -> None:
        breaker = CircuitBreaker()
        assert state_of(breaker) == "closed"
        for _ in range(100):
            breaker.before_call(T0)
        assert breaker.snapshot()["consecutive_failures"] == 0

    def test_opens_after_threshold_consecutive_failures(self) -> None:
        breaker = CircuitBreaker(3, 10)
        breaker.record_failure(T0)
        breaker.record_failure(T0)
        assert state_of(breaker) == "closed"
        breaker.record_failure(T0)
        assert state_of(breaker) == "open"
        with pytest.raises(CircuitOpen):
            breaker.before_call(T0 + 1)

    def test_a_success_resets_the_count(self) -> None:
        breaker = CircuitBreaker(3, 10)
        breaker.record_failure(T0)
        breaker.record_failure(T0)
        breaker.record_success(T0)
        breaker.record_failure(T0)
        breaker.record_failure(T0)
        assert state_of(breaker) == "closed"
        assert breaker.snapshot()["consecutive_failures"] == 2

    def test_retry_after_counts_down_and_is_at_least_one(self) -> None:
        breaker, _ = tripped(window=10)
        with pytest.raises(CircuitOpen) as caught:
            breaker.before_call(T0)
        assert caught.value.retry_after == 10
        with pytest.raises(CircuitOpen) as caught:
            breaker.before_call(T0 + 3.5)
        assert caught.value.retry_after == 7
        with pytest.raises(CircuitOpen) as caught:
            breaker.before_call(T0 + 9.99)
        assert caught.value.retry_after == 1
        assert breaker.retry_after(T0 + 3.5) == 7

    def test_one_probe_after_the_window(self) -> None:
        breaker, changes = tripped(window=10)
        breaker.before_call(T0 + 10)  # the probe
        assert state_of(breaker) == "half_open"
        for _ in range(5):
            with pytest.raises(CircuitOpen):
                breaker.before_call(T0 + 10.5)
        assert changes == [("closed", "open"), ("open", "half_open")]

    def test_probe_success_closes(self) -> None:
        breaker, changes = tripped()
        breaker.before_call(T0 + 10)
        breaker.record_success(T0 + 10.2)
        assert state_of(breaker) == "closed"
        breaker.before_call(T0 + 10.3)
        breaker.before_call(T0 + 10.3)
        assert changes[-1] == ("half_open", "closed")
        assert breaker.snapshot()["consecutive_failures"] == 0

    def test_probe_failure_opens_for_another_window(self) -> None:
        breaker, changes = tripped(window=10)
        breaker.before_call(T0 + 10)
        breaker.record_failure(T0 + 11)
        assert state_of(breaker) == "open"
        with pytest.raises(CircuitOpen) as caught:
            breaker.before_call(T0 + 12)
        assert caught.value.retry_after == 9  # the new window runs from the failure
        breaker.before_call(T0 + 21)  # the next probe
        assert state_of(breaker) == "half_open"
        assert changes == [
            ("closed", "open"),
            ("open", "half_open"),
            ("half_open", "open"),
            ("open", "half_open"),
        ]
        assert breaker.snapshot()["opens"] == 2

    def test_a_probe_that_never_reports_frees_the_slot_after_the_window(self) -> None:
        breaker, _ = tripped(window=10)
        breaker.before_call(T0 + 10)  # the probe, then cancelled: it never reports
        with pytest.raises(CircuitOpen):
            breaker.before_call(T0 + 19.9)
        breaker.before_call(T0 + 20)  # the slot freed itself: a new probe
        with pytest.raises(CircuitOpen):
            breaker.before_call(T0 + 20.1)
        breaker.record_success(T0 + 20.5)
        assert state_of(breaker) == "closed"

    def test_abandon_frees_the_probe_slot_at_once(self) -> None:
        breaker, _ = tripped()
        breaker.before_call(T0 + 10)
        breaker.record(T0 + 10.1, Overloaded())  # no verdict on LWA: abandons
        assert state_of(breaker) == "half_open"
        breaker.before_call(T0 + 10.2)  # the next caller probes now

    def test_a_late_failure_while_open_changes_nothing(self) -> None:
        breaker, changes = tripped(window=10)
        breaker.record_failure(T0 + 5)  # a call that began before it opened
        breaker.before_call(T0 + 10)  # the window still runs from T0
        assert len(changes) == 2

    def test_circuit_open_reported_back_is_ignored(self) -> None:
        breaker, _ = tripped()
        breaker.before_call(T0 + 10)  # the probe
        breaker.record(T0 + 10.1, CircuitOpen())  # another caller's refusal: not the probe's
        with pytest.raises(CircuitOpen):
            breaker.before_call(T0 + 10.2)
        assert state_of(breaker) == "half_open"


class TestWhatCounts:
    @pytest.mark.parametrize(
        "error",
        [
            LWAUnavailable("Login with Amazon timed out."),
            LWAUnavailable("Login with Amazon answered 503."),
            LWAUnavailable("Login with Amazon is rate limiting requests (429)."),
            LWAUnavailable("Login with Amazon could not be reached."),
        ],
    )
    def test_upstream_failures_count(self, error: BaseException) -> None:
        assert is_upstream_failure(error)
        breaker = CircuitBreaker(2, 10)
        breaker.record(T0, error)
        breaker.record(T0, error)
        assert state_of(breaker) == "open"

    @pytest.mark.parametrize("error", [InvalidToken(), InsufficientScope(), InvalidRequest(), None])
    def test_lwa_verdicts_are_successes(self, error: BaseException | None) -> None:
        breaker = CircuitBreaker(2, 10)
        breaker.record(T0, LWAUnavailable())
        for _ in range(10):
            breaker.record(T0, error)
        breaker.record(T0, LWAUnavailable())
        assert state_of(breaker) == "closed"  # never two in a row

    def test_invalid_token_never_opens(self) -> None:
        breaker = CircuitBreaker(1, 10)
        for _ in range(50):
            breaker.before_call(T0)
            breaker.record(T0, InvalidToken())
        assert state_of(breaker) == "closed"

    def test_invalid_token_from_the_probe_closes(self) -> None:
        breaker, _ = tripped()
        breaker.before_call(T0 + 10)
        breaker.record(T0 + 10.1, InvalidToken())
        assert state_of(breaker) == "closed"

    @pytest.mark.parametrize("error", [CircuitOpen(), Overloaded(), ServerError(), ValueError()])
    def test_local_errors_do_not_count(self, error: BaseException) -> None:
        assert not is_upstream_failure(error)
        breaker = CircuitBreaker(1, 10)
        breaker.record(T0, error)
        assert state_of(breaker) == "closed"

    @pytest.mark.parametrize(
        "error",
        [
            GrantUnavailable("Login with Amazon timed out."),
            GrantUnavailable("Login with Amazon answered 503.", status=503),
            GrantUnavailable(status=429),
        ],
    )
    def test_token_endpoint_failures_count(self, error: BaseException) -> None:
        assert is_upstream_failure(error)
        breaker = CircuitBreaker(1, 10)
        breaker.record(T0, error)
        assert state_of(breaker) == "open"

    @pytest.mark.parametrize("error", [InvalidGrant(), InvalidClient()])
    def test_token_endpoint_verdicts_are_successes(self, error: BaseException) -> None:
        breaker = CircuitBreaker(2, 10)
        breaker.record(T0, GrantUnavailable())
        breaker.record(T0, error)
        breaker.record(T0, GrantUnavailable())
        assert state_of(breaker) == "closed"
        assert breaker.snapshot()["consecutive_failures"] == 1

    def test_a_flood_of_refusals_never_opens(self) -> None:
        """Every request the fan-out limit refused, or whose slot came too late to be sent,
        is ``Overloaded``: a thousand of them, between two LWA failures, change nothing; the
        half-open probe they were is freed at once."""
        breaker = CircuitBreaker(2, 10)
        breaker.record(T0, LWAUnavailable())
        for _ in range(1000):
            breaker.before_call(T0)
            breaker.record(T0, Overloaded())
        assert state_of(breaker) == "closed"
        assert breaker.snapshot()["consecutive_failures"] == 1
        breaker, _ = tripped()
        breaker.before_call(T0 + 10)
        breaker.record(T0 + 10, Overloaded())
        breaker.before_call(T0 + 10)  # the next caller is the probe: no CircuitOpen


class TestCallBudget:
    @pytest.mark.parametrize(
        ("left", "timeout", "sent"),
        [
            (2.0, 2.0, True),
            (1.0, 2.0, True),  # exactly half: a real budget
            (0.999, 2.0, False),
            (0.05, 2.0, False),
            (None, 2.0, False),  # spent
            (5.0, 5.0, True),
            (2.4, 5.0, False),
        ],
    )
    def test_sent_only_with_a_real_budget(
        self, left: float | None, timeout: float, sent: bool
    ) -> None:
        assert MIN_CALL_SHARE == 0.5
        assert call_budget(left, timeout) == (left if sent else None)


class TestErrors:
    def test_circuit_open_is_a_server_error_with_retry_after(self) -> None:
        error = CircuitOpen(retry_after=7)
        assert isinstance(error, LWAUnavailable) and isinstance(error, ServerError)
        status, headers, body = render_error(error, "lwa", "realm", "rid")
        assert status == 500
        assert ("retry-after", "7") in headers
        assert b'"error":"ServerError"' in body
        assert not any(name == "www-authenticate" for name, _ in headers)

    def test_retry_after_is_at_least_one(self) -> None:
        assert CircuitOpen(retry_after=0).retry_after == 1
        # The verifier copies errors for single-flight waiters as type(e)(e.description).
        copy = type(CircuitOpen(retry_after=5))("text")
        assert copy.description == "text" and copy.retry_after == 1

    @pytest.mark.parametrize(
        ("threshold", "window"), [(0, 10), (-1, 10), (1.5, 10), (True, 10), (3, 0), (3, -1)]
    )
    def test_bad_options(self, threshold: object, window: object) -> None:
        with pytest.raises(ConfigurationError):
            CircuitBreaker(threshold, window)  # type: ignore[arg-type]

    def test_hook_errors_are_logged_not_raised(self, caplog: pytest.LogCaptureFixture) -> None:
        def hook(old: str, new: str) -> None:
            raise RuntimeError("boom")

        breaker = CircuitBreaker(1, 10, on_change=hook)
        breaker.record_failure(T0)
        assert state_of(breaker) == "open"
        assert "on_change hook failed" in caplog.text


class TestLogging:
    def test_changes_log_at_warning_without_token_text(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        caplog.set_level(logging.DEBUG, logger="lwa_middleware")
        breaker = CircuitBreaker(2, 5, name="api.amazon.com")
        breaker.record(T0, LWAUnavailable())
        assert caplog.records == []
        breaker.record(T0, LWAUnavailable())
        breaker.before_call(T0 + 5)
        breaker.record_success(T0 + 6)
        records = [r for r in caplog.records if r.name == "lwa_middleware"]
        assert [r.levelno for r in records] == [logging.WARNING] * 3
        messages = [r.getMessage() for r in records]
        assert "closed -> open after 2 consecutive failure(s)" in messages[0]
        assert "api.amazon.com" in messages[0]
        assert "open -> half_open" in messages[1]
        assert "half_open -> closed" in messages[2]
        assert not any("Atza" in m for m in messages)


class TestSnapshot:
    def test_snapshot_is_json_safe(self) -> None:
        import json

        breaker, _ = tripped(window=10)
        view = breaker.snapshot(T0 + 4)
        assert json.loads(json.dumps(view)) == view
        assert view["state"] == "open" and view["retry_after"] == 6 and view["opens"] == 1

    def test_registry_one_breaker_per_host(self) -> None:
        registry = BreakerRegistry(2, 5)
        a = registry.get("https://api.amazon.com")
        assert registry.get("https://API.amazon.com/") is a
        assert registry.get("api.amazon.com") is a
        assert registry.get("https://api.amazon.co.uk") is not a
        assert a.name == "api.amazon.com"
        assert sorted(registry.snapshot()) == ["api.amazon.co.uk", "api.amazon.com"]
        with pytest.raises(ConfigurationError):
            BreakerRegistry(0)


class TestThreads:
    def test_fifty_threads_after_the_window_make_exactly_one_probe(self) -> None:
        breaker, _ = tripped(window=10)
        barrier = threading.Barrier(50)
        probes: list[int] = []
        refused: list[int] = []
        lock = threading.Lock()

        def call(i: int) -> None:
            barrier.wait()
            try:
                breaker.before_call(T0 + 10)
            except CircuitOpen:
                with lock:
                    refused.append(i)
            else:
                with lock:
                    probes.append(i)

        threads = [threading.Thread(target=call, args=(i,)) for i in range(50)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(probes) == 1 and len(refused) == 49
        assert state_of(breaker) == "half_open"

    def test_concurrent_failures_open_once(self) -> None:
        changes: list[tuple[str, str]] = []
        breaker = CircuitBreaker(10, 10, on_change=lambda o, n: changes.append((o, n)))
        barrier = threading.Barrier(40)

        def fail() -> None:
            barrier.wait()
            breaker.record_failure(T0)

        threads = [threading.Thread(target=fail) for _ in range(40)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert changes == [("closed", "open")]
