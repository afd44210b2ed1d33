"""The metrics recorders: the Stats snapshot, label validation, NullRecorder and FanOut."""

from __future__ import annotations

import json
import threading

import pytest

from lwa_middleware.core.errors import (
    InsufficientScope,
    InvalidRequest,
    InvalidToken,
    LWAUnavailable,
    MissingToken,
    Overloaded,
)
from lwa_middleware.core.metrics import (
    OUTCOMES,
    FanOut,
    NullRecorder,
    Recorder,
    Stats,
    error_code,
    label,
    outcome_of,
    status_label,
    status_of,
)
from lwa_middleware.core.protocol import HTTPResponse, TransportFailure

TOKEN = "Atza|" + "x" * 400


def everything(recorder: Recorder) -> None:
    """One of each event."""
    recorder.verification("ok")
    recorder.cache("l1", True)
    recorder.l1_hit()
    recorder.cache("l2", False)
    recorder.lwa_call("tokeninfo", "200", 0.04)
    recorder.error("invalid_token")
    recorder.breaker_state("open")
    recorder.stale_served()
    recorder.fanout_rejected()
    recorder.redis_error()
    recorder.l2_malformed()


class TestStats:
    def test_a_fresh_snapshot_has_every_row_at_zero(self) -> None:
        view = Stats().snapshot()
        assert view["verifications"] == dict.fromkeys((*OUTCOMES, "other"), 0)
        assert view["cache"] == {"l1": {"hit": 0, "miss": 0}, "l2": {"hit": 0, "miss": 0}}
        assert view["lwa_calls"] == {"tokeninfo": {}, "profile": {}, "token": {}}
        assert view["breaker"] == {"state": "closed", "changes": 0}
        assert view["stale_answers"] == view["fanout_rejections"] == 0
        assert view["lwa_latency_seconds"]["profile"]["count"] == 0

    def test_counts(self) -> None:
        stats = Stats()
        everything(stats)
        stats.verification("ok")
        stats.verification("stale")
        stats.lwa_call("tokeninfo", "timeout", 5.0)
        stats.lwa_call("profile", "503", 0.3)
        view = stats.snapshot()
        assert view["verifications"]["ok"] == 3 and view["verifications"]["stale"] == 1
        assert view["cache"]["l1"]["hit"] == 2 and view["cache"]["l2"]["miss"] == 1
        assert view["lwa_calls"]["tokeninfo"] == {"200": 1, "timeout": 1}
        assert view["lwa_calls"]["profile"] == {"503": 1}
        assert view["errors"]["invalid_token"] == 1
        assert view["breaker"] == {"state": "open", "changes": 1}
        assert (view["stale_answers"], view["fanout_rejections"]) == (1, 1)
        assert (view["redis_errors"], view["l2_malformed"]) == (1, 1)

    def test_latency_histogram_is_cumulative(self) -> None:
        stats = Stats(buckets=(0.1, 1.0))
        for seconds in (0.05, 0.1, 0.5, 3.0):
            stats.lwa_call("tokeninfo", "200", seconds)
        view = stats.snapshot()["lwa_latency_seconds"]["tokeninfo"]
        assert view["buckets"] == {"0.1": 2, "1.0": 3, "+Inf": 4}
        assert view["count"] == 4 and view["sum"] == pytest.approx(3.65)

    def test_snapshot_is_json_safe_and_a_copy(self) -> None:
        stats = Stats()
        everything(stats)
        view = stats.snapshot()
        assert json.loads(json.dumps(view)) == view
        view["verifications"]["ok"] = 99
        assert stats.snapshot()["verifications"]["ok"] == 2

    def test_breaker_changes_count_only_changes(self) -> None:
        stats = Stats()
        for state in ("closed", "open", "open", "half_open", "closed"):
            stats.breaker_state(state)
        assert stats.snapshot()["breaker"] == {"state": "closed", "changes": 3}

    def test_threads(self) -> None:
        stats = Stats()

        def work() -> None:
            for _ in range(1000):
                stats.verification("ok")
                stats.lwa_call("profile", "200", 0.01)

        threads = [threading.Thread(target=work) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        view = stats.snapshot()
        assert view["verifications"]["ok"] == 8000
        assert view["lwa_calls"]["profile"] == {"200": 8000}
        assert view["lwa_latency_seconds"]["profile"]["count"] == 8000


class TestLabels:
    @pytest.mark.parametrize(
        "value", [TOKEN, "amzn1.account.U", "/admin/users", "", None, 7, "OK", "ok "]
    )
    def test_unknown_values_become_other(self, value: object) -> None:
        assert label(value, frozenset(OUTCOMES)) == "other"

    def test_nothing_outside_the_sets_reaches_a_snapshot(self) -> None:
        stats = Stats()
        stats.verification(TOKEN)
        stats.error("amzn1.account.U")
        stats.lwa_call("tokeninfo", "/user/profile", 0.1)
        stats.lwa_call("/path", "200", 0.1)  # type: ignore[arg-type]
        stats.cache("l3", True)  # type: ignore[arg-type]
        stats.breaker_state(TOKEN)
        text = json.dumps(stats.snapshot())
        assert "Atza" not in text and "amzn1" not in text and "/path" not in text
        view = stats.snapshot()
        assert view["verifications"]["other"] == 1 and view["errors"]["other"] == 1
        assert view["lwa_calls"]["tokeninfo"] == {"other": 1}
        assert view["breaker"]["state"] == "other"

    @pytest.mark.parametrize(
        ("status", "expected"),
        [(200, "200"), ("429", "429"), ("timeout", "timeout"), ("error", "error"), (99, "other")],
    )
    def test_status_label(self, status: object, expected: str) -> None:
        assert status_label(status) == expected
        assert status_label("600") == "other" and status_label(True) == "other"

    def test_status_of(self) -> None:
        assert status_of(HTTPResponse(503, {}, b"")) == "503"
        assert status_of(TransportFailure("timeout")) == "timeout"
        assert status_of(TransportFailure("connect")) == "error"

    @pytest.mark.parametrize(
        ("error", "outcome", "code"),
        [
            (None, "ok", None),
            (InvalidToken(), "invalid_token", "invalid_token"),
            (InsufficientScope(), "insufficient_scope", "insufficient_scope"),
            (MissingToken(), "invalid_request", "invalid_request"),
            (InvalidRequest(), "invalid_request", "invalid_request"),
            (LWAUnavailable(), "server_error", "ServerError"),
            (Overloaded(), "overloaded", "ServerError"),
            (ValueError(), "server_error", "ServerError"),
        ],
    )
    def test_outcome_of(self, error: BaseException | None, outcome: str, code: str | None) -> None:
        assert outcome_of(error) == outcome
        if error is not None:
            assert error_code(error) == code


class TestFanOut:
    def test_every_recorder_gets_every_event(self) -> None:
        a, b = Stats(), Stats()
        fan = FanOut(a, NullRecorder(), FanOut(b))
        assert fan.recorders == (a, b)
        everything(fan)
        assert a.snapshot() == b.snapshot()
        assert a.snapshot()["verifications"]["ok"] == 2

    def test_null_recorder_takes_everything(self) -> None:
        everything(NullRecorder())
        everything(FanOut())
