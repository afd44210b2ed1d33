"""Prometheus metrics for lwa-middleware (the ``prometheus`` extra: ``prometheus_client``).

Layer: ``integrations`` (optional frameworks, on top; see ``ARCHITECTURE.md``).

:class:`PrometheusRecorder` is a :class:`~lwa_middleware.core.metrics.Recorder`; pass it to the
middlewares (beside or instead of the default :class:`~lwa_middleware.core.metrics.Stats`).
Series, with ``namespace="lwa"``::

    lwa_verifications_total{outcome}            ok, invalid_token, ..., stale, other
    lwa_cache_requests_total{level,result}      level l1|l2, result hit|miss
    lwa_upstream_requests_total{endpoint,status} tokeninfo|profile|token; "200", "timeout", ...
    lwa_upstream_latency_seconds{endpoint}      histogram (one observation per HTTP attempt)
    lwa_errors_total{code}                      invalid_request, invalid_token, ..., ServerError
    lwa_breaker_state                           gauge: 0 closed, 1 half open, 2 open
    lwa_stale_answers_total
    lwa_fanout_rejections_total
    lwa_redis_errors_total
    lwa_l2_malformed_total

Every label value comes from a fixed set (:mod:`lwa_middleware.core.metrics`), never a user, a
token or a path.

**Several worker processes** (gunicorn, ``uvicorn --workers``): set ``PROMETHEUS_MULTIPROC_DIR``
to an empty directory *before* the workers start (prometheus_client then keeps each
process's values in files there), serve :func:`metrics_app` / :func:`metrics_wsgi_app`
(they merge every process's files through ``MultiProcessCollector`` when the variable is
set), and with gunicorn call ``prometheus_client.multiprocess.mark_process_dead(worker.pid)``
from its ``child_exit`` hook. Counters and histograms are summed over the processes; the
breaker gauge uses ``multiprocess_mode="livemax"``: the worst breaker among live workers.

This module imports ``prometheus_client`` at its top; the core never imports it.

"""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Awaitable, Callable, Coroutine, Iterable, MutableMapping
from typing import TYPE_CHECKING, Any, Final, Literal

