"""The sign-in core without I/O: ``next`` checks, state signing, expiry, binding and single
use, cookie attributes, the three routes' decisions, and the refresh decisions."""

from __future__ import annotations

import json
import time
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from itsdangerous import URLSafeSerializer

from lwa_middleware import ConfigurationError, LWASettings
from lwa_middleware.core.csrf import origin_headers
from lwa_middleware.core.errors import (
    InsufficientScope,
    InvalidRequest,
    InvalidToken,
    LWAUnavailable,
    MissingToken,
    ServerError,
)
from lwa_middleware.core.grants import (
    GrantUnavailable,
    InvalidClient,
    InvalidGrant,
    TokenGrant,
    code_challenge_s256,
)
from lwa_middleware.core.models import Identity, Profile, TokenInfo
from lwa_middleware.core.tokens import cookie_signer
from lwa_middleware.login import (
    Exchange,
    LoginConfig,
    LoginCore,
    LoginRequest,
    RefreshPlan,
    SignedOut,
    StateProblem,
    safe_next,
)
from lwa_middleware.login.cookies import Sealer, read_cookie
from lwa_middleware.login.pages import Answer, wants_json
from lwa_middleware.login.state import STATE_SALT, UsedNonces

SECRET = "test-secret-key-0123456789abcdef"
CLIENT = "amzn1.application-oa2-client.core"
REDIRECT = "https://shop.example.com/auth/callback"
NOW = 1_700_000_000.0
TOKEN = "Atza|" + "a" * 400
REFRESH = "Atzr|" + "r" * 400


def make_core(**options: Any) -> LoginCore:
    values: dict[str, Any] = {
        "client_id": CLIENT,
        "redirect_uri": REDIRECT,
        "secret_key": SECRET,
    }
    values.update(options)
    return LoginCore(LoginConfig(**values))


@pytest.fixture
def core() -> LoginCore:
    return make_core()


def request(
    path: str,
    query: str = "",
    *,
    method: str = "GET",
    cookies: tuple[str, ...] = (),
    root: str = "/auth",
    accept: str | None = None,
    origin: str | None = None,
    referer: str | None = None,
    host: str | None = "shop.example.com",
) -> LoginRequest:
    return LoginRequest(
        method=method,
        path=path,
        root_path=root,
        query_string=query,
        cookies=cookies,
        accept=accept,
        origins=origin_headers(
            "https",
            [
                (name, value.encode("latin-1"))
                for name, value in ((b"origin", origin), (b"referer", referer), (b"host", host))
                if value is not None
            ],
        ),
    )


def answer(core: LoginCore, req: LoginRequest, now: float = NOW) -> Answer:
    """The core's answer (not an exchange) to ``req``."""
    step = core.handle(req, now)
    assert not isinstance(step, Exchange)
    return step


def cookie_pairs(headers: list[tuple[str, str]]) -> dict[str, str]:
    """``{name: the whole Set-Cookie value}``."""
    found = {}
    for name, value in headers:
        if name == "set-cookie":
            found[value.partition("=")[0]] = value
    return found


def value_of(set_cookie: str) -> str:
    return set_cookie.partition("=")[2].partition(";")[0]


def start_login(core: LoginCore, query: str = "", now: float = NOW) -> tuple[dict[str, str], str]:
    """``/login``: the authorize query's parameters and the login cookie's value."""
    status, headers, _ = answer(core, request("/login", query), now)
    assert status == 302
    location = dict(headers)["location"]
    params = {key: values[0] for key, values in parse_qs(urlsplit(location).query).items()}
    return params, value_of(cookie_pairs(headers)["lwa_token_login"])


def callback(
    core: LoginCore, state: str, login_cookie: str | None, now: float = NOW, **extra: str
) -> Any:
    query = "&".join(f"{k}={v}" for k, v in {"code": "ANcode", "state": state, **extra}.items())
    cookies = () if login_cookie is None else (f"lwa_token_login={login_cookie}",)
    return core.handle(request("/callback", query, cookies=cookies), now)


# next -----------------------------------------------------------------------------------

