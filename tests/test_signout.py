"""Sign-out ends a session everywhere, through real servers against the emulator and one
real ``redis-server``: two workers of one site (each its own sign-in, middleware and memory,
sharing only Redis), served by uvicorn (``LWALogin`` under ``LWAMiddleware``) or by a
threaded WSGI server (``LWAWSGILogin`` beside ``LWAWSGIMiddleware``), and then two worker
processes (uvicorn, gunicorn).

After ``POST /auth/logout`` on worker A, a copy of the session's cookies taken before is
refused on A at once and on B within a second: the access token as a cookie, as
``Authorization: Bearer`` and as ``x-amz-access-token`` (even where it was already in
memory), on a WebSocket handshake, and the refresh cookie alone (no refresh grant, cookies
cleared). The session ends ``session_max_age`` after sign-in whatever its refreshes, each
refresh cookie living only what remains of it. Revocation entries that fail their MAC are
ignored; a sign-out while Redis is down holds on its worker and reaches the others once
Redis is back.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.types import Receive, Scope, Send
from werkzeug.middleware.dispatcher import DispatcherMiddleware

from lwa_middleware import LWALogin, LWAMiddleware, LWAWSGILogin, LWAWSGIMiddleware
from lwa_middleware.core.cache import cache_key
from lwa_middleware.core.revocation import ACCESS, Revocation, RevocationFeed, Revocations
from lwa_middleware.core.tokens import cookie_signer
from lwa_middleware.emulator import DEFAULT_CLIENT_SECRET, Emulator, ServerHandle, serve, serve_wsgi
from redis_fixtures import AppProcess, RedisServer, free_port

from conftest import FakeClock, assert_error, bearer, whoami, ws_echo, wsgi_whoami

SECRET = "signout-secret-0123456789abcdef"
OTHER_SECRET = b"not-this-fleets-secret-0123456789"
SHELLS = ["asgi", "wsgi"]
SESSION_MAX_AGE = 7200
CONSENT = ("client_id", "redirect_uri", "scope", "state", "code_challenge", "code_challenge_method")
#: The promise: a sign-out reaches every worker within a second. The figure is printed; the
#: assertion adds a generous margin for a loaded 2-core machine.
REACH = 1.0
MARGIN = 1.5


@pytest.fixture(scope="module")
def redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One ``redis-server`` for the module (its sites use their own prefixes)."""
    server = RedisServer(tmp_path_factory.mktemp("signout-redis")).start()
    yield server
    server.terminate()


class LateASGI:
    """An ASGI app set once the server's port (so ``redirect_uri``) is known."""

    app: Any = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)


class LateWSGI:
    """The WSGI twin of :class:`LateASGI`."""

    app: Any = None

    def __call__(self, environ: Any, start_response: Any) -> Any:
        return self.app(environ, start_response)


@dataclass
class Worker:
    url: str
    middleware: LWAMiddleware | LWAWSGIMiddleware


@dataclass
class Fleet:
    """Two workers of one site on one Redis (``prefix``), and the emulator behind them."""

    shell: str
    a: Worker
    b: Worker
    prefix: str
    emu: Emulator
    emu_url: str


def _worker(
    shell: str, emu: Emulator, emu_url: str, clock: FakeClock, redis: RedisServer, prefix: str
) -> tuple[Worker, ServerHandle]:
    late: LateASGI | LateWSGI
    if shell == "asgi":
        late = LateASGI()
        handle = serve(late, lifespan="off")
    else:
        late = LateWSGI()
        handle = serve_wsgi(late)
    login_options: dict[str, Any] = {
        "redirect_uri": handle.url + "/auth/callback",
        "secret_key": SECRET,
        "authorize_url": emu_url + "/ap/oa",
        "api_base_url": emu_url,
        "clock": clock,
        "session_max_age": SESSION_MAX_AGE,
    }
    options: dict[str, Any] = {
        "client_ids": [emu.client_id],
        "api_base_url": emu_url,
        "clock": clock,
        "redis_url": redis.url,
        "redis_prefix": prefix,
        "redis_backoff": 0.3,
    }
    middleware: LWAMiddleware | LWAWSGIMiddleware
    if shell == "asgi":
        login = LWALogin(emu.client_id, DEFAULT_CLIENT_SECRET, **login_options)
        inner = Starlette(
            routes=[
                Mount("/auth", app=login),
                WebSocketRoute("/ws", ws_echo),
                Route("/{path:path}", whoami, methods=["GET", "POST"]),
            ]
        )
        middleware = LWAMiddleware(inner, login=login, exclude=["/auth/*"], **options)
        late.app = middleware
    else:
        wsgi_login = LWAWSGILogin(emu.client_id, DEFAULT_CLIENT_SECRET, **login_options)
        middleware = LWAWSGIMiddleware(wsgi_whoami, login=wsgi_login, **options)
        late.app = DispatcherMiddleware(middleware, {"/auth": wsgi_login})
    return Worker(handle.url, middleware), handle