from prometheus_client import (
    CONTENT_TYPE_PLAIN_0_0_4,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.multiprocess import MultiProcessCollector

from lwa_middleware.asgi import answer_lifespan
from lwa_middleware.core.metrics import (
    CACHE_LEVELS,
    ENDPOINTS,
    ERROR_CODES,
    LATENCY_BUCKETS,
    OTHER,
    OUTCOMES,
    CacheLevel,
    Endpoint,
    label,
    status_label,
)

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

__all__ = [
    "BREAKER_VALUES",
    "MULTIPROC_ENV",
    "PrometheusRecorder",
    "metrics_app",
    "metrics_registry",
    "metrics_wsgi_app",
]

#: The variable prometheus_client reads to run in multiprocess mode.
MULTIPROC_ENV: Final = "PROMETHEUS_MULTIPROC_DIR"
#: ``lwa_breaker_state``'s value per breaker state.
BREAKER_VALUES: Final = {"closed": 0, "half_open": 1, "open": 2}

GaugeMode = Literal["all", "liveall", "min", "livemin", "max", "livemax", "sum", "livesum"]

_OUTCOME_SET = frozenset(OUTCOMES)
_CODE_SET = frozenset(ERROR_CODES)
_LEVEL_SET = frozenset(CACHE_LEVELS)
_ENDPOINT_SET = frozenset(ENDPOINTS)


class _Metrics:
    """The metric families of one namespace in one registry (registered once)."""

    def __init__(
        self,
        registry: CollectorRegistry,
        namespace: str,
        buckets: tuple[float, ...],
        gauge_mode: GaugeMode,
    ) -> None:
        kw: dict[str, Any] = {"namespace": namespace, "registry": registry}
        self.verifications = Counter(
            "verifications", "Token verifications, by outcome.", ["outcome"], **kw
        )
        self.cache = Counter(
            "cache_requests",
            "Identity cache lookups, by level and result.",
            ["level", "result"],
            **kw,
        )
        self.upstream = Counter(
            "upstream_requests",
            "HTTP attempts to Login with Amazon, by endpoint and status.",
            ["endpoint", "status"],
            **kw,
        )
        self.latency = Histogram(
            "upstream_latency_seconds",
            "Duration of HTTP attempts to Login with Amazon.",
            ["endpoint"],
            buckets=buckets,
            **kw,
        )
        self.errors = Counter("errors", "Errors answered to clients, by LWA code.", ["code"], **kw)
        self.breaker = Gauge(
            "breaker_state",
            "LWA circuit breaker: 0 closed, 1 half open, 2 open.",
            multiprocess_mode=gauge_mode,
            **kw,
        )
        self.stale = Counter("stale_answers", "Identities answered stale (stale-if-error).", **kw)
        self.fanout = Counter(
            "fanout_rejections", "Verifications refused: no slot to call LWA in time.", **kw
        )
        self.redis = Counter("redis_errors", "Failed Redis (L2) commands.", **kw)
        self.malformed = Counter(
            "l2_malformed",
            "L2 entries dropped: no good MAC, dated ahead, malformed, oversized, other format.",
            **kw,
        )
        # Every fixed series exists from the start (at 0), so dashboards and rate() see them.
        for outcome in (*OUTCOMES, OTHER):
            self.verifications.labels(outcome)
        for level in CACHE_LEVELS:
            for result in ("hit", "miss"):
                self.cache.labels(level, result)
        for endpoint in ENDPOINTS:
            self.latency.labels(endpoint)
        for code in (*ERROR_CODES, OTHER):
            self.errors.labels(code)


_shared: MutableMapping[CollectorRegistry, dict[str, _Metrics]] = weakref.WeakKeyDictionary()
_shared_lock = threading.Lock()


def _metrics(
    registry: CollectorRegistry, namespace: str, buckets: tuple[float, ...], gauge_mode: GaugeMode
) -> _Metrics:
    """The families for ``namespace`` in ``registry``, registered the first time only (so
    several recorders, e.g. an ASGI and a WSGI middleware's, share one set)."""
    with _shared_lock:
        families = _shared.setdefault(registry, {})
        metrics = families.get(namespace)
        if metrics is None:
            metrics = families[namespace] = _Metrics(registry, namespace, buckets, gauge_mode)
        return metrics


class PrometheusRecorder:
    """A :class:`~lwa_middleware.core.metrics.Recorder` writing prometheus_client metrics.

    ``registry`` defaults to prometheus_client's global ``REGISTRY``; recorders built for
    one registry and namespace share one set of metrics (the first one's ``buckets`` and
    ``breaker_gauge_mode`` apply).
    """

    __slots__ = ("_cache", "_l1_hit", "_m", "_ok", "_verifications", "namespace", "registry")

    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        namespace: str = "lwa",
        *,
        buckets: Iterable[float] = LATENCY_BUCKETS,
        breaker_gauge_mode: GaugeMode = "livemax",
    ) -> None:
        self.registry = REGISTRY if registry is None else registry
        self.namespace = namespace
        self._m = _metrics(self.registry, namespace, tuple(sorted(buckets)), breaker_gauge_mode)
        # Children bound once: label lookups off the hot path.
        self._verifications = {
            outcome: self._m.verifications.labels(outcome) for outcome in (*OUTCOMES, OTHER)
        }
        self._cache = {
            (level, hit): self._m.cache.labels(level, "hit" if hit else "miss")
            for level in CACHE_LEVELS
            for hit in (True, False)
        }
        self._l1_hit = self._cache["l1", True]
        self._ok = self._verifications["ok"]

    def verification(self, outcome: str) -> None:
        """``lwa_verifications_total{outcome}`` + 1."""
        self._verifications[label(outcome, _OUTCOME_SET)].inc()

    def cache(self, level: CacheLevel, hit: bool) -> None:
        """``lwa_cache_requests_total{level,result}`` + 1 (an unknown level is dropped)."""
        child = self._cache.get((level, bool(hit)))
        if child is not None:
            child.inc()

    def l1_hit(self) -> None:
        """A warm-path answer: an L1 hit and an ``ok`` verification."""
        self._l1_hit.inc()
        self._ok.inc()

    def lwa_call(self, endpoint: Endpoint, status: str, seconds: float) -> None:
        """``lwa_upstream_requests_total`` + 1 and a latency observation (an unknown endpoint
        is dropped)."""
        if endpoint not in _ENDPOINT_SET:
            return
        self._m.upstream.labels(endpoint, status_label(status)).inc()
        self._m.latency.labels(endpoint).observe(max(0.0, float(seconds)))

    def error(self, code: str) -> None:
        """``lwa_errors_total{code}`` + 1."""
        self._m.errors.labels(label(code, _CODE_SET)).inc()

    def breaker_state(self, state: str) -> None:
        """``lwa_breaker_state`` = 0 / 1 / 2 (an unknown state is ignored)."""
        value = BREAKER_VALUES.get(state)
        if value is not None:
            self._m.breaker.set(value)

    def stale_served(self) -> None:
        """``lwa_stale_answers_total`` + 1."""
        self._m.stale.inc()

    def fanout_rejected(self) -> None:
        """``lwa_fanout_rejections_total`` + 1."""
        self._m.fanout.inc()

    def redis_error(self) -> None:
        """``lwa_redis_errors_total`` + 1."""
        self._m.redis.inc()

    def l2_malformed(self) -> None:
        """``lwa_l2_malformed_total`` + 1."""
        self._m.malformed.inc()