OPEN_REDIRECTS = [
    "//evil.example",
    "///evil.example",
    "/\\evil.example",
    "\\\\evil.example",
    "/%5Cevil.example",
    "/%5cevil.example",
    "/%2F%2Fevil.example",
    "/%2f/evil.example",
    "/%252F%252Fevil.example",
    "/%25252F%25252Fevil.example",
    "https:",
    "https://evil.example",
    "https:evil.example",
    "javascript:alert(1)",
    "JavaScript:alert(1)",
    "data:text/html,hi",
    "/\t/evil.example",
    "/\n/evil.example",
    "/%09/evil.example",
    "/%0a/evil.example",
    "/%0d%0a/evil.example",
    "/ok\r\nSet-Cookie: x=1",
    "/ok%00",
    "\t/ok",
    " /ok",
    "/./evil.example",
    "/.//evil.example",
    "/a/../../evil",
    "evil.example",
    "",
    "/\u00e9",
    "/" + "a" * 3000,
]


@pytest.mark.parametrize("target", OPEN_REDIRECTS)
def test_next_refuses_every_form_of_another_site(target: str) -> None:
    assert safe_next(target) == "/"


@pytest.mark.parametrize(
    "target",
    [
        "/",
        "/me",
        "/me?tab=orders&x=1",
        "/a/b#frag",
        "/a%2Fb",
        "/%C3%A9t%C3%A9",
        "/a%20b",
        "/?next=//x",
    ],
)
def test_next_keeps_local_paths_as_given(target: str) -> None:
    assert safe_next(target) == target


def test_next_none_is_home() -> None:
    assert safe_next(None) == "/"


# state ----------------------------------------------------------------------------------


def test_login_redirect_carries_every_parameter_and_s256(core: LoginCore) -> None:
    params, cookie = start_login(core, "next=/orders")
    assert params["client_id"] == CLIENT
    assert params["scope"] == "profile"
    assert params["response_type"] == "code"
    assert params["redirect_uri"] == REDIRECT
    assert params["code_challenge_method"] == "S256"
    ticket = core.states.check(params["state"], cookie, NOW + 1)
    assert not isinstance(ticket, StateProblem)
    assert ticket.next == "/orders"
    assert code_challenge_s256(ticket.verifier) == params["code_challenge"]


def test_authorize_url_with_a_query_and_scopes() -> None:
    core = make_core(
        authorize_url="https://www.amazon.co.uk/ap/oa?language=en_GB", scopes="profile postal_code"
    )
    _, headers, _ = answer(core, request("/login"), NOW)
    location = dict(headers)["location"]
    assert location.startswith("https://www.amazon.co.uk/ap/oa?language=en_GB&client_id=")
    assert "scope=profile%20postal_code" in location


def test_a_state_passes_once_then_is_used(core: LoginCore) -> None:
    params, cookie = start_login(core)
    assert not isinstance(core.states.check(params["state"], cookie, NOW + 5), StateProblem)
    assert core.states.check(params["state"], cookie, NOW + 6) is StateProblem.USED


def test_a_forged_state_is_invalid(core: LoginCore) -> None:
    params, cookie = start_login(core)
    state = params["state"]
    # A character inside the signature (every bit of it counts: the last character of a
    # base64 signature carries two unused bits, so changing it may change nothing).
    i = len(state) - 5
    tampered = state[:i] + ("A" if state[i] != "A" else "B") + state[i + 1 :]
    assert core.states.check(tampered, cookie, NOW) is StateProblem.INVALID
    other = URLSafeSerializer("another-secret-key-0123456789", salt=STATE_SALT)
    nonce = json.loads(Sealer((SECRET.encode(),), "login-cookie").open(cookie, 600, NOW) or b"")[
        "n"
    ]
    assert core.states.check(other.dumps([nonce, int(NOW)]), cookie, NOW) is StateProblem.INVALID
    assert core.states.check(None, cookie, NOW) is StateProblem.INVALID
    assert core.states.check("x" * 600, cookie, NOW) is StateProblem.INVALID


def test_a_state_with_our_signature_but_another_shape_is_invalid(core: LoginCore) -> None:
    ours = URLSafeSerializer(SECRET, salt=STATE_SALT)
    for payload in (["n"], "n", ["n", "soon"], [1, 2], ["n", True]):
        assert core.states.check(ours.dumps(payload), None, NOW) is StateProblem.INVALID