@pytest.fixture(scope="module", params=SHELLS)
def fleet(
    request: pytest.FixtureRequest,
    emulator_session: tuple[Emulator, ServerHandle],
    clock: FakeClock,
    redis: RedisServer,
) -> Iterator[Fleet]:
    emu, emu_handle = emulator_session
    prefix = f"signout-{request.param}"
    a, a_handle = _worker(request.param, emu, emu_handle.url, clock, redis, prefix)
    b, b_handle = _worker(request.param, emu, emu_handle.url, clock, redis, prefix)
    yield Fleet(request.param, a, b, prefix, emu, emu_handle.url)
    for handle, worker in ((a_handle, a), (b_handle, b)):
        handle.stop()
        if isinstance(worker.middleware, LWAWSGIMiddleware):
            worker.middleware.close()


# Walking the flow ------------------------------------------------------------------------


def sign_in(url: str, emu_url: str) -> dict[str, httpx.Response | dict[str, str]]:
    """Sign in at ``url`` as a browser does: the callback's answer and the cookies set."""
    with httpx.Client(base_url=url, follow_redirects=False, timeout=10) as browser:
        start = browser.get("/auth/login", params={"next": "/me"})
        assert start.status_code == 302, start.text
        params = dict(httpx.URL(start.headers["location"]).params)
        body = {key: params[key] for key in CONSENT} | {"decision": "approve"}
        consent = httpx.post(emu_url + "/_emulator/authorize", json=body, timeout=10)
        assert consent.status_code == 200, consent.text
        done = browser.get(consent.json()["redirect"])
        assert done.status_code == 302, done.text
        return {"answer": done, "cookies": dict(browser.cookies)}


def sign_out(url: str, cookies: dict[str, str]) -> None:
    out = httpx.post(
        url + "/auth/logout", headers={"origin": url, "cookie": header(cookies)}, timeout=10
    )
    assert out.status_code == 303, out.text
    assert_cleared(out)


def header(cookies: dict[str, str], *names: str) -> str:
    """A ``Cookie`` header of ``cookies`` (those ``names`` only, when given)."""
    chosen = [(name, value) for name, value in cookies.items() if not names or name in names]
    return "; ".join(f"{name}={value}" for name, value in chosen)


def set_cookies(response: httpx.Response) -> dict[str, str]:
    return {v.partition("=")[0]: v for v in response.headers.get_list("set-cookie")}


def values(response: httpx.Response) -> dict[str, str]:
    """The values of the cookies a response sets."""
    cookies = set_cookies(response).items()
    return {name: v.partition("=")[2].partition(";")[0] for name, v in cookies}


def max_age(set_cookie: str) -> int:
    return int(set_cookie.split("Max-Age=")[1].partition(";")[0])


def assert_cleared(response: httpx.Response) -> None:
    cookies = set_cookies(response)
    for name in ("lwa_token", "lwa_token_refresh"):
        assert "Max-Age=0" in cookies[name], cookies


def get(url: str, headers: dict[str, str], path: str = "/me") -> httpx.Response:
    """One request on a new connection, with no cookie jar (each carries what it is given)."""
    return httpx.get(url + path, headers=headers, timeout=10)


def carriers(cookies: dict[str, str]) -> dict[str, dict[str, str]]:
    """The session's access token on each carrier: its cookie, and the two headers (the
    bearer as sent, and percent-encoded: other bytes, the same token)."""
    token = cookie_signer(SECRET).unsign(cookies["lwa_token"]).decode()
    return {
        "cookie": {"cookie": header(cookies, "lwa_token")},
        "bearer": bearer(token),
        "x-amz-access-token": {"x-amz-access-token": token},
        "bearer, percent-encoded": bearer(token.replace("|", "%7C")),  # decoded once
    }