def metrics_registry(registry: CollectorRegistry | None = None) -> CollectorRegistry:
    """The registry to scrape: ``registry`` if given; else, when ``PROMETHEUS_MULTIPROC_DIR``
    is set, a new registry merging every process's files; else the global ``REGISTRY``."""
    if registry is not None:
        return registry
    if os.environ.get(MULTIPROC_ENV):
        merged = CollectorRegistry()
        MultiProcessCollector(merged)  # type: ignore[no-untyped-call]
        return merged
    return REGISTRY


def _exposition(registry: CollectorRegistry) -> tuple[bytes, str]:
    return generate_latest(registry), CONTENT_TYPE_PLAIN_0_0_4


Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Coroutine[Any, Any, None]]


class _ASGIApp:
    """An ASGI callable that is not a function, so Starlette's ``Route("/metrics", app)``
    serves it as an ASGI app (a ``Mount`` would redirect ``/metrics`` to ``/metrics/``)."""

    __slots__ = ("_app",)

    def __init__(self, app: ASGIApp) -> None:
        self._app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._app(scope, receive, send)


def metrics_app(registry: CollectorRegistry | None = None) -> ASGIApp:
    """An ASGI app answering ``GET`` with the text exposition: ``Route("/metrics",
    metrics_app())`` in Starlette (or mount it anywhere in another framework)."""
    target = metrics_registry(registry)

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await answer_lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        if scope["method"] not in ("GET", "HEAD"):
            status, body, ctype = 405, b"Method Not Allowed\n", "text/plain; charset=utf-8"
        else:
            status = 200
            body, ctype = _exposition(target)
        headers = [
            (b"content-type", ctype.encode()),
            (b"content-length", str(len(body)).encode()),
            (b"cache-control", b"no-store"),
        ]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send(
            {"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else body}
        )

    return _ASGIApp(app)


def metrics_wsgi_app(registry: CollectorRegistry | None = None) -> WSGIApplication:
    """A WSGI app answering ``GET`` with the text exposition (mount it at ``/metrics``)."""
    target = metrics_registry(registry)

    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        method = environ.get("REQUEST_METHOD", "GET")
        if method not in ("GET", "HEAD"):
            body, ctype, status = (
                b"Method Not Allowed\n",
                "text/plain; charset=utf-8",
                "405 Method Not Allowed",
            )
        else:
            (body, ctype), status = _exposition(target), "200 OK"
        start_response(
            status,
            [
                ("Content-Type", ctype),
                ("Content-Length", str(len(body))),
                ("Cache-Control", "no-store"),
            ],
        )
        return [b"" if method == "HEAD" else body]

    return app