def test_a_state_older_than_ten_minutes_is_expired(core: LoginCore) -> None:
    params, cookie = start_login(core)
    assert core.states.check(params["state"], cookie, NOW + 601) is StateProblem.EXPIRED
    params, cookie = start_login(core)
    assert not isinstance(core.states.check(params["state"], cookie, NOW + 600), StateProblem)


def test_a_state_from_the_future_is_expired(core: LoginCore) -> None:
    params, cookie = start_login(core, now=NOW + 3600)
    assert core.states.check(params["state"], cookie, NOW) is StateProblem.EXPIRED


def test_a_state_is_bound_to_its_browsers_login_cookie(core: LoginCore) -> None:
    mine, my_cookie = start_login(core)
    theirs, their_cookie = start_login(core)
    assert core.states.check(mine["state"], their_cookie, NOW) is StateProblem.UNBOUND
    assert core.states.check(mine["state"], None, NOW) is StateProblem.UNBOUND
    assert core.states.check(mine["state"], my_cookie + "x", NOW) is StateProblem.UNBOUND
    assert not isinstance(core.states.check(theirs["state"], their_cookie, NOW), StateProblem)


def test_the_login_cookie_is_sealed_not_readable(core: LoginCore) -> None:
    params, cookie = start_login(core, "next=/secret-place")
    ticket = core.states.check(params["state"], cookie, NOW)
    assert not isinstance(ticket, StateProblem)
    assert ticket.verifier not in cookie and "secret-place" not in cookie
    # Sealed for the login cookie, it never opens as a refresh cookie (keys per purpose).
    assert Sealer((SECRET.encode(),), "refresh-cookie").open(cookie, 600, NOW) is None


def test_used_nonces_are_bounded_in_size_and_time() -> None:
    used = UsedNonces(maxsize=3, ttl=10)
    assert all(used.claim(n, 0) for n in "abc")
    assert not used.claim("a", 1)
    assert used.claim("d", 2)  # "a" is pushed out (the oldest) to make room
    assert len(used) <= 3
    assert used.claim("b", 20)  # everything older than ten seconds is forgotten
    assert len(used) == 1


# cookies --------------------------------------------------------------------------------


def grant(refresh: str | None = REFRESH, expires_in: int = 3600) -> TokenGrant:
    return TokenGrant(access_token=TOKEN, expires_in=expires_in, refresh_token=refresh)


def test_session_cookies_attributes_and_formats(core: LoginCore) -> None:
    cookies = cookie_pairs(core.session.issue(grant(), NOW))
    access, refresh = cookies["lwa_token"], cookies["lwa_token_refresh"]
    assert access.endswith("; Path=/; Max-Age=3600; HttpOnly; SameSite=Lax; Secure")
    assert refresh.endswith("; Path=/; Max-Age=2592000; HttpOnly; SameSite=Lax; Secure")
    # The access cookie is what the middlewares' reader accepts.
    assert cookie_signer(SECRET).unsign(value_of(access)).decode() == TOKEN
    # The refresh cookie is sealed: not readable, and it opens to the token.
    assert "Atzr" not in refresh
    assert core.session.refresh_token([f"lwa_token_refresh={value_of(refresh)}"], NOW) == REFRESH
    assert (
        core.session.refresh_token([f"lwa_token_refresh={value_of(refresh)}"], NOW + 2592001)
        is None
    )


def test_no_refresh_cookie_without_a_refresh_token(core: LoginCore) -> None:
    assert set(cookie_pairs(core.session.issue(grant(refresh=None), NOW))) == {"lwa_token"}


def test_cookies_are_not_secure_on_http_loopback() -> None:
    core = make_core(redirect_uri="http://127.0.0.1:8000/auth/callback")
    for header in core.session.issue(grant(), NOW) + core.session.cleared():
        assert "Secure" not in header[1]
    _, cookie = start_login(core)
    assert cookie


def test_login_cookie_attributes(core: LoginCore) -> None:
    _, headers, _ = answer(core, request("/login"), NOW)
    login = cookie_pairs(headers)["lwa_token_login"]
    assert login.endswith("; Path=/auth/callback; Max-Age=600; HttpOnly; SameSite=Lax; Secure")
    for name in ("__Host-lwa", "__host-lwa", "__HOST-lwa"):  # browsers match any case
        host = make_core(cookie_name=name)
        _, headers, _ = answer(host, request("/login"), NOW)
        assert cookie_pairs(headers)[name + "_login"].endswith(
            "; Path=/; Max-Age=600; HttpOnly; SameSite=Lax; Secure"
        )