def until_refused(url: str, headers: dict[str, str], within: float) -> float:
    """Seconds until ``url`` answers ``invalid_token`` to ``headers`` (fails after ``within``)."""
    started = time.monotonic()
    while True:
        answer = get(url, headers)
        took = time.monotonic() - started
        if answer.status_code != 200:
            assert_error(answer, "invalid_token", 400)
            return took
        assert took < within, f"still accepted {took:.2f} s after the sign-out"
        time.sleep(0.02)


# Sign-out --------------------------------------------------------------------------------


def test_sign_out_refuses_every_copy_on_every_worker(fleet: Fleet, emu: Emulator) -> None:
    emu.add_user(name="Ada Lovelace")
    a, b = fleet.a.url, fleet.b.url
    cookies = sign_in(a, fleet.emu_url)["cookies"]
    assert isinstance(cookies, dict)
    copies = carriers(cookies)
    token = copies["bearer"]["authorization"].removeprefix("Bearer ")
    for url in (a, b):  # every carrier verified on both workers: in both memories now
        for carried in copies.values():
            assert get(url, carried).status_code == 200
    sign_out(a, cookies)
    for name, carried in copies.items():  # the worker that signed out: at once
        assert_error(get(a, carried), "invalid_token", 400), name
    reached = until_refused(b, copies["bearer"], REACH + MARGIN)
    print(f"\nsign-out reached the other worker ({fleet.shell}) in {reached:.3f} s")
    for carried in copies.values():
        answer = get(b, carried)
        assert_error(answer, "invalid_token", 400)
        assert "revoked" in answer.json()["error_description"]
    for url in (a, b):  # the refresh cookie: alone, or with the access cookie
        for cookie in (header(cookies, "lwa_token_refresh"), header(cookies)):
            answer = get(url, {"cookie": cookie})
            assert_error(answer, "invalid_token", 400)
            assert_cleared(answer)
            assert "signed out" in answer.json()["error_description"]
    assert emu.token_calls["refresh_token"] == 0  # no refresh grant was even asked for
    assert emu.validate(token) is not None  # LWA still accepts the token: the refusal is ours
    stats = fleet.b.middleware.stats()["revocations"]
    assert stats["learned"] >= 2 and stats["bad_mac"] == 0 and stats["held"] >= 2
    if fleet.shell == "asgi":
        from websockets.exceptions import InvalidStatus
        from websockets.sync.client import connect

        url = b.replace("http://", "ws://") + "/ws"
        with (
            pytest.raises(InvalidStatus) as refused,
            connect(url, additional_headers=copies["bearer"]),
        ):
            pass  # pragma: no cover - the handshake is refused
        assert refused.value.response.status_code == 400
        assert b'"invalid_token"' in refused.value.response.body


def test_what_a_copied_refresh_cookie_got_before_the_sign_out_is_revoked_with_it(
    fleet: Fleet, emu: Emulator
) -> None:
    emu.add_user(name="Ada Lovelace")
    cookies = sign_in(fleet.a.url, fleet.emu_url)["cookies"]
    assert isinstance(cookies, dict)
    # The thief refreshes the copied refresh cookie on worker B: a token and a refresh
    # cookie the browser never saw.
    stolen = get(fleet.b.url, {"cookie": header(cookies, "lwa_token_refresh")})
    assert stolen.status_code == 200, stolen.text
    theirs = values(stolen)
    assert {"lwa_token", "lwa_token_refresh"} <= set(theirs)
    copies = carriers(theirs)
    assert get(fleet.a.url, copies["bearer"]).status_code == 200
    sign_out(fleet.a.url, cookies)  # the browser signs out on worker A
    for url in (fleet.a.url, fleet.b.url):
        took = until_refused(url, copies["bearer"], REACH + MARGIN)
        print(f"\na token issued to the session elsewhere was refused in {took:.3f} s")
        for carried in copies.values():
            assert_error(get(url, carried), "invalid_token", 400)
        answer = get(url, {"cookie": header(theirs, "lwa_token_refresh")})
        assert_error(answer, "invalid_token", 400)
        assert_cleared(answer)
    assert emu.token_calls["refresh_token"] == 1


