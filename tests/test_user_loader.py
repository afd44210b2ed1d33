"""The ``user_loader``: the app's own users behind both middlewares, through real servers
(uvicorn and a threaded wsgiref server) against the emulator.

One set of servers serves the module: ``LWAMiddleware`` with an async loader, with a sync
one (run in the thread pool), and ``LWAWSGIMiddleware`` with a sync one, all on one table
of accounts and one clock of the test's own (so the loader's cache can be aged without
ageing the tokens). Every decision is asked twice, cold and warm (the identity cached).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterable, Iterator
from contextlib import closing
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.authentication import BaseUser
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

from lwa_middleware import (
    ConfigurationError,
    Identity,
    LWAMiddleware,
    LWASettings,
    LWAWSGIMiddleware,
    NoAccount,
    ServerError,
)
from lwa_middleware.core.users import NO_USER, UserCache
from lwa_middleware.emulator import Emulator, ServerHandle, serve, serve_wsgi

from conftest import APP_HEADER, FakeClock, LateASGI, LateWSGI, assert_error, bearer, raw_get

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

SHELLS = ["asgi", "asgi-sync", "wsgi"]


class Member(BaseUser):
    """An account that is also a Starlette user (``request.user`` becomes it)."""

    def __init__(self, name: str) -> None:
        self.name = name

    @property
    def is_authenticated(self) -> bool:
        return True

    @property
    def display_name(self) -> str:
        return self.name


@dataclass
class Account:
    """A plain account (not a Starlette user)."""

    name: str


@dataclass
class Accounts:
    """The app's table of accounts by LWA user id, and who the loader was asked for."""

    rows: dict[str, Any] = field(default_factory=dict)
    calls: list[str] = field(default_factory=list)
    broken: set[str] = field(default_factory=set)

    def load(self, identity: Identity) -> Any:
        self.calls.append(identity.user_id)
        if identity.user_id in self.broken:
            raise RuntimeError("the database is down")
        return self.rows.get(identity.user_id)

    async def aload(self, identity: Identity) -> Any:
        await asyncio.sleep(0)
        return self.load(identity)

    def count(self, user_id: str) -> int:
        return self.calls.count(user_id)


def _shown(user: Any) -> Any:
    if user is None:
        return None
    return {"kind": type(user).__name__, "name": user.name}


async def echo(request: Request) -> Response:
    user = request.scope.get("user")
    body = {
        "lwa.user": _shown(request.scope["lwa.user"]) if "lwa.user" in request.scope else "absent",
        "request.user": None if user is None else type(user).__name__,
        "display": None if user is None else user.display_name,
        "lwa": None if request.scope.get("lwa") is None else request.scope["lwa"].user_id,
    }
    return JSONResponse(body, headers=dict([APP_HEADER]))


async def ws_echo(websocket: WebSocket) -> None:
    await websocket.accept()
    user = websocket.scope.get("lwa.user")
    await websocket.send_text(user.name if user is not None else "none")
    await websocket.close()


def asgi_app() -> Starlette:
    return Starlette(
        routes=[
            WebSocketRoute("/ws", ws_echo),
            Route("/{path:path}", echo, methods=["GET", "POST"]),
        ]
    )