def test_an_unusable_access_token_is_never_put_in_a_header(core: LoginCore) -> None:
    bad = TokenGrant(access_token="Atza|x\r\nSet-Cookie: y=1", expires_in=60)
    with pytest.raises(LWAUnavailable):
        core.session.issue(bad, NOW)


def test_read_cookie_refuses_a_tossed_second_cookie() -> None:
    assert read_cookie(["a=1; b=2"], "b") == "2"
    assert read_cookie(["a=1; b=2", "b=3"], "b") is None
    assert read_cookie(['b="2"'], "b") == "2"
    assert read_cookie(["ab=1"], "b") is None


# the callback ---------------------------------------------------------------------------


def test_callback_asks_for_the_exchange_with_the_verifier(core: LoginCore) -> None:
    params, cookie = start_login(core, "next=/orders")
    step = callback(core, params["state"], cookie)
    assert isinstance(step, Exchange)
    assert step.code == "ANcode"
    assert code_challenge_s256(step.code_verifier) == params["code_challenge"]
    assert (step.redirect_uri, step.client_id, step.next) == (REDIRECT, CLIENT, "/orders")
    assert "ANcode" not in repr(step) and step.code_verifier not in repr(step)
    status, headers, _ = core.exchanged(step, grant(), NOW)
    assert status == 302 and dict(headers)["location"] == "/orders"
    cookies = cookie_pairs(headers)
    assert {"lwa_token", "lwa_token_refresh", "lwa_token_login"} <= set(cookies)
    assert "Max-Age=0" in cookies["lwa_token_login"]


def test_callback_is_matched_by_redirect_uris_path_wherever_mounted() -> None:
    core = make_core(redirect_uri="https://shop.example.com/account/amazon/return")
    params, cookie = start_login(core)
    step = core.handle(
        LoginRequest(
            "GET",
            "/amazon/return",
            "/account",
            f"code=ANcode&state={params['state']}",
            (f"lwa_token_login={cookie}",),
        ),
        NOW,
    )
    assert isinstance(step, Exchange)
    status, _, _ = answer(core, request("/callback"), NOW)
    assert status == 404


@pytest.mark.parametrize(
    ("problem", "make"),
    [
        ("not valid", lambda core, state, cookie: callback(core, state + "x", cookie)),
        ("ten minutes", lambda core, state, cookie: callback(core, state, cookie, NOW + 601)),
        ("not started in this browser", lambda core, state, cookie: callback(core, state, None)),
    ],
)
def test_callback_state_failures_are_clear_pages(core: LoginCore, problem: str, make: Any) -> None:
    params, cookie = start_login(core)
    status, headers, body = make(core, params["state"], cookie)
    assert status == 400
    assert dict(headers)["content-type"] == "text/html; charset=utf-8"
    assert problem in body.decode()
    assert 'href="/auth/login"' in body.decode()
    assert "Max-Age=0" in cookie_pairs(headers)["lwa_token_login"]
    assert "lwa_token" not in cookie_pairs(headers)


def test_denied_consent_is_a_page_or_json(core: LoginCore) -> None:
    params, cookie = start_login(core)
    query = f"error=access_denied&error_description=%3Cscript%3E&state={params['state']}"
    cookies = (f"lwa_token_login={cookie}",)
    status, _, body = answer(core, request("/callback", query, cookies=cookies), NOW)
    assert status == 403 and b"chose not to share" in body and b"<script>" not in body
    status, _, body = answer(core, request("/callback", query, accept="application/json"))
    assert status == 403
    assert json.loads(body) == {
        "error": "access_denied",
        "error_description": "You chose not to share your Amazon account with this site, so "
        "you are not signed in.",
    }


