"""OpenTelemetry spans through the SDK's in-memory exporter: names, attributes, the user id
only when enabled, error marking, async parenting, and the no-op paths."""

from __future__ import annotations

import asyncio
import sys

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from lwa_middleware.core.errors import InvalidToken, LWAUnavailable
from lwa_middleware.upstream.tracing import (
    ATTR_CACHE,
    ATTR_ERROR_TYPE,
    ATTR_OUTCOME,
    ATTR_STATUS_CODE,
    ATTR_USER_ID,
    SPAN_PROFILE,
    SPAN_TOKENINFO,
    SPAN_VERIFY,
    Tracer,
    otel_available,
)

USER = "amzn1.account.U"


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def provider(exporter: InMemorySpanExporter) -> TracerProvider:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider


def spans(exporter: InMemorySpanExporter) -> dict[str, ReadableSpan]:
    return {span.name: span for span in exporter.get_finished_spans()}


def attributes(span: ReadableSpan) -> dict[str, object]:
    return dict(span.attributes or {})


class TestSpans:
    def test_verify_with_lwa_calls(
        self, provider: TracerProvider, exporter: InMemorySpanExporter
    ) -> None:
        tracer = Tracer(tracer_provider=provider)
        assert tracer.enabled
        with tracer.span(SPAN_VERIFY) as verify:
            assert verify.recording
            verify.set_cache("none")
            with tracer.span(SPAN_TOKENINFO) as call:
                call.set_status_code(200)
            with tracer.span(SPAN_PROFILE, {ATTR_STATUS_CODE: 200}):
                pass
            verify.set_outcome("ok")
            verify.set_user_id(USER)
        got = spans(exporter)
        assert set(got) == {SPAN_VERIFY, SPAN_TOKENINFO, SPAN_PROFILE}
        root = got[SPAN_VERIFY]
        assert attributes(root) == {ATTR_CACHE: "none", ATTR_OUTCOME: "ok"}
        assert root.kind == SpanKind.INTERNAL
        for name in (SPAN_TOKENINFO, SPAN_PROFILE):
            child = got[name]
            assert child.kind == SpanKind.CLIENT
            assert child.parent is not None
            assert child.parent.span_id == root.context.span_id
            assert attributes(child)[ATTR_STATUS_CODE] == 200

    def test_user_id_absent_by_default(
        self, provider: TracerProvider, exporter: InMemorySpanExporter
    ) -> None:
        tracer = Tracer(tracer_provider=provider)
        with tracer.span(SPAN_VERIFY, {ATTR_USER_ID: USER, ATTR_CACHE: "l1"}) as span:
            span.set_user_id(USER)
            span.set(ATTR_USER_ID, USER)
        attrs = attributes(spans(exporter)[SPAN_VERIFY])
        assert ATTR_USER_ID not in attrs and attrs[ATTR_CACHE] == "l1"
        assert USER not in repr(exporter.get_finished_spans()[0].to_json())

    def test_user_id_present_when_enabled(
        self, provider: TracerProvider, exporter: InMemorySpanExporter
    ) -> None:
        tracer = Tracer(tracer_provider=provider, record_user_id=True)
        with tracer.span(SPAN_VERIFY) as span:
            span.set_user_id(USER)
        with tracer.span(SPAN_PROFILE, {ATTR_USER_ID: USER}):
            pass
        got = spans(exporter)
        assert attributes(got[SPAN_VERIFY])[ATTR_USER_ID] == USER
        assert attributes(got[SPAN_PROFILE])[ATTR_USER_ID] == USER

    def test_server_side_failure_is_an_error_without_its_message(
        self, provider: TracerProvider, exporter: InMemorySpanExporter
    ) -> None:
        tracer = Tracer(tracer_provider=provider)
        with pytest.raises(LWAUnavailable), tracer.span(SPAN_TOKENINFO):
            raise LWAUnavailable("secret-ish text")
        span = spans(exporter)[SPAN_TOKENINFO]
        assert span.status.status_code == StatusCode.ERROR
        assert attributes(span)[ATTR_ERROR_TYPE] == "LWAUnavailable"
        assert attributes(span)[ATTR_OUTCOME] == "server_error"
        assert span.events == ()  # no exception event: its message is never exported
        assert "secret-ish" not in span.to_json()

    def test_a_rejected_token_is_an_outcome_not_an_error(
        self, provider: TracerProvider, exporter: InMemorySpanExporter
    ) -> None:
        tracer = Tracer(tracer_provider=provider)
        with pytest.raises(InvalidToken), tracer.span(SPAN_VERIFY):
            raise InvalidToken()
        span = spans(exporter)[SPAN_VERIFY]
        assert span.status.status_code == StatusCode.UNSET
        assert attributes(span)[ATTR_OUTCOME] == "invalid_token"

    def test_cancellation_is_not_marked(
        self, provider: TracerProvider, exporter: InMemorySpanExporter
    ) -> None:
        tracer = Tracer(tracer_provider=provider)
        with pytest.raises(asyncio.CancelledError), tracer.span(SPAN_VERIFY):
            raise asyncio.CancelledError
        span = spans(exporter)[SPAN_VERIFY]
        assert span.status.status_code == StatusCode.UNSET and not attributes(span)

    def test_async_calls_in_parallel_are_children_of_verify(
        self, provider: TracerProvider, exporter: InMemorySpanExporter
    ) -> None:
        tracer = Tracer(tracer_provider=provider)

        async def call(name: str) -> None:
            with tracer.span(name) as span:
                await asyncio.sleep(0.01)
                span.set_status_code(200)

        async def verify() -> None:
            with tracer.span(SPAN_VERIFY):
                await asyncio.gather(call(SPAN_TOKENINFO), call(SPAN_PROFILE))

        asyncio.run(verify())
        got = spans(exporter)
        root = got[SPAN_VERIFY]
        assert got[SPAN_TOKENINFO].parent is not None
        assert got[SPAN_TOKENINFO].parent.span_id == root.context.span_id
        assert got[SPAN_PROFILE].parent is not None
        assert got[SPAN_PROFILE].parent.span_id == root.context.span_id


class TestNoOp:
    def test_without_opentelemetry(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setitem(sys.modules, "opentelemetry", None)
        assert not otel_available()
        tracer = Tracer(record_user_id=True)
        assert not tracer.enabled
        first = tracer.span(SPAN_VERIFY)
        assert tracer.span(SPAN_PROFILE) is first  # one shared object: nothing allocated
        with first as span:
            assert not span.recording
            span.set_outcome("ok")
            span.set_user_id(USER)
            span.set_status_code(200)
            span.failed(LWAUnavailable())
        with pytest.raises(InvalidToken), tracer.span(SPAN_VERIFY):
            raise InvalidToken()

    def test_disabled(self, provider: TracerProvider, exporter: InMemorySpanExporter) -> None:
        tracer = Tracer(tracer_provider=provider, enabled=False)
        with tracer.span(SPAN_VERIFY) as span:
            span.set_outcome("ok")
        assert not tracer.enabled and exporter.get_finished_spans() == ()

    def test_no_provider_set_is_a_no_op(self) -> None:
        from opentelemetry import trace

        if not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
            pytest.skip("a global tracer provider was set by another test")
        tracer = Tracer()
        assert tracer.enabled
        with tracer.span(SPAN_VERIFY) as span:
            assert not span.recording
