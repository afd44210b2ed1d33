"""The website sign-in end to end, behind both shells, on real servers against the
emulator: ``LWALogin`` mounted in Starlette under ``LWAMiddleware`` (uvicorn), and
``LWAWSGILogin`` mounted with Werkzeug's ``DispatcherMiddleware`` beside
``LWAWSGIMiddleware`` (threaded wsgiref); Flask and FastAPI as the docs show them.

A test walks the flow as a browser does (httpx, ``follow_redirects=False``, one cookie jar
per browser) and answers Amazon's consent with the emulator's ``/_emulator/authorize``
control.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import httpx
import pytest
from fastapi import FastAPI, Request
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import Mount, Route

from lwa_middleware import LWALogin, LWAMiddleware, LWAWSGILogin, LWAWSGIMiddleware
from lwa_middleware.core.tokens import cookie_signer
from lwa_middleware.emulator import Emulator, ServerHandle, serve, serve_wsgi

from conftest import (
    FakeClock,
    LateASGI,
    LateWSGI,
    Teardown,
    assert_error,
    serve_werkzeug,
    whoami,
    wsgi_whoami,
)

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIApplication

SECRET = "flow-secret-key-0123456789abcdef"
SHELLS = ["asgi", "wsgi"]
CONSENT = ("client_id", "redirect_uri", "scope", "state", "code_challenge", "code_challenge_method")


@dataclass
class Site:
    """A served site: its base URL, its sign-in app, the emulator behind it."""

    shell: str
    url: str
    login: LWALogin | LWAWSGILogin
    emu: Emulator
    emu_url: str
    clock: FakeClock

    def browser(self) -> httpx.Client:
        """A new browser: its own cookie jar, redirects not followed."""
        return httpx.Client(base_url=self.url, follow_redirects=False, timeout=10)

    def authorize(self, browser: httpx.Client, next_path: str | None = "/me") -> dict[str, str]:
        """``/login``, checked: the authorize request's parameters."""
        params = {} if next_path is None else {"next": next_path}
        start = browser.get("/auth/login", params=params)
        assert start.status_code == 302, start.text
        location = httpx.URL(start.headers["location"])
        assert str(location).startswith(self.emu_url + "/ap/oa?")
        return dict(location.params)

    def consent(self, params: dict[str, str], decision: str = "approve") -> str:
        """Amazon's answer (the emulator's control): the callback URL the browser gets."""
        body = {key: params[key] for key in CONSENT} | {"decision": decision}
        answer = httpx.post(self.emu_url + "/_emulator/authorize", json=body, timeout=10)
        assert answer.status_code == 200, answer.text
        redirect: str = answer.json()["redirect"]
        assert redirect.startswith(self.url + "/auth/callback?")
        return redirect

    def sign_in(self, browser: httpx.Client, next_path: str | None = "/me") -> httpx.Response:
        """The whole flow up to the callback's answer."""
        return browser.get(self.consent(self.authorize(browser, next_path)))

    def cookie_header(self, browser: httpx.Client, *, without: str = "") -> str:
        return "; ".join(f"{c.name}={c.value}" for c in browser.cookies.jar if c.name != without)


LoginT = TypeVar("LoginT", LWALogin, LWAWSGILogin)


def sign_in(
    cls: type[LoginT], site_url: str, emu: Emulator, emu_url: str, clock: FakeClock, **options: Any
) -> LoginT:
    """A sign-in app of either kind, against the emulator, its callback on ``site_url``."""
    return cls(
        emu.client_id,
        redirect_uri=site_url + "/auth/callback",
        secret_key=SECRET,
        authorize_url=emu_url + "/ap/oa",
        api_base_url=emu_url,
        clock=clock,
        **options,
    )


def asgi_app(
    site_url: str, emu: Emulator, emu_url: str, clock: FakeClock, **options: Any
) -> tuple[Any, LWALogin]:
    login = sign_in(LWALogin, site_url, emu, emu_url, clock, **options)
    app = Starlette(
        routes=[
            Mount("/auth", app=login),
            Route("/{path:path}", whoami, methods=["GET", "POST"]),
        ],
        middleware=[
            Middleware(
                LWAMiddleware,
                client_ids=[emu.client_id],
                api_base_url=emu_url,
                clock=clock,
                login=login,
                exclude=["/auth/*"],
                optional=["/maybe"],
            )
        ],
    )
    return app, login


