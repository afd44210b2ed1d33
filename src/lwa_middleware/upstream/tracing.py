"""OpenTelemetry spans for verifications and LWA calls (the ``otel`` extra: opentelemetry-api).

Layer: ``upstream`` (the middleware's I/O; it decides nothing; see ``ARCHITECTURE.md``).

:class:`Tracer` wraps an OpenTelemetry tracer; :meth:`Tracer.span` is a plain (sync)
context manager, so the sync and the async shells use it alike (the current span lives in
a ``contextvars`` variable, which each asyncio task has its own copy of). When
``opentelemetry`` cannot be imported, when ``enabled=False``, or while no tracer provider
has been set (the API's default: every span would be a non-recording one), ``span()``
returns one shared no-op object: no allocation, well under a microsecond.

Span names: ``lwa.verify`` (internal), ``lwa.tokeninfo``, ``lwa.profile``, ``lwa.token``,
``lwa.redis`` (client). Attributes: ``lwa.cache`` (``l1``, ``l2`` or ``none``),
``lwa.outcome`` (a :data:`~lwa_middleware.core.metrics.OUTCOMES` value),
``http.response.status_code``, ``error.type`` (the error's class name, never its message),
and ``enduser.id`` **only** for a tracer built with ``record_user_id=True``: a user id is
personal data, so it is dropped otherwise, whichever way it is set.

A span ended by an error gets ``lwa.outcome`` and ``error.type``; its status is ERROR only
for a server-side failure (``ServerError``: LWA failing, overloaded, breaker open), not for
a token LWA rejected (that is a normal outcome, like an HTTP 4xx on a server span).

"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final

from lwa_middleware.core.metrics import outcome_of

if TYPE_CHECKING:
    from opentelemetry.trace import Span, TracerProvider

__all__ = [
    "ATTR_CACHE",
    "ATTR_ERROR_TYPE",
    "ATTR_OUTCOME",
    "ATTR_STATUS_CODE",
    "ATTR_USER_ID",
    "SPAN_PROFILE",
    "SPAN_REDIS",
    "SPAN_TOKEN",
    "SPAN_TOKENINFO",
    "SPAN_VERIFY",
    "SpanHandle",
    "Tracer",
    "otel_available",
]

SPAN_VERIFY: Final = "lwa.verify"
SPAN_TOKENINFO: Final = "lwa.tokeninfo"
SPAN_PROFILE: Final = "lwa.profile"
SPAN_TOKEN: Final = "lwa.token"
SPAN_REDIS: Final = "lwa.redis"

ATTR_CACHE: Final = "lwa.cache"
ATTR_OUTCOME: Final = "lwa.outcome"
ATTR_STATUS_CODE: Final = "http.response.status_code"
ATTR_ERROR_TYPE: Final = "error.type"
ATTR_USER_ID: Final = "enduser.id"

#: The API loads a provider named by this variable on first use.
_PROVIDER_ENV: Final = "OTEL_PYTHON_TRACER_PROVIDER"
_UNKNOWN: Final = object()
_CLIENT_SPANS = frozenset({SPAN_TOKENINFO, SPAN_PROFILE, SPAN_TOKEN, SPAN_REDIS})
_SERVER_SIDE = frozenset({"server_error", "overloaded"})
Attributes = Mapping[str, "str | bool | int | float"]


def _trace_api() -> Any:
    """``opentelemetry.trace``, or ``None`` when it cannot be imported."""
    try:
        from opentelemetry import trace
    except ImportError:
        return None
    return trace


def otel_available() -> bool:
    """Whether ``opentelemetry-api`` can be imported."""
    return _trace_api() is not None


class SpanHandle:
    """What a ``with tracer.span(...)`` block gets: setters that keep the rules (no user id
    unless enabled). The no-op tracer's handle is a :class:`SpanHandle` whose setters do
    nothing."""

    __slots__ = ("_record_user_id", "_span")

    def __init__(self, span: Span | None, record_user_id: bool = False) -> None:
        self._span = span
        self._record_user_id = record_user_id

    @property
    def recording(self) -> bool:
        """Whether attributes set here are kept (skip computing them when not)."""
        return self._span is not None and self._span.is_recording()

    def set(self, key: str, value: str | bool | int | float) -> None:
        """Set one attribute (``enduser.id`` only when the tracer records user ids)."""
        span = self._span
        if span is None or (key == ATTR_USER_ID and not self._record_user_id):
            return
        span.set_attribute(key, value)

    def set_cache(self, level: str) -> None:
        """``lwa.cache``: where the identity was found (``l1``, ``l2``) or ``none``."""
        self.set(ATTR_CACHE, level)

    def set_outcome(self, outcome: str) -> None:
        """``lwa.outcome``: the verification's outcome."""
        self.set(ATTR_OUTCOME, outcome)

    def set_status_code(self, status: int) -> None:
        """``http.response.status_code`` of an LWA call."""
        self.set(ATTR_STATUS_CODE, status)

    def set_user_id(self, user_id: str) -> None:
        """``enduser.id``, only when the tracer was built with ``record_user_id=True``."""
        self.set(ATTR_USER_ID, user_id)

    def failed(self, error: BaseException) -> None:
        """Mark the span ended by ``error``: outcome and error type always; ERROR status
        only for a server-side failure. The message is never recorded (only the class)."""
        span = self._span
        if span is None or not isinstance(error, Exception):
            return  # cancellation, exit: not a verdict
        from opentelemetry.trace import Status, StatusCode

        outcome = outcome_of(error)
        span.set_attribute(ATTR_OUTCOME, outcome)
        span.set_attribute(ATTR_ERROR_TYPE, type(error).__name__)
        if outcome in _SERVER_SIDE:
            span.set_status(Status(StatusCode.ERROR, type(error).__name__))