def test_other_amazon_errors_and_a_missing_code(core: LoginCore) -> None:
    status, _, body = answer(
        core, request("/callback", "error=<b>&state=x", accept="application/json"), NOW
    )
    assert status == 400 and json.loads(body)["error"] == "invalid_request"
    status, _, body = answer(
        core, request("/callback", "error=temporarily_unavailable", accept="application/json"), NOW
    )
    assert status == 503
    params, cookie = start_login(core)
    cookies = (f"lwa_token_login={cookie}",)
    status, _, body = answer(
        core, request("/callback", f"state={params['state']}", cookies=cookies), NOW
    )
    assert status == 400 and b"missing the authorization code" in body


def test_exchange_failures(core: LoginCore) -> None:
    params, cookie = start_login(core)
    step = callback(core, params["state"], cookie)
    assert isinstance(step, Exchange)
    assert core.exchanged(step, InvalidGrant(), NOW)[0] == 400
    assert core.exchanged(step, GrantUnavailable(), NOW)[0] == 502
    status, _, body = core.exchanged(step, InvalidClient(), NOW)
    assert status == 500 and b"invalid_client" in body


def test_the_callback_answers_get_only(core: LoginCore) -> None:
    status, headers, _ = answer(core, request("/callback", method="POST"), NOW)
    assert status == 405 and dict(headers)["allow"] == "GET"


def test_head_has_no_body(core: LoginCore) -> None:
    status, headers, body = answer(core, request("/logout", method="HEAD"), NOW)
    assert status == 200 and body == b"" and int(dict(headers)["content-length"]) > 0


# logout ---------------------------------------------------------------------------------


def test_logout_get_is_a_confirm_page_posting_to_itself(core: LoginCore) -> None:
    status, headers, body = answer(core, request("/logout", "next=/bye"), NOW)
    assert status == 200
    assert b'<form method="post" action="/auth/logout?next=%2Fbye">' in body
    assert "form-action 'self'" in dict(headers)["content-security-policy"]
    assert "lwa_token" not in cookie_pairs(headers)
    # Not no-referrer: a browser would POST the form with "Origin: null", refused.
    policies = [value for name, value in headers if name == "referrer-policy"]
    assert policies == ["same-origin"]


def post_logout(headers: dict[str, str], query: str = "") -> LoginRequest:
    return request(
        "/logout",
        query,
        method="POST",
        origin=headers.get("origin"),
        referer=headers.get("referer"),
        host=headers.get("host", "shop.example.com"),
    )


@pytest.mark.parametrize(
    "headers",
    [
        {"origin": "https://evil.example"},
        {"origin": "null"},
        {"referer": "https://evil.example/page"},
        {},
        {"origin": "https://shop.example.com.evil.example"},
    ],
)
def test_logout_post_from_elsewhere_is_refused(core: LoginCore, headers: dict[str, str]) -> None:
    status, answer_headers, _ = answer(core, post_logout(headers))
    assert status == 403
    assert not cookie_pairs(answer_headers)


@pytest.mark.parametrize(
    "headers",
    [
        {"origin": "https://shop.example.com"},
        {"origin": "https://shop.example.com:443"},
        {"referer": "https://shop.example.com/auth/logout"},
        {"origin": "https://shop.example.com", "host": "internal:8000"},  # redirect_uri's
    ],
)
def test_logout_post_from_this_site_clears_every_cookie(
    core: LoginCore, headers: dict[str, str]
) -> None:
    status, got, _ = answer(core, post_logout(headers, "next=/bye"))
    assert status == 303 and dict(got)["location"] == "/bye"
    cookies = cookie_pairs(got)
    assert set(cookies) == {"lwa_token", "lwa_token_refresh", "lwa_token_login"}
    for value in cookies.values():
        assert "Max-Age=0" in value and "Expires=Thu, 01 Jan 1970 00:00:00 GMT" in value
    assert (
        "Path=/;" in cookies["lwa_token"] and "Path=/auth/callback;" in cookies["lwa_token_login"]
    )


def test_logout_post_json(core: LoginCore) -> None:
    got = answer(
        core,
        request(
            "/logout", method="POST", origin="https://shop.example.com", accept="application/json"
        ),
        NOW,
    )
    assert got[0] == 200 and json.loads(got[2]) == {"signed_out": True}


# refresh decisions ----------------------------------------------------------------------


