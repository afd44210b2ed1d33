"""Traces of one cold and one warm request, printed by OpenTelemetry's console exporter.

Run it (``pip install 'lwa-middleware[emulator,otel]' opentelemetry-sdk``)::

    python examples/tracing_console.py

It serves the LWA emulator and a small app behind ``LWAMiddleware`` on 127.0.0.1, sends the
same token twice and prints the spans: the cold request makes ``lwa.verify`` with
``lwa.tokeninfo`` and ``lwa.profile`` inside it; the warm one (served from the cache) makes
none. The user ID is recorded only because ``trace_user_id=True`` is set here.
"""

from __future__ import annotations

import httpx
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SimpleSpanProcessor
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from lwa_middleware import LWAMiddleware
from lwa_middleware.emulator import Emulator, serve


async def me(request: Request) -> JSONResponse:
    return JSONResponse({"name": request.user.display_name})


def main() -> None:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter()))
    trace.set_tracer_provider(provider)
    with Emulator() as emulator:
        _, token = emulator.mint_for(name="Ada Lovelace")
        app = LWAMiddleware(
            Starlette(routes=[Route("/me", me)]),
            client_ids=[emulator.client_id],
            api_base_url=emulator.url,
            trace_user_id=True,
        )
        with serve(app) as server:
            headers = {"authorization": f"Bearer {token}"}
            for kind in ("cold", "warm"):
                print(f"--- {kind} request:", flush=True)
                answer = httpx.get(f"{server.url}/me", headers=headers)
                provider.force_flush()
                print(f"--- {kind} answer: {answer.status_code} {answer.text}", flush=True)


if __name__ == "__main__":
    main()