_NULL_HANDLE: Final = SpanHandle(None)


class _NullSpan:
    """The shared no-op context manager (no allocation per span)."""

    __slots__ = ()

    def __enter__(self) -> SpanHandle:
        return _NULL_HANDLE

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        return None


_NULL_SPAN: Final = _NullSpan()


class Tracer:
    """Spans for lwa-middleware, or nothing at all when tracing is off or unavailable.

    ``tracer_provider`` defaults to OpenTelemetry's global one; ``record_user_id`` allows
    the ``enduser.id`` attribute (personal data: off by default).
    """

    __slots__ = (
        "_api",
        "_env_provider",
        "_provider",
        "_ready",
        "_tracer",
        "enabled",
        "record_user_id",
    )

    def __init__(
        self,
        name: str = "lwa_middleware",
        *,
        record_user_id: bool = False,
        tracer_provider: TracerProvider | None = None,
        enabled: bool = True,
    ) -> None:
        self.record_user_id = record_user_id
        api = _trace_api() if enabled else None
        #: Whether spans can be made at all (the API imported and tracing not turned off).
        self.enabled = api is not None
        self._api: Any = api
        self._provider = tracer_provider
        self._ready = False
        #: A provider named in the environment (read once: ``os.environ`` costs ~1 µs).
        self._env_provider = bool(os.environ.get(_PROVIDER_ENV))
        self._tracer: Any = None
        if api is not None:
            from lwa_middleware._version import __version__

            self._tracer = api.get_tracer(name, __version__, tracer_provider=tracer_provider)

    def _check(self) -> bool:
        """Whether a span would record: enabled, and a provider set (given, or global).

        Once true it stays true (a global provider cannot be unset), so :meth:`span` asks
        only until then; until then the check is one attribute read (the API's own
        ``get_tracer_provider()`` reads ``os.environ`` each time: ~1 µs).
        """
        api = self._api
        if api is None:
            return False
        if self._provider is None and not self._env_provider:
            if getattr(api, "_TRACER_PROVIDER", _UNKNOWN) is None:
                return False  # no global provider yet: every span would be non-recording
            if isinstance(api.get_tracer_provider(), api.ProxyTracerProvider):
                return False
        self._ready = True
        return True

    def span(
        self, name: str, attributes: Attributes | None = None
    ) -> AbstractContextManager[SpanHandle]:
        """A context manager for one span (``with tracer.span(SPAN_VERIFY) as span:``),
        current for the block; it yields a :class:`SpanHandle`."""
        if self._ready or self._check():
            return self._span(name, attributes)
        return _NULL_SPAN

    @contextmanager
    def _span(self, name: str, attributes: Attributes | None) -> Iterator[SpanHandle]:
        api = self._api
        attrs = dict(attributes) if attributes else {}
        if not self.record_user_id:
            attrs.pop(ATTR_USER_ID, None)
        kind = api.SpanKind.CLIENT if name in _CLIENT_SPANS else api.SpanKind.INTERNAL
        with self._tracer.start_as_current_span(
            name,
            kind=kind,
            attributes=attrs,
            record_exception=False,  # an exception's message is not ours to export
            set_status_on_exception=False,
        ) as span:
            handle = SpanHandle(span, self.record_user_id)
            try:
                yield handle
            except BaseException as error:
                handle.failed(error)
                raise

    def __repr__(self) -> str:
        return f"Tracer(enabled={self.enabled}, record_user_id={self.record_user_id})"
