"""The Prometheus recorder and the /metrics apps: names, labels, and multiprocess mode
(two worker processes writing into PROMETHEUS_MULTIPROC_DIR, one scrape merging them)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from lwa_middleware.core.metrics import FanOut, Recorder, Stats
from lwa_middleware.integrations.prometheus import (
    MULTIPROC_ENV,
    PrometheusRecorder,
    metrics_app,
    metrics_registry,
    metrics_wsgi_app,
)

TOKEN = "Atza|" + "x" * 400


def record_everything(recorder: PrometheusRecorder) -> None:
    recorder.verification("ok")
    recorder.verification("stale")
    recorder.cache("l1", True)
    recorder.l1_hit()
    recorder.cache("l2", False)
    recorder.lwa_call("tokeninfo", "200", 0.04)
    recorder.lwa_call("profile", "timeout", 5.0)
    recorder.error("invalid_token")
    recorder.breaker_state("open")
    recorder.stale_served()
    recorder.fanout_rejected()
    recorder.redis_error()
    recorder.l2_malformed()


def value(registry: CollectorRegistry, name: str, labels: dict[str, str] | None = None) -> float:
    got = registry.get_sample_value(name, labels or {})
    assert got is not None, name
    return got


class TestRecorder:
    def test_exposition_holds_every_name(self) -> None:
        registry = CollectorRegistry()
        record_everything(PrometheusRecorder(registry))
        text = generate_latest(registry).decode()
        for name in (
            "lwa_verifications_total",
            "lwa_cache_requests_total",
            "lwa_upstream_requests_total",
            "lwa_upstream_latency_seconds_bucket",
            "lwa_errors_total",
            "lwa_breaker_state",
            "lwa_stale_answers_total",
            "lwa_fanout_rejections_total",
            "lwa_redis_errors_total",
            "lwa_l2_malformed_total",
        ):
            assert name in text, name

    def test_values_and_labels(self) -> None:
        registry = CollectorRegistry()
        record_everything(PrometheusRecorder(registry))
        assert value(registry, "lwa_verifications_total", {"outcome": "ok"}) == 2
        assert value(registry, "lwa_verifications_total", {"outcome": "invalid_token"}) == 0
        assert value(registry, "lwa_cache_requests_total", {"level": "l1", "result": "hit"}) == 2
        assert value(registry, "lwa_cache_requests_total", {"level": "l2", "result": "miss"}) == 1
        assert (
            value(
                registry,
                "lwa_upstream_requests_total",
                {"endpoint": "profile", "status": "timeout"},
            )
            == 1
        )
        assert (
            value(
                registry,
                "lwa_upstream_latency_seconds_bucket",
                {"endpoint": "tokeninfo", "le": "0.05"},
            )
            == 1
        )
        assert value(registry, "lwa_errors_total", {"code": "invalid_token"}) == 1
        assert value(registry, "lwa_breaker_state") == 2
        assert value(registry, "lwa_stale_answers_total") == 1

    def test_breaker_gauge_values(self) -> None:
        registry = CollectorRegistry()
        recorder = PrometheusRecorder(registry)
        for state, expected in (("half_open", 1), ("closed", 0), ("open", 2), (TOKEN, 2)):
            recorder.breaker_state(state)
            assert value(registry, "lwa_breaker_state") == expected

    def test_labels_never_carry_user_data(self) -> None:
        registry = CollectorRegistry()
        recorder = PrometheusRecorder(registry)
        recorder.verification(TOKEN)
        recorder.error("amzn1.account.U")
        recorder.lwa_call("tokeninfo", "/admin/users", 0.1)
        recorder.lwa_call("/admin", "200", 0.1)  # type: ignore[arg-type]
        recorder.cache("amzn1.account.U", True)  # type: ignore[arg-type]
        text = generate_latest(registry).decode()
        assert "Atza" not in text and "amzn1" not in text and "/admin" not in text
        assert value(registry, "lwa_verifications_total", {"outcome": "other"}) == 1
        assert (
            value(
                registry,
                "lwa_upstream_requests_total",
                {"endpoint": "tokeninfo", "status": "other"},
            )
            == 1
        )

    def test_beside_stats_in_a_fan_out(self) -> None:
        registry = CollectorRegistry()
        stats = Stats()
        fan: Recorder = FanOut(stats, PrometheusRecorder(registry))
        fan.l1_hit()
        fan.verification("invalid_token")
        assert stats.snapshot()["verifications"]["ok"] == 1
        assert value(registry, "lwa_verifications_total", {"outcome": "ok"}) == 1
        assert value(registry, "lwa_verifications_total", {"outcome": "invalid_token"}) == 1

    def test_recorders_of_one_registry_share_metrics(self) -> None:
        registry = CollectorRegistry()
        a, b = PrometheusRecorder(registry), PrometheusRecorder(registry)
        a.verification("ok")
        b.verification("ok")
        assert value(registry, "lwa_verifications_total", {"outcome": "ok"}) == 2
        other = PrometheusRecorder(registry, namespace="auth")
        other.verification("ok")
        assert value(registry, "auth_verifications_total", {"outcome": "ok"}) == 1


def asgi_get(app: Any, method: str = "GET") -> tuple[int, dict[bytes, bytes], bytes]:
    sent: list[MutableMapping[str, Any]] = []

    async def receive() -> MutableMapping[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": method, "path": "/metrics", "headers": []}
    asyncio.run(app(scope, receive, send))
    return sent[0]["status"], dict(sent[0]["headers"]), sent[1]["body"]


def wsgi_get(app: Any, method: str = "GET") -> tuple[str, dict[str, str], bytes]:
    seen: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        seen["status"], seen["headers"] = status, dict(headers)

    body = b"".join(app({"REQUEST_METHOD": method, "PATH_INFO": "/metrics"}, start_response))
    return seen["status"], seen["headers"], body


class TestApps:
    def test_asgi(self) -> None:
        registry = CollectorRegistry()
        PrometheusRecorder(registry).verification("ok")
        status, headers, body = asgi_get(metrics_app(registry))
        assert status == 200
        assert headers[b"content-type"].startswith(b"text/plain")
        assert b'lwa_verifications_total{outcome="ok"} 1.0' in body
        assert asgi_get(metrics_app(registry), "POST")[0] == 405
        assert asgi_get(metrics_app(registry), "HEAD")[2] == b""

    def test_asgi_lifespan(self) -> None:
        app = metrics_app(CollectorRegistry())
        messages = iter([{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}])
        sent: list[str] = []

        async def receive() -> MutableMapping[str, Any]:
            return next(messages)

        async def send(message: MutableMapping[str, Any]) -> None:
            sent.append(message["type"])

        asyncio.run(app({"type": "lifespan"}, receive, send))
        assert sent == ["lifespan.startup.complete", "lifespan.shutdown.complete"]

    def test_wsgi(self) -> None:
        registry = CollectorRegistry()
        PrometheusRecorder(registry).error("ServerError")
        status, headers, body = wsgi_get(metrics_wsgi_app(registry))
        assert status == "200 OK"
        assert headers["Content-Length"] == str(len(body))
        assert b'lwa_errors_total{code="ServerError"} 1.0' in body
        assert wsgi_get(metrics_wsgi_app(registry), "DELETE")[0].startswith("405")

    def test_registry_choice(self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
        from prometheus_client import REGISTRY

        given = CollectorRegistry()
        assert metrics_registry(given) is given
        monkeypatch.delenv(MULTIPROC_ENV, raising=False)
        assert metrics_registry() is REGISTRY
        monkeypatch.setenv(MULTIPROC_ENV, str(tmp_path))
        merged = metrics_registry()
        assert merged is not REGISTRY and merged is not given


WORKER = textwrap.dedent(
    """
    import sys
    from lwa_middleware.integrations.prometheus import PrometheusRecorder

    recorder = PrometheusRecorder()
    for _ in range(int(sys.argv[1])):
        recorder.verification("ok")
        recorder.lwa_call("tokeninfo", "200", 0.02)
    recorder.breaker_state(sys.argv[2])
    """
)

SCRAPE = textwrap.dedent(
    """
    import sys
    from lwa_middleware.integrations.prometheus import metrics_wsgi_app

    app = metrics_wsgi_app()
    body = b"".join(app({"REQUEST_METHOD": "GET"}, lambda status, headers: None))
    sys.stdout.write(body.decode())
    """
)


def run(code: str, env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", code, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


class TestMultiprocess:
    def test_two_workers_scraped_merged(self, tmp_path: Path) -> None:
        env = {**os.environ, MULTIPROC_ENV: str(tmp_path)}
        run(WORKER, env, "2", "closed")
        run(WORKER, env, "3", "open")
        assert len(list(tmp_path.glob("*.db"))) >= 2  # one set of files per process
        text = run(SCRAPE, env)
        assert 'lwa_verifications_total{outcome="ok"} 5.0' in text
        assert 'lwa_upstream_requests_total{endpoint="tokeninfo",status="200"} 5.0' in text
        assert 'lwa_upstream_latency_seconds_count{endpoint="tokeninfo"} 5.0' in text
        assert "lwa_breaker_state 2.0" in text  # livemax: the worst worker's breaker