def wsgi_app(
    site_url: str, emu: Emulator, emu_url: str, clock: FakeClock, **options: Any
) -> tuple[WSGIApplication, LWAWSGILogin]:
    from werkzeug.middleware.dispatcher import DispatcherMiddleware

    login = sign_in(LWAWSGILogin, site_url, emu, emu_url, clock, **options)
    protected = LWAWSGIMiddleware(
        wsgi_whoami,
        client_ids=[emu.client_id],
        api_base_url=emu_url,
        clock=clock,
        login=login,
        optional=["/maybe"],
    )
    return DispatcherMiddleware(protected, {"/auth": login}), login


SiteFactory = Callable[..., Site]


@pytest.fixture
def later(teardown_later: Teardown) -> Iterator[Callable[[ServerHandle], ServerHandle]]:
    """``later(handle)``: stop ``handle``'s server once the test is over."""
    handles: list[ServerHandle] = []

    def keep(handle: ServerHandle) -> ServerHandle:
        handles.append(handle)
        return handle

    yield keep
    for handle in handles:
        teardown_later(handle.stop)


@pytest.fixture
def make_site(
    emu: Emulator, emu_url: str, clock: FakeClock, teardown_later: Teardown
) -> Iterator[SiteFactory]:
    handles: list[ServerHandle] = []

    def make(shell: str, **options: Any) -> Site:
        login: LWALogin | LWAWSGILogin
        if shell == "asgi":
            late_asgi = LateASGI()
            handle = serve(late_asgi, lifespan="off")
            late_asgi.app, login = asgi_app(handle.url, emu, emu_url, clock, **options)
        else:
            late_wsgi = LateWSGI()
            handle = serve_wsgi(late_wsgi)
            late_wsgi.app, login = wsgi_app(handle.url, emu, emu_url, clock, **options)
        handles.append(handle)
        return Site(shell, handle.url, login, emu, emu_url, clock)

    yield make
    for handle in handles:
        teardown_later(handle.stop)


@pytest.fixture(params=SHELLS)
def site(request: pytest.FixtureRequest, make_site: SiteFactory) -> Site:
    site_: Site = make_site(request.param)
    site_.emu.add_user(name="Ada Lovelace", email="ada@example.com")
    return site_


def set_cookies(response: httpx.Response) -> dict[str, str]:
    """``{name: the whole Set-Cookie value}`` of a response."""
    return {v.partition("=")[0]: v for v in response.headers.get_list("set-cookie")}


def value_of(set_cookie: str) -> str:
    return set_cookie.partition("=")[2].partition(";")[0]


def assert_cleared(response: httpx.Response, *names: str) -> None:
    cookies = set_cookies(response)
    for name in names:
        assert "Max-Age=0" in cookies[name], cookies


# The flow ------------------------------------------------------------------------------


def test_full_flow_sets_a_session_the_middleware_accepts(site: Site) -> None:
    with site.browser() as browser:
        params = site.authorize(browser, "/me?tab=orders")
        assert params["response_type"] == "code"
        assert params["code_challenge_method"] == "S256"
        assert params["scope"] == "profile"
        done = browser.get(site.consent(params))
        assert done.status_code == 302, done.text
        assert done.headers["location"] == "/me?tab=orders"
        cookies = set_cookies(done)
        access, refresh = cookies["lwa_token"], cookies["lwa_token_refresh"]
        assert access.endswith("; Path=/; Max-Age=3600; HttpOnly; SameSite=Lax")
        assert refresh.endswith("; Path=/; Max-Age=2592000; HttpOnly; SameSite=Lax")
        assert "Max-Age=0" in cookies["lwa_token_login"]
        token = cookie_signer(SECRET).unsign(value_of(access)).decode()
        assert site.emu.validate(token) is not None
        assert "Atzr" not in refresh
        me = browser.get("/me")
        assert me.status_code == 200, me.text
        body = me.json()
        assert body["name"] == "Ada Lovelace" and body["email"] == "ada@example.com"
        assert body["principal"] == body["user"] and body["aud"] == site.emu.client_id
    assert site.emu.token_calls["authorization_code"] == 1