def session_cookies(core: LoginCore, *, access: str | None = "signed") -> list[str]:
    issued = {
        name: value_of(v) for name, v in cookie_pairs(core.session.issue(grant(), NOW)).items()
    }
    parts = [f"lwa_token_refresh={issued['lwa_token_refresh']}"]
    if access == "signed":
        parts.append(f"lwa_token={issued['lwa_token']}")
    elif access is not None:
        parts.append(f"lwa_token={access}")
    return ["; ".join(parts)]


def test_refresh_is_planned_for_an_expired_or_missing_cookie_session(core: LoginCore) -> None:
    plan = core.session.plan(InvalidToken(), [], [], session_cookies(core), False, NOW)
    assert isinstance(plan, RefreshPlan) and plan.refresh_token == REFRESH
    assert REFRESH not in repr(plan)
    missing = core.session.plan(
        MissingToken(), [], [], session_cookies(core, access=None), False, NOW
    )
    assert isinstance(missing, RefreshPlan) and missing.key == plan.key
    anonymous = core.session.plan(None, [], [], session_cookies(core, access=None), False, NOW)
    assert anonymous is not None


@pytest.mark.parametrize(
    ("error", "authorization", "amz", "query", "access"),
    [
        (InvalidToken(), ["Bearer Atza|x"], [], False, "signed"),  # a client's own token
        (InvalidToken(), [], ["Atza|x"], False, "signed"),
        (InvalidToken(), [], [], True, "signed"),
        (InvalidToken(), [], [], False, TOKEN),  # unsigned cookie
        (InvalidToken(), [], [], False, "tampered"),
        (InsufficientScope(), [], [], False, "signed"),
        (InvalidRequest(), [], [], False, "signed"),
        (ServerError(), [], [], False, "signed"),
    ],
)
def test_no_refresh_where_a_refresh_cannot_cure(
    core: LoginCore,
    error: Any,
    authorization: list[str],
    amz: list[str],
    query: bool,
    access: str,
) -> None:
    cookies = session_cookies(core, access=access)
    if access == "tampered":
        cookies = [cookies[0].replace("lwa_token=Atza|a", "lwa_token=Atza|b")]
    assert core.session.plan(error, authorization, amz, cookies, query, NOW) is None


def test_no_refresh_without_a_good_refresh_cookie(core: LoginCore) -> None:
    assert core.session.plan(MissingToken(), [], [], [], False, NOW) is None
    assert (
        core.session.plan(MissingToken(), [], [], ["lwa_token_refresh=forged"], False, NOW) is None
    )
    sealed_long_ago = Sealer([SECRET.encode()], "refresh-cookie").seal(REFRESH.encode(), NOW)
    too_old = [f"lwa_token_refresh={sealed_long_ago}"]
    assert core.session.plan(MissingToken(), [], [], too_old, False, NOW + 401 * 86400) is None


def test_a_session_past_session_max_age_is_signed_out(core: LoginCore) -> None:
    cookies = session_cookies(core, access=None)
    assert isinstance(core.session.plan(MissingToken(), [], [], cookies, False, NOW), RefreshPlan)
    ended = core.session.plan(MissingToken(), [], [], cookies, False, NOW + 2592000)
    assert isinstance(ended, SignedOut)
    assert ended.error().description == "The session has expired; sign in again."
    assert {value.partition("=")[0] for _, value in ended.headers} == {
        "lwa_token",
        "lwa_token_refresh",
    }
    assert core.session.refresh_token(cookies, NOW + 2592000) is None


def test_settling_a_refresh(core: LoginCore) -> None:
    assert core.session.settle(grant(), NOW) == grant()
    signed_out = core.session.settle(InvalidGrant(), NOW)
    assert isinstance(signed_out, SignedOut)
    assert {value.partition("=")[0] for _, value in signed_out.headers} == {
        "lwa_token",
        "lwa_token_refresh",
    }
    with pytest.raises(LWAUnavailable):
        core.session.settle(GrantUnavailable(), NOW)
    with pytest.raises(ServerError):
        core.session.settle(InvalidClient(), NOW)


