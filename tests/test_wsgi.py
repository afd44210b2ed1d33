"""What only the WSGI shell does, through a threaded WSGI server against the emulator:
``environ["lwa"]`` and ``REMOTE_USER`` (replaced, removed on an anonymous request, left
alone where the middleware does not look), ``on_error`` answering with a WSGI app, and
single flight through the blocking verifier for thirty threads released together.

What both shells share (the error table, token sources, path rules, the cache) is tested
once for both in ``test_shells_*.py``; there ``principal`` is ``REMOTE_USER`` for WSGI.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import httpx

from lwa_middleware import LWAError, LWAWSGIMiddleware
from lwa_middleware.emulator import Emulator, serve_wsgi

from conftest import FakeClock, ServeWSGI, assert_error, bearer

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment


def environ_view(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    """What the middleware left in ``environ``: ``lwa`` and ``REMOTE_USER`` ("absent" when
    the key is not there at all)."""
    lwa = environ.get("lwa", "absent")
    body = {
        "lwa": lwa if lwa is None or lwa == "absent" else type(lwa).__name__,
        "user": getattr(lwa, "user_id", None),
        "remote_user": environ.get("REMOTE_USER", "absent"),
    }
    start_response("200 OK", [("content-type", "application/json")])
    return [json.dumps(body).encode()]


def test_environ_lwa_and_remote_user(
    emu: Emulator, emu_url: str, clock: FakeClock, http: httpx.Client
) -> None:
    middleware = LWAWSGIMiddleware(
        environ_view,
        client_ids=[emu.client_id],
        api_base_url=emu_url,
        clock=clock,
        exclude=["/public/*"],
        optional=["/feed"],
        protect=["/me", "/feed"],
    )

    def in_front(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        environ["REMOTE_USER"] = "someone-upstream"
        return middleware(environ, start_response)

    user, token = emu.mint_for(name="Ada")
    try:
        with serve_wsgi(in_front) as handle:
            verified = http.get(handle.url + "/me", headers=bearer(token)).json()
            anonymous = http.get(handle.url + "/feed").json()
            untouched = [
                http.get(handle.url + path, headers=bearer(token)).json()
                for path in ("/public/x", "/elsewhere")
            ]
    finally:
        middleware.close()
    assert verified == {"lwa": "Identity", "user": user.user_id, "remote_user": user.user_id}
    assert anonymous == {"lwa": None, "user": None, "remote_user": "absent"}
    for body in untouched:
        assert body == {"lwa": "absent", "user": None, "remote_user": "someone-upstream"}


def test_on_error_hook(wsgi_protected: ServeWSGI, emu: Emulator, http: httpx.Client) -> None:
    seen: list[tuple[str, str]] = []

    def teapot(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        start_response("418 I'm a teapot", [("content-type", "text/plain")])
        return [b"custom"]

    def on_error(environ: WSGIEnvironment, error: LWAError) -> WSGIApplication | None:
        seen.append((environ["PATH_INFO"], error.error))
        return teapot if environ["PATH_INFO"].startswith("/custom") else None

    url = wsgi_protected(on_error=on_error)
    custom = http.get(url + "/custom")
    assert custom.status_code == 418
    assert custom.text == "custom"
    assert_error(http.get(url + "/other"), "invalid_request", 400)
    _, token = emu.mint_for(name="Ada")
    emu.revoke(token)
    assert http.get(url + "/custom/x", headers=bearer(token)).status_code == 418
    assert seen == [
        ("/custom", "invalid_request"),
        ("/other", "invalid_request"),
        ("/custom/x", "invalid_token"),
    ]


def burst(count: int, send: Callable[[int], httpx.Response]) -> list[httpx.Response]:
    """``send(i)`` from ``count`` threads released together by a barrier."""
    barrier = threading.Barrier(count)

    def job(i: int) -> httpx.Response:
        barrier.wait()
        return send(i)

    with ThreadPoolExecutor(max_workers=count) as pool:
        return list(pool.map(job, range(count)))


def test_thirty_threads_one_new_token_one_call(wsgi_protected: ServeWSGI, emu: Emulator) -> None:
    url = wsgi_protected()
    user, token = emu.mint_for(name="Ada")
    emu.latency(1.0)  # wide: all thirty must arrive while the first call is out
    with httpx.Client(timeout=10, limits=httpx.Limits(max_connections=64)) as client:
        responses = burst(30, lambda _: client.get(url + "/me", headers=bearer(token)))
    assert [r.status_code for r in responses] == [200] * 30
    assert {r.json()["user"] for r in responses} == {user.user_id}
    assert emu.calls == {"tokeninfo": 1, "profile": 1}