def test_a_forged_state_is_refused(site: Site) -> None:
    with site.browser() as browser:
        url = httpx.URL(site.consent(site.authorize(browser)))
        state = url.params["state"]
        i = len(state) - 5  # inside the signature, where every bit counts
        forged = url.copy_set_param(
            "state", state[:i] + ("A" if state[i] != "A" else "B") + state[i + 1 :]
        )
        answer = browser.get(forged)
        assert answer.status_code == 400
        assert "not valid" in answer.text and "lwa_token" not in set_cookies(answer)
        assert_error(browser.get("/me"), "invalid_request", 400)
    assert site.emu.token_calls["authorization_code"] == 0


def test_an_expired_state_is_refused(site: Site, clock: FakeClock) -> None:
    with site.browser() as browser:
        url = site.consent(site.authorize(browser))
        clock.advance(601)
        answer = browser.get(url, headers={"accept": "application/json"})
        assert answer.status_code == 400
        assert answer.json()["error"] == "invalid_state"
        assert "ten minutes" in answer.json()["error_description"]


def test_a_replayed_state_is_refused(site: Site) -> None:
    with site.browser() as browser:
        login = browser.get("/auth/login")
        captured = value_of(set_cookies(login)["lwa_token_login"])
        url = site.consent(dict(httpx.URL(login.headers["location"]).params))
        assert browser.get(url).status_code == 302
        again = browser.get(url)  # the login cookie was consumed
        assert again.status_code == 400 and "already completed" in again.text
    with site.browser() as thief:  # the cookie replayed too, to the same process
        thief.cookies.set("lwa_token_login", captured)
        stolen = thief.get(url)
        assert stolen.status_code == 400 and "already completed" in stolen.text
        assert "lwa_token" not in set_cookies(stolen)
    assert site.emu.token_calls["authorization_code"] == 1


def test_a_state_from_another_browser_is_refused(site: Site) -> None:
    with site.browser() as mine, site.browser() as theirs:
        url = site.consent(site.authorize(mine))
        site.authorize(theirs)  # theirs has a login cookie too, of its own sign-in
        answer = theirs.get(url)
        assert answer.status_code == 400
        assert "not started in this browser" in answer.text
        assert_error(theirs.get("/me"), "invalid_request", 400)
    assert site.emu.token_calls["authorization_code"] == 0


def test_a_tampered_or_unsigned_cookie_is_invalid_token(site: Site) -> None:
    with site.browser() as browser:
        assert site.sign_in(browser).status_code == 302
        header = site.cookie_header(browser, without="lwa_token")
        signed = browser.cookies["lwa_token"]
        token = cookie_signer(SECRET).unsign(signed).decode()
    flipped = signed.replace("Atza|", "Atza|x", 1)
    for value in (flipped, token, signed + "x"):
        with httpx.Client(timeout=10) as other:
            answer = other.get(site.url + "/me", headers={"cookie": f"{header}; lwa_token={value}"})
        assert_error(answer, "invalid_token", 400)
        assert not set_cookies(answer)  # a forged cookie is never healed by a refresh
    assert site.emu.token_calls["refresh_token"] == 0


OPEN_REDIRECTS = [
    "//evil.example",
    "/\\evil.example",
    "/%5Cevil.example",
    "https:",
    "https://evil.example/",
    "javascript:alert(1)",
    "/%2F%2Fevil.example",
    "/%252F%252Fevil.example",
    "/\t/evil.example",
    "/\n/evil.example",
    "/%09/evil.example",
    "/.//evil.example",
]


@pytest.mark.parametrize("target", OPEN_REDIRECTS)
def test_open_redirect_attempts_end_at_home(site: Site, target: str) -> None:
    with site.browser() as browser:
        done = site.sign_in(browser, target)
        assert done.status_code == 302
        assert done.headers["location"] == "/"