def test_resolving_a_refresh(core: LoginCore) -> None:
    info = TokenInfo(
        user_id="amzn1.account.X",
        aud=CLIENT,
        app_id=None,
        iss=None,
        expires_at=NOW + 3600,
        issued_at=NOW,
    )
    identity = Identity.build(info, Profile(user_id="amzn1.account.X", name="Ada", email=None))
    plan = core.session.plan(InvalidToken(), [], [], session_cookies(core), False, NOW)
    assert isinstance(plan, RefreshPlan)
    refreshed = core.session.refreshed(grant(), identity, NOW, plan.session)
    assert refreshed.until == NOW + 60
    assert core.session.resolve(InvalidToken(), refreshed)[:2] == (identity, None)
    signed_out = SignedOut(tuple(core.session.cleared()))
    identity_, error, headers = core.session.resolve(InvalidToken(), signed_out)
    assert identity_ is None and isinstance(error, InvalidToken) and headers
    assert core.session.resolve(None, signed_out)[1] is None  # an optional route: anonymous
    error_ = MissingToken()
    assert core.session.resolve(error_, None) == (None, error_, ())


def test_recent_refreshes_expire() -> None:
    core = make_core()
    outcome = SignedOut((), until=NOW + 60)
    core.session.recent.put(b"k", outcome)
    assert core.session.recent.get(b"k", NOW) is outcome
    assert core.session.recent.get(b"k", NOW + 61) is None


# configuration --------------------------------------------------------------------------


def test_the_middleware_adopts_the_sign_ins_settings(core: LoginCore) -> None:
    settings = core.session.adopt(LWASettings(client_ids=[CLIENT]))
    assert settings.secret_key == SECRET
    with pytest.raises(ConfigurationError, match="secret_key"):
        core.session.adopt(LWASettings(client_ids=[CLIENT], secret_key="another-0123456789"))
    with pytest.raises(ConfigurationError, match="cookie_name"):
        core.session.adopt(LWASettings(client_ids=[CLIENT], cookie_name="other"))
    with pytest.raises(ConfigurationError, match="token_sources"):
        core.session.adopt(LWASettings(client_ids=[CLIENT], token_sources=["header"]))
    with pytest.raises(ConfigurationError, match="client_id"):
        core.session.adopt(LWASettings(client_ids=["amzn1.application-oa2-client.other"]))


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("secret_key", "short"),
        ("redirect_uri", "http://shop.example.com/auth/callback"),
        ("redirect_uri", "/auth/callback"),
        ("redirect_uri", "https://shop.example.com/cb#x"),
        ("redirect_uri", "https://shop.example.com/cb?x=1"),
        ("redirect_uri", "https://user:pw@shop.example.com/cb"),
        ("authorize_url", "http://evil.example/ap/oa"),
        ("api_base_url", "http://api.example.com"),
        ("scopes", ()),
        ("scopes", ("pro file",)),
        ("cookie_name", "bad name"),
        ("session_max_age", 0),
        ("session_max_age", 59),
        ("session_max_age", 401 * 86400),
        ("session_max_age", 3600.5),
        ("session_max_age", True),
        ("timeout", 0),
        ("client_id", ""),
        ("client_secret", ""),
    ],
)
def test_bad_options_are_refused(option: str, value: Any) -> None:
    with pytest.raises(ConfigurationError) as raised:
        make_core(**{option: value})
    assert SECRET not in str(raised.value)


@pytest.mark.parametrize("name", ["__Secure-lwa", "__Host-lwa", "__secure-lwa", "__HOST-lwa"])
def test_a_secure_prefix_needs_https(name: str) -> None:
    with pytest.raises(ConfigurationError, match="__Secure-"):
        make_core(cookie_name=name, redirect_uri="http://127.0.0.1/cb")


def test_no_secret_in_a_repr() -> None:
    config = LoginConfig(CLIENT, REDIRECT, SECRET, client_secret="amzn1.oa2-cs.v1.SECRET")
    assert SECRET not in repr(config) and "SECRET" not in repr(config)


def test_wants_json() -> None:
    assert wants_json("application/json")
    assert wants_json("application/json, text/html;q=0.5")
    assert not wants_json("text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8")
    assert not wants_json("*/*")
    assert not wants_json(None)
    assert not wants_json("application/json;q=0.1, text/html")


def test_unknown_paths_are_404(core: LoginCore) -> None:
    assert answer(core, request("/elsewhere"), time.time())[0] == 404