def wsgi_echo(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    identity = environ.get("lwa")
    body = {
        "lwa.user": _shown(environ["lwa.user"]) if "lwa.user" in environ else "absent",
        "request.user": environ.get("REMOTE_USER"),
        "display": None,
        "lwa": None if identity is None else identity.user_id,
    }
    start_response("200 OK", [("content-type", "application/json"), APP_HEADER])
    return [json.dumps(body).encode()]


@dataclass
class Sites:
    urls: dict[str, str]
    accounts: Accounts
    clock: FakeClock
    emulator: Emulator
    middlewares: dict[str, Any]
    people: dict[str, tuple[str, str]]  # name -> (user_id, token)

    def token(self, name: str) -> str:
        return self.people[name][1]

    def user_id(self, name: str) -> str:
        return self.people[name][0]


@pytest.fixture(scope="module")
def sites(emulator: Emulator) -> Iterator[Sites]:
    accounts = Accounts()
    clock = FakeClock()
    people = {}
    for name, email in [
        ("ada", "ada@example.com"),  # a Member (a Starlette BaseUser)
        ("bob", "bob@example.com"),  # a plain Account
        ("nobody", "nobody@example.com"),  # no account
        ("outsider", "eve@evil.example"),  # refused by the policy
        ("boom", "boom@example.com"),  # the loader raises
        ("quitter", "quit@example.com"),  # deactivated during a test
        ("curt", "curt@example.com"),  # authorize refuses them
    ]:
        user = emulator.add_user(name=name.title(), email=email)
        people[name] = (user.user_id, emulator.mint(user.user_id, ["profile"]))
    accounts.rows[people["ada"][0]] = Member("Ada")
    accounts.rows[people["bob"][0]] = Account("Bob")
    accounts.rows[people["quitter"][0]] = Account("Quitter")
    accounts.rows[people["curt"][0]] = Account("Curt")
    accounts.broken.add(people["boom"][0])
    curt = people["curt"][0]
    options: dict[str, Any] = {
        "client_ids": [emulator.client_id],
        "api_base_url": emulator.url,
        "clock": clock,
        "allow": {"/*": ["domain:example.com"]},
        "optional": ["/maybe", "/link"],
        "user_optional": ["/link"],
        "authorize": lambda identity, method, path: identity.user_id != curt,
    }
    middlewares: dict[str, Any] = {
        "asgi": LWAMiddleware(asgi_app(), user_loader=accounts.aload, **options),
        "asgi-sync": LWAMiddleware(asgi_app(), user_loader=accounts.load, **options),
        "wsgi": LWAWSGIMiddleware(wsgi_echo, user_loader=accounts.load, **options),
    }
    handles: list[ServerHandle] = [
        serve(middlewares["asgi"], lifespan="on"),
        serve(middlewares["asgi-sync"], lifespan="on"),
        serve_wsgi(middlewares["wsgi"]),
    ]
    try:
        yield Sites(
            dict(zip(SHELLS, (h.url for h in handles))),
            accounts,
            clock,
            emulator,
            middlewares,
            people,
        )
    finally:
        for handle in handles:
            handle.stop()
        middlewares["wsgi"].close()


@pytest.fixture(params=SHELLS)
def shell(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def twice(
    http: httpx.Client, url: str, token: str | None = None, **kw: Any
) -> list[httpx.Response]:
    """The same request cold, then warm (the identity cached)."""
    headers = bearer(token) if token else {}
    return [http.get(url, headers=headers, **kw) for _ in range(2)]


def assert_no_account(response: httpx.Response) -> None:
    body = assert_error(response, "access_denied", 403, challenge=False)
    assert body["error_description"] == NoAccount.default_description


def test_the_app_gets_its_user(sites: Sites, http: httpx.Client, shell: str) -> None:
    """The loaded user is at ``lwa.user`` (and Starlette's ``request.user`` when it is a
    ``BaseUser``); the loader is asked once, warm requests use the cache."""
    url = sites.urls[shell]
    for name, shown in [
        ("ada", {"kind": "Member", "name": "Ada"}),
        ("bob", {"kind": "Account", "name": "Bob"}),
    ]:
        sites.middlewares[shell].forget_user(sites.user_id(name))
        before = sites.accounts.count(sites.user_id(name))
        for response in [
            *twice(http, url + "/me", sites.token(name)),
            http.get(url + "/other", headers=bearer(sites.token(name))),
        ]:
            assert response.status_code == 200, response.text
            body = response.json()
            assert body["lwa.user"] == shown
            assert body["lwa"] == sites.user_id(name)
            if shell == "wsgi":
                assert body["request.user"] == sites.user_id(name)  # REMOTE_USER, as before
            elif name == "ada":
                assert (body["request.user"], body["display"]) == ("Member", "Ada")
            else:
                assert body["request.user"] == "LWAUser"  # not a BaseUser: LWA's own
        assert sites.accounts.count(sites.user_id(name)) == before + 1


def test_no_account_is_refused_everywhere_a_token_is_verified(
    sites: Sites, http: httpx.Client, shell: str
) -> None:
    url = sites.urls[shell]
    token = sites.token("nobody")
    for path in ("/me", "/maybe"):  # protected and optional alike
        for response in twice(http, url + path, token):
            assert_no_account(response)
    # anonymous on an optional route: no token, no loader, lwa.user None
    anonymous = http.get(url + "/maybe").json()
    assert anonymous["lwa.user"] is None
    assert anonymous["lwa"] is None
    # None is never cached: the account made now counts at once
    user_id = sites.user_id("nobody")
    calls = sites.accounts.count(user_id)
    sites.accounts.rows[user_id] = Account("Nobody")
    try:
        assert http.get(url + "/me", headers=bearer(token)).json()["lwa.user"]["name"] == "Nobody"
    finally:
        del sites.accounts.rows[user_id]
        sites.middlewares[shell].forget_user(user_id)
    assert sites.accounts.count(user_id) == calls + 1


def test_the_loader_is_asked_only_for_admitted_customers(
    sites: Sites, http: httpx.Client, shell: str
) -> None:
    """The policy's rules, then ``authorize``, then the loader: no account is ever looked
    up (or made) for a customer the policy refuses, nor for a bad token."""
    url = sites.urls[shell]
    for name in ("outsider", "curt"):
        for response in twice(http, url + "/me", sites.token(name)):
            body = assert_error(response, "access_denied", 403, challenge=False)
            assert body["error_description"] == "You are not allowed to access this resource."
        assert sites.accounts.count(sites.user_id(name)) == 0
    assert_error(http.get(url + "/me"), "invalid_request", 400)
    assert_error(http.get(url + "/me", headers=bearer("Atza|" + "x" * 400)), "invalid_token", 400)


def test_a_failing_loader_is_a_500_never_an_admission(
    sites: Sites, http: httpx.Client, shell: str, caplog: pytest.LogCaptureFixture
) -> None:
    url = sites.urls[shell]
    token = sites.token("boom")
    with caplog.at_level(logging.ERROR, logger="lwa_middleware"):
        for path in ("/me", "/maybe", "/link"):
            for response in twice(http, url + path, token):
                assert_error(response, "ServerError", 500)
    lines = [r for r in caplog.records if "user_loader raised RuntimeError" in r.getMessage()]
    assert len(lines) == 6
    assert all(r.exc_info is not None for r in lines)
    text = "\n".join(r.getMessage() + str(r.exc_info) for r in caplog.records)
    assert token not in text


def test_a_deactivated_account_loses_access_within_the_ttl(
    sites: Sites, http: httpx.Client, shell: str
) -> None:
    """``user_cache_ttl`` (60 s by default) bounds how long a cached user is trusted;
    ``forget_user`` ends it at once in this worker."""
    url = sites.urls[shell]
    middleware = sites.middlewares[shell]
    user_id, token = sites.people["quitter"]
    assert middleware.settings.user_cache_ttl == 60
    middleware.forget_user(user_id)
    assert http.get(url + "/me", headers=bearer(token)).status_code == 200
    account = sites.accounts.rows.pop(user_id)  # deactivated: the loader answers None
    try:
        sites.clock.advance(59)
        assert http.get(url + "/me", headers=bearer(token)).status_code == 200  # cached
        sites.clock.advance(2)
        for response in twice(http, url + "/me", token):
            assert_no_account(response)
    finally:
        sites.accounts.rows[user_id] = account
    assert http.get(url + "/me", headers=bearer(token)).status_code == 200
    del sites.accounts.rows[user_id]
    try:
        middleware.forget_user(user_id)
        assert_no_account(http.get(url + "/me", headers=bearer(token)))
    finally:
        sites.accounts.rows[user_id] = account


def test_user_optional_paths(sites: Sites, http: httpx.Client, shell: str) -> None:
    """A customer without an account reaches a ``user_optional`` path (the page that links
    an account) with ``lwa.user`` None; a path that only looks like one does not."""
    url = sites.urls[shell]
    token = sites.token("nobody")
    for response in twice(http, url + "/link", token):
        assert response.status_code == 200
        assert response.json()["lwa.user"] is None
        assert response.json()["lwa"] == sites.user_id("nobody")
    assert http.get(url + "/link", headers=bearer(sites.token("bob"))).json()["lwa.user"] == {
        "kind": "Account",
        "name": "Bob",
    }
    assert_error(
        http.get(url + "/link", headers=bearer(sites.token("outsider"))),
        "access_denied",
        403,
        challenge=False,
    )  # the policy first
    for raw in (b"/link/../me", b"/link%2f..%2fme", b"//link/../me", b"/link;x/../me"):
        assert_no_account(raw_get(http, url, raw, bearer(token)))


@pytest.mark.anyio
@pytest.mark.parametrize("shell", ["asgi", "asgi-sync"])
async def test_websocket_handshakes(sites: Sites, shell: str) -> None:
    import websockets

    ws_url = sites.urls[shell].replace("http://", "ws://") + "/ws"
    for attempt in ("cold", "warm"):
        with pytest.raises(websockets.InvalidStatus) as refused:
            async with websockets.connect(ws_url, additional_headers=bearer(sites.token("nobody"))):
                pass  # pragma: no cover - the handshake is refused
        assert refused.value.response.status_code == 403, attempt
        assert b"access_denied" in refused.value.response.body
        with pytest.raises(websockets.InvalidStatus) as failed:
            async with websockets.connect(ws_url, additional_headers=bearer(sites.token("boom"))):
                pass  # pragma: no cover - the handshake is refused
        assert failed.value.response.status_code == 500, attempt
        async with websockets.connect(ws_url, additional_headers=bearer(sites.token("bob"))) as ws:
            assert await ws.recv() == "Bob"


def test_identities_from_another_worker_are_loaded_here(
    emulator: Emulator, http: httpx.Client, tmp_path: Any
) -> None:
    """With Redis, an identity another worker verified is shared; the users are not: each
    worker asks its own loader, and refuses a customer without an account."""
    from redis_fixtures import RedisServer

    redis_server = RedisServer(tmp_path).start()
    accounts = Accounts()
    member = emulator.add_user(name="Rae", email="rae@example.com")
    stranger = emulator.add_user(name="Sly", email="sly@example.com")
    accounts.rows[member.user_id] = Account("Rae")
    tokens = {u.user_id: emulator.mint(u.user_id, ["profile"]) for u in (member, stranger)}
    common: dict[str, Any] = {
        "client_ids": [emulator.client_id],
        "api_base_url": emulator.url,
        "redis_url": redis_server.url,
        "secret_key": "users-redis-secret-0123456789",
    }
    first = LWAMiddleware(asgi_app(), **common)  # no loader: verifies and shares
    asgi = LWAMiddleware(asgi_app(), user_loader=accounts.load, **common)
    wsgi = LWAWSGIMiddleware(wsgi_echo, user_loader=accounts.load, **common)
    handles = [serve(first, lifespan="on"), serve(asgi, lifespan="on"), serve_wsgi(wsgi)]
    try:
        urls = [handle.url for handle in handles]
        for token in tokens.values():
            assert http.get(urls[0] + "/me", headers=bearer(token)).json()["lwa.user"] == "absent"
        calls = dict(emulator.calls)
        for url in urls[1:]:
            for _ in range(2):
                assert_no_account(http.get(url + "/me", headers=bearer(tokens[stranger.user_id])))
                me = http.get(url + "/me", headers=bearer(tokens[member.user_id]))
                assert me.json()["lwa.user"] == {"kind": "Account", "name": "Rae"}
        assert emulator.calls == calls  # every identity came from Redis
        assert accounts.count(member.user_id) == 2  # once per worker
        assert accounts.count(stranger.user_id) == 4  # None is never cached
        assert asgi.verifier.authority.l2.stats.hits >= 2
    finally:
        for handle in handles:
            handle.stop()
        wsgi.close()
        redis_server.terminate()


# The sign-in: a customer without an account is told so, and gets no session -------------

SECRET = "users-signin-secret-0123456789"


@pytest.fixture(scope="module")
def sign_in_sites(emulator: Emulator, sites: Sites) -> Iterator[dict[str, str]]:
    from starlette.middleware import Middleware
    from starlette.routing import Mount
    from werkzeug.middleware.dispatcher import DispatcherMiddleware

    from lwa_middleware import LWALogin, LWAWSGILogin

    options: dict[str, Any] = {
        "client_ids": [emulator.client_id],
        "api_base_url": emulator.url,
        "user_optional": ["/link"],
    }
    late_asgi, late_wsgi = LateASGI(), LateWSGI()
    handles = [serve(late_asgi, lifespan="off"), serve_wsgi(late_wsgi)]
    common: dict[str, Any] = {"secret_key": SECRET, "authorize_url": emulator.url + "/ap/oa"}
    login = LWALogin(
        emulator.client_id,
        redirect_uri=handles[0].url + "/auth/callback",
        api_base_url=emulator.url,
        **common,
    )
    late_asgi.app = Starlette(
        routes=[Mount("/auth", app=login), Route("/{path:path}", echo)],
        middleware=[
            Middleware(
                LWAMiddleware,
                login=login,
                exclude=["/auth/*"],
                user_loader=sites.accounts.aload,
                **options,
            )
        ],
    )
    wsgi_login = LWAWSGILogin(
        emulator.client_id,
        redirect_uri=handles[1].url + "/auth/callback",
        api_base_url=emulator.url,
        **common,
    )
    protected = LWAWSGIMiddleware(
        wsgi_echo, login=wsgi_login, user_loader=sites.accounts.load, **options
    )
    late_wsgi.app = DispatcherMiddleware(protected, {"/auth": wsgi_login})
    try:
        yield dict(zip(["asgi", "wsgi"], (handle.url for handle in handles)))
    finally:
        for handle in handles:
            handle.stop()
        protected.close()


def sign_in(emulator: Emulator, site: str, user_id: str, next_path: str, **headers: str) -> Any:
    """The flow as a browser walks it, up to the callback's answer: ``(browser, answer)``."""
    browser = httpx.Client(base_url=site, follow_redirects=False, timeout=10)
    start = browser.get("/auth/login", params={"next": next_path})
    assert start.status_code == 302, start.text
    params = dict(httpx.URL(start.headers["location"]).params)
    keys = ("client_id", "redirect_uri", "scope", "state", "code_challenge")
    body = {key: params[key] for key in keys}
    body |= {"code_challenge_method": "S256", "user_id": user_id}
    consent = httpx.post(emulator.url + "/_emulator/authorize", json=body, timeout=10)
    assert consent.status_code == 200, consent.text
    return browser, browser.get(consent.json()["redirect"], headers=headers)


@pytest.mark.parametrize("site", ["asgi", "wsgi"])
def test_sign_in_without_an_account(
    emulator: Emulator, sites: Sites, sign_in_sites: dict[str, str], site: str
) -> None:
    url = sign_in_sites[site]
    browser, answer = sign_in(emulator, url, sites.user_id("nobody"), "/me")
    with closing(browser):
        assert answer.status_code == 403, answer.text
        assert answer.headers["content-type"].startswith("text/html")
        assert "no account on this site for this Amazon account" in answer.text
        cookies = answer.headers.get_list("set-cookie")
        assert [c.partition("=")[0] for c in cookies] == ["lwa_token_login"]
        assert "lwa_token" not in browser.cookies
    # the page that links an account takes them (user_optional): a session, lwa.user None
    browser, answer = sign_in(emulator, url, sites.user_id("nobody"), "/link")
    with closing(browser):
        assert answer.status_code == 302, answer.text
        assert browser.get("/link").json()["lwa.user"] is None
        assert_no_account(browser.get("/me"))
    browser, answer = sign_in(
        emulator, url, sites.user_id("boom"), "/me", accept="application/json"
    )
    with closing(browser):
        assert answer.status_code == 500
        assert answer.json()["error"] == "server_error"
        assert "lwa_token" not in browser.cookies
    browser, answer = sign_in(emulator, url, sites.user_id("bob"), "/me")
    with closing(browser):
        assert answer.status_code == 302, answer.text
        assert browser.get("/me").json()["lwa.user"] == {"kind": "Account", "name": "Bob"}


# Construction and the core ---------------------------------------------------------------


def test_options_are_checked_at_construction(monkeypatch: pytest.MonkeyPatch) -> None:
    base: dict[str, Any] = {"client_ids": ["amzn1.application-oa2-client.x"]}

    async def aload(identity: Identity) -> Any:
        return None  # pragma: no cover - never called

    with pytest.raises(ConfigurationError, match="user_loader must be callable"):
        LWASettings(**base, user_loader="myapp.load")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="user_cache_ttl"):
        LWASettings(**base, user_cache_ttl=-1)
    with pytest.raises(ConfigurationError, match="user_optional: path pattern"):
        LWASettings(**base, user_optional=["link"])
    with pytest.raises(ConfigurationError, match="user_loader is async: LWAWSGIMiddleware"):
        LWAWSGIMiddleware(wsgi_echo, user_loader=aload, **base)
    LWAMiddleware(asgi_app(), user_loader=aload, **base)  # fine under ASGI
    env = {"LWA_CLIENT_IDS": "amzn1.application-oa2-client.x"}
    with pytest.raises(ConfigurationError, match="LWA_USER_LOADER cannot be set"):
        LWASettings.from_env({**env, "LWA_USER_LOADER": "myapp:load"})
    read = LWASettings.from_env({**env, "LWA_USER_CACHE_TTL": "5", "LWA_USER_OPTIONAL": "/a /b"})
    assert (read.user_cache_ttl, read.user_optional) == (5.0, ("/a", "/b"))
    assert "user_loader" not in repr(LWASettings(**base, user_loader=Accounts().load))
    # the sign-in asks the loader through the middleware: the kinds must match
    from lwa_middleware import LWALogin, LWAWSGILogin

    sign_in: dict[str, Any] = {
        "redirect_uri": "http://127.0.0.1:1/auth/callback",
        "secret_key": SECRET,
    }
    client = "amzn1.application-oa2-client.x"
    wsgi_login: Any = LWAWSGILogin(client, **sign_in)  # the wrong kind, on purpose
    asgi_login: Any = LWALogin(client, **sign_in)
    with pytest.raises(ConfigurationError, match="or a user_loader is set"):
        LWAMiddleware(asgi_app(), login=wsgi_login, user_loader=aload, **base)
    with pytest.raises(ConfigurationError, match="or a user_loader is set"):
        LWAWSGIMiddleware(wsgi_echo, login=asgi_login, user_loader=Accounts().load, **base)


def test_a_sync_loader_returning_an_awaitable_under_wsgi_is_a_500(
    emulator: Emulator, caplog: pytest.LogCaptureFixture
) -> None:
    async def later(identity: Identity) -> Any:
        return Account("never")  # pragma: no cover - never awaited

    _, token = emulator.mint_for(name="Ada")
    middleware = LWAWSGIMiddleware(
        wsgi_echo,
        client_ids=[emulator.client_id],
        api_base_url=emulator.url,
        user_loader=lambda identity: later(identity),
    )
    handle = serve_wsgi(middleware)
    try:
        with caplog.at_level(logging.ERROR, logger="lwa_middleware"):
            response = httpx.get(handle.url + "/me", headers=bearer(token), timeout=10)
        assert_error(response, "ServerError", 500)
        # AwaitableInSyncShell, a TypeError: the awaitable is closed, never run
        assert any("user_loader raised Awaitable" in r.getMessage() for r in caplog.records)
    finally:
        handle.stop()
        middleware.close()


def test_the_cache_is_bounded_and_keyed_by_user_id() -> None:
    cache = UserCache(ttl=60, maxsize=3)
    for n in range(5):
        cache.put(f"amzn1.account.{n}", Account(str(n)), now=100.0 + n)
    assert len(cache) == 3
    assert cache.get("amzn1.account.0", 105) is None  # the oldest went first
    assert cache.get("amzn1.account.4", 105) is not None
    assert cache.get("amzn1.account.4", 164) is None  # past its ttl
    cache.put("amzn1.account.2", Account("again"), now=105)  # refreshed: now the newest
    cache.put("amzn1.account.9", Account("9"), now=105)
    assert cache.get("amzn1.account.3", 105) is None
    assert cache.get("amzn1.account.2", 105) is not None
    with pytest.raises(NoAccount):
        cache.settle("amzn1.account.7", None, "/me", 105)
    assert cache.peek("amzn1.account.7") is None
    uncached = UserCache(ttl=0, maxsize=3, user_optional=["/link"])
    assert uncached.put("amzn1.account.1", Account("1"), 100.0)[1] == Account("1")
    assert len(uncached) == 0
    assert uncached.settle("amzn1.account.1", None, "/link", 100.0) is NO_USER
    for answer in (False, True):  # "no" as False would pass for a user: refused
        with pytest.raises(ServerError):
            cache.settle("amzn1.account.8", answer, "/me", 105)
    assert cache.peek("amzn1.account.8") is None