def test_denied_consent_is_a_clear_page_or_json(site: Site) -> None:
    with site.browser() as browser:
        url = site.consent(site.authorize(browser), decision="deny")
        page = browser.get(url)
        assert page.status_code == 403
        assert page.headers["content-type"] == "text/html; charset=utf-8"
        assert "chose not to share" in page.text and 'href="/auth/login"' in page.text
        answer = browser.get(url, headers={"accept": "application/json"})
        assert answer.status_code == 403
        assert answer.json()["error"] == "access_denied"
    assert site.emu.token_calls["authorization_code"] == 0


def test_logout(site: Site) -> None:
    with site.browser() as browser:
        assert site.sign_in(browser).status_code == 302
        confirm = browser.get("/auth/logout")
        assert confirm.status_code == 200
        assert '<form method="post" action="/auth/logout">' in confirm.text
        cross = browser.post("/auth/logout", headers={"origin": "https://evil.example"})
        assert cross.status_code == 403 and not set_cookies(cross)
        assert browser.get("/me").status_code == 200
        done = browser.post("/auth/logout", headers={"origin": site.url})
        assert done.status_code == 303 and done.headers["location"] == "/"
        assert_cleared(done, "lwa_token", "lwa_token_refresh", "lwa_token_login")
        assert_error(browser.get("/me"), "invalid_request", 400)


# The refresh ---------------------------------------------------------------------------


def test_an_expired_session_is_refreshed_once_for_twenty_requests(
    site: Site, clock: FakeClock
) -> None:
    with site.browser() as browser:
        assert site.sign_in(browser).status_code == 302
        header = site.cookie_header(browser)
    clock.advance(3601)  # the access token expired (at LWA and in the cache)
    # A slow token endpoint: the twenty overlap, so they share the flight (not the memo).
    site.emu.latency(0.3, "oauth_token")

    def get(_: int) -> httpx.Response:
        return httpx.get(site.url + "/me", headers={"cookie": header}, timeout=10)

    with ThreadPoolExecutor(max_workers=20) as pool:
        answers = list(pool.map(get, range(20)))
    assert [a.status_code for a in answers] == [200] * 20, answers[0].text
    assert all(a.json()["name"] == "Ada Lovelace" for a in answers)
    assert site.emu.token_calls["refresh_token"] == 1
    news = {set_cookies(a)["lwa_token"] for a in answers}
    assert len(news) == 1  # every request got the same new cookie
    new = news.pop()
    assert new.endswith("; Path=/; Max-Age=3600; HttpOnly; SameSite=Lax")
    assert site.emu.validate(cookie_signer(SECRET).unsign(value_of(new)).decode()) is not None
    # Without the client secret LWA sends no new refresh token: the old cookie stays.
    assert all("lwa_token_refresh" not in set_cookies(a) for a in answers)


def test_a_session_whose_access_cookie_is_gone_is_refreshed(make_site: SiteFactory) -> None:
    site = make_site("asgi", client_secret="amzn1.oa2-cs.v1.emulator")
    with site.browser() as browser:
        assert site.sign_in(browser).status_code == 302
        header = site.cookie_header(browser, without="lwa_token")
    for path in ("/me", "/maybe"):  # protected, and optional (no token: refreshed too)
        answer = httpx.get(site.url + path, headers={"cookie": header}, timeout=10)
        assert answer.status_code == 200, answer.text
        assert answer.json()["name"] == "Ada Lovelace"
        cookies = set_cookies(answer)
        assert {"lwa_token", "lwa_token_refresh"} <= set(cookies)  # with the secret: a new one
    assert site.emu.token_calls["refresh_token"] == 1  # the second reused the first's