def test_another_session_of_the_same_user_is_not_signed_out(fleet: Fleet, emu: Emulator) -> None:
    emu.add_user(name="Ada Lovelace")
    first = sign_in(fleet.a.url, fleet.emu_url)["cookies"]
    second = sign_in(fleet.a.url, fleet.emu_url)["cookies"]
    assert isinstance(first, dict) and isinstance(second, dict)
    sign_out(fleet.a.url, first)
    assert get(fleet.a.url, {"cookie": header(second)}).status_code == 200
    assert_error(get(fleet.a.url, {"cookie": header(first)}), "invalid_token", 400)


# The session's lifetime ------------------------------------------------------------------


def test_a_session_ends_session_max_age_after_sign_in(
    fleet: Fleet, emu: Emulator, clock: FakeClock
) -> None:
    emu.add_user(name="Grace Hopper")
    signed_in = sign_in(fleet.a.url, fleet.emu_url)
    answer, first = signed_in["answer"], signed_in["cookies"]
    assert isinstance(answer, httpx.Response) and isinstance(first, dict)
    assert max_age(set_cookies(answer)["lwa_token_refresh"]) == SESSION_MAX_AGE
    clock.advance(3601)  # the access token expired: the next request refreshes
    refreshed = get(fleet.b.url, {"cookie": header(first)})
    assert refreshed.status_code == 200, refreshed.text
    assert emu.token_calls["refresh_token"] == 1
    new = set_cookies(refreshed)
    # With the client secret a new refresh token comes back: its cookie lives what remains
    # of the session (never a fresh window), and so does the access cookie.
    assert max_age(new["lwa_token_refresh"]) in (SESSION_MAX_AGE - 3601, SESSION_MAX_AGE - 3602)
    assert max_age(new["lwa_token"]) == max_age(new["lwa_token_refresh"])
    second = values(refreshed)
    assert second["lwa_token_refresh"] != first["lwa_token_refresh"]
    clock.advance(SESSION_MAX_AGE - 3601)  # the end of the session
    for cookies in (second, first):  # the newest refresh cookie, and a copy of the first
        for url in (fleet.a.url, fleet.b.url):
            ended = get(url, {"cookie": header(cookies, "lwa_token_refresh")})
            assert_error(ended, "invalid_token", 400)
            assert_cleared(ended)
            assert "expired" in ended.json()["error_description"]
    assert emu.token_calls["refresh_token"] == 1


# The fleet's list in Redis ---------------------------------------------------------------


def plant(redis: RedisServer, prefix: str, secret: bytes, entry: Revocation) -> None:
    """Write a revocation entry as a worker holding ``secret`` would."""
    feed = RevocationFeed(prefix, [secret], Revocations())
    member = feed.encode(entry)
    client = redis.client()
    client.zadd(feed.zset, {member: entry.until})
    client.xadd(feed.stream, {b"e": member})


def test_entries_with_a_bad_mac_are_ignored(
    fleet: Fleet, emu: Emulator, clock: FakeClock, redis: RedisServer
) -> None:
    _, token = emu.mint_for(name="Mallory's victim")
    b = fleet.b
    assert get(b.url, bearer(token)).status_code == 200
    entry = Revocation(ACCESS, cache_key(fleet.emu_url, token), clock() + 3600)
    before = b.middleware.stats()["revocations"]
    plant(redis, fleet.prefix, OTHER_SECRET, entry)  # written without this fleet's secret
    redis.client().xadd(fleet.prefix.encode() + b":revocations:v1:feed", {b"e": b"junk"})
    deadline = time.monotonic() + REACH + MARGIN
    while b.middleware.stats()["revocations"]["bad_mac"] == before["bad_mac"]:
        assert time.monotonic() < deadline, "the planted entry was never read"
        time.sleep(0.02)
    after = b.middleware.stats()["revocations"]
    assert after["bad_mac"] == before["bad_mac"] + 1
    assert after["malformed"] == before["malformed"] + 1
    assert get(b.url, bearer(token)).status_code == 200  # ignored
    plant(redis, fleet.prefix, SECRET.encode(), entry)  # the same, signed with the secret
    until_refused(b.url, bearer(token), REACH + MARGIN)