def test_a_revoked_refresh_token_signs_the_user_out(site: Site, clock: FakeClock) -> None:
    with site.browser() as browser:
        assert site.sign_in(browser).status_code == 302
        header = site.cookie_header(browser)
    refresh_token = site.login.core.session.refresh_token([header], clock())
    assert refresh_token is not None and site.emu.revoke(refresh_token)
    clock.advance(3601)
    answer = httpx.get(site.url + "/me", headers={"cookie": header}, timeout=10)
    assert_error(answer, "invalid_token", 400, cache_control="private, no-store")
    assert_cleared(answer, "lwa_token", "lwa_token_refresh")
    assert site.emu.token_calls["refresh_token"] == 1


def test_a_refresh_lwa_fails_is_a_server_error_keeping_the_cookies(
    site: Site, clock: FakeClock
) -> None:
    with site.browser() as browser:
        assert site.sign_in(browser).status_code == 302
        header = site.cookie_header(browser)
    site.emu.fault("500", "oauth_token", times=1)
    clock.advance(3601)
    failed = httpx.get(site.url + "/me", headers={"cookie": header}, timeout=10)
    assert_error(failed, "ServerError", 500)
    assert not set_cookies(failed)
    again = httpx.get(site.url + "/me", headers={"cookie": header}, timeout=10)
    assert again.status_code == 200 and "lwa_token" in set_cookies(again)


def test_a_cross_site_post_never_refreshes(site: Site) -> None:
    with site.browser() as browser:
        assert site.sign_in(browser).status_code == 302
        header = site.cookie_header(browser, without="lwa_token")
    answer = httpx.post(
        site.url + "/me", headers={"cookie": header, "origin": "https://evil.example"}, timeout=10
    )
    assert answer.status_code == 403 and not set_cookies(answer)
    assert site.emu.token_calls["refresh_token"] == 0
    same = httpx.post(site.url + "/me", headers={"cookie": header, "origin": site.url}, timeout=10)
    assert same.status_code == 200 and "lwa_token" in set_cookies(same)


# As the docs show it --------------------------------------------------------------------


def test_flask_with_dispatcher_middleware(
    emu: Emulator, emu_url: str, clock: FakeClock, later: Callable[[ServerHandle], ServerHandle]
) -> None:
    from flask import Flask, request
    from werkzeug.middleware.dispatcher import DispatcherMiddleware

    late = LateWSGI()
    handle = later(serve_werkzeug(late))
    app = Flask(__name__)

    @app.get("/me")
    def me() -> dict[str, object]:
        identity = request.environ["lwa"]
        return {"user_id": identity.user_id, "name": identity.profile.name}

    login = sign_in(LWAWSGILogin, handle.url, emu, emu_url, clock)
    app.wsgi_app = LWAWSGIMiddleware(  # type: ignore[method-assign]
        app.wsgi_app, client_ids=[emu.client_id], api_base_url=emu_url, clock=clock, login=login
    )
    late.app = DispatcherMiddleware(app.wsgi_app, {"/auth": login})
    emu.add_user(name="Grace Hopper")
    site = Site("wsgi", handle.url, login, emu, emu_url, clock)
    with site.browser() as browser:
        assert site.sign_in(browser).headers["location"] == "/me"
        answer = browser.get("/me")
        assert answer.status_code == 200 and answer.json()["name"] == "Grace Hopper"


def test_fastapi_mount(
    emu: Emulator, emu_url: str, clock: FakeClock, later: Callable[[ServerHandle], ServerHandle]
) -> None:
    late = LateASGI()
    handle = later(serve(late, lifespan="off"))
    app = FastAPI()
    login = sign_in(LWALogin, handle.url, emu, emu_url, clock)
    app.mount("/auth", login)
    app.add_middleware(
        LWAMiddleware,
        client_ids=[emu.client_id],
        api_base_url=emu_url,
        clock=clock,
        login=login,
        exclude=["/auth/*"],
    )

    @app.get("/me")
    async def me(request: Request) -> dict[str, object]:
        return {"name": request.scope["lwa"].profile.name}

    late.app = app
    emu.add_user(name="Katherine Johnson")
    site = Site("asgi", handle.url, login, emu, emu_url, clock)
    with site.browser() as browser:
        assert site.sign_in(browser).status_code == 302
        me_ = browser.get("/me")
        assert me_.status_code == 200 and me_.json() == {"name": "Katherine Johnson"}