def test_a_sign_out_while_redis_is_down_reaches_the_fleet_once_it_is_back(
    fleet: Fleet, emu: Emulator, redis: RedisServer
) -> None:
    emu.add_user(name="Katherine Johnson")
    cookies = sign_in(fleet.a.url, fleet.emu_url)["cookies"]
    assert isinstance(cookies, dict)
    copy = carriers(cookies)["bearer"]
    assert get(fleet.b.url, copy).status_code == 200
    redis.kill()
    try:
        sign_out(fleet.a.url, cookies)  # Redis failing never fails the request
        assert_error(get(fleet.a.url, copy), "invalid_token", 400)  # held where it was made
    finally:
        redis.restart()
    # Published once Redis answers (after the back-off), read by the other worker.
    took = until_refused(fleet.b.url, copy, 5.0)
    print(f"\nsign-out made while Redis was down reached the other worker in {took:.3f} s")


# Worker processes ------------------------------------------------------------------------


class Process(AppProcess):
    """One worker process serving ``signout_worker_app`` on its own port."""

    def __init__(self, kind: str, env: dict[str, str], folder: Path) -> None:
        port = free_port()  # the site's URL goes into the app's environment
        app = ("signout_worker_app", "asgi", "wsgi")
        site = {**env, "SIGNOUT_SITE": f"http://127.0.0.1:{port}"}
        super().__init__(kind, app, site, folder / f"{kind}-{port}.log", port=port)

    def wait_up(self, seconds: float = 20.0) -> None:
        """Until the sign-out's confirm page answers (nothing verified, nothing synced)."""
        deadline = time.monotonic() + seconds
        while True:
            try:
                if httpx.get(self.url + "/auth/logout", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline or self.process.poll() is not None:
                pytest.fail(f"{self.url} never answered:\n{self.log.read_text()[-2000:]}")
            time.sleep(0.05)


@pytest.fixture
def processes(
    emu: Emulator, emu_url: str, redis: RedisServer, tmp_path: Path
) -> Iterator[Callable[[str], Process]]:
    """``start(kind) -> Process``, up; every one started is stopped after the test."""
    started: list[Process] = []

    def start(kind: str) -> Process:
        env = {
            "LWA_CLIENT_IDS": emu.client_id,
            "LWA_API_BASE_URL": emu_url,
            "LWA_REDIS_URL": redis.url,
            "LWA_REDIS_PREFIX": f"processes-{kind}",
            "LWA_SECRET_KEY": SECRET,
            "SIGNOUT_AUTHORIZE_URL": emu_url + "/ap/oa",
            "SIGNOUT_CLIENT_SECRET": DEFAULT_CLIENT_SECRET,
        }
        started.append(Process(kind, env, tmp_path))
        started[-1].wait_up()
        return started[-1]

    yield start
    for process in started:
        process.stop()


@pytest.mark.parametrize("kind", ["uvicorn", "gunicorn"])
def test_sign_out_reaches_a_worker_process_started_after_it(
    processes: Callable[[str], Process],
    emu: Emulator,
    emu_url: str,
    redis: RedisServer,
    kind: str,
) -> None:
    a = processes(kind)
    emu.add_user(name="Dorothy Vaughan")
    signed_in = sign_in(a.url, emu_url)["cookies"]
    assert isinstance(signed_in, dict)
    cookies = signed_in
    sign_out(a.url, cookies)
    zset = f"processes-{kind}:revocations:v1".encode()
    deadline = time.monotonic() + REACH + MARGIN
    while redis.client().zcard(zset) < 2:  # published: the access token and the session
        assert time.monotonic() < deadline, "the sign-out was never published"
        time.sleep(0.02)
    b = processes(kind)  # another process of the fleet, started after the sign-out
    # Its very first request: the copied refresh cookie alone. Refused (no refresh grant,
    # cookies cleared): the worker read the fleet's list before deciding.
    answer = get(b.url, {"cookie": header(cookies, "lwa_token_refresh")})
    assert_error(answer, "invalid_token", 400)
    assert_cleared(answer)
    for carried in carriers(cookies).values():
        assert_error(get(b.url, carried), "invalid_token", 400)
    assert emu.token_calls["refresh_token"] == 0
