"""Contract tests: real third-party LWA clients against the emulator, as they are on the
package index (pinned in the ``contract`` extra), their Amazon hosts pointed at it.

* Amazon Pay SDK (``amazon_pay``): ``LoginWithAmazon.get_login_profile`` (token-info, its
  ``aud`` check, the profile), in this process.
* social-auth-core's ``AmazonOAuth2``: the code flow (consent on the emulator's page over
  HTTP), refresh, "sign up by access token" (``do_auth``), in this process with a minimal
  strategy and storage.
* django-allauth's Amazon provider (PKCE on, the token endpoint spelled ``/auth/O2/token``
  as Amazon's SDKs spell it): the whole web flow of a Django site served in a process of its
  own (``allauth_contract_site.py``), driven over HTTP like a browser.

Each client meets a good token, another app's token, an expired, a revoked and a garbage
token, and a service's ``client_credentials`` token; the two that run the code flow meet a
cancelled consent, a wrong client secret and a replayed code. Where a client itself is
wrong, the test says so and asserts what the emulator answered (LWA's documented answer).
"""

from __future__ import annotations

import os
import re
import secrets
import select
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from urllib.parse import parse_qs, urlsplit

import amazon_pay.login_with_amazon
import httpx
import pytest
import requests
from amazon_pay.login_with_amazon import LoginWithAmazon

from lwa_middleware.emulator import Emulator
from lwa_middleware.emulator.oauth import DEFAULT_CLIENT_SECRET

from conftest import bearer

TESTS = Path(__file__).resolve().parent
OTHER_APP = "amzn1.application-oa2-client.someone-else"
PY311 = sys.version_info >= (3, 11)
needs_py311 = pytest.mark.skipif(
    not PY311, reason="social-auth-core 7 and django-allauth 65 need Python 3.11"
)
READY_TIMEOUT = 30.0
pytestmark = pytest.mark.filterwarnings(
    # python3-openid (social-core's dependency) imports a deprecated defusedxml module.
    "ignore:defusedxml.cElementTree is deprecated:DeprecationWarning"
)


# The emulator's side: tokens of every kind, its consent page over HTTP --------------------


def tokens(emulator: Emulator, http: httpx.Client) -> dict[str, str]:
    """A good token (profile) and the bad ones every client meets, by name."""
    user = emulator.add_user(name="Ada Lovelace", email="ada@example.com")
    good = emulator.mint(user.user_id, ["profile"])
    _, other_app = emulator.mint_for(name="Eve", client_id=OTHER_APP)
    expired = emulator.mint(user.user_id)
    emulator.expire(expired)
    revoked = emulator.mint(user.user_id)
    emulator.revoke(revoked)
    service = http.post(
        f"{emulator.url}/auth/o2/token",
        data={
            "grant_type": "client_credentials",
            "client_id": emulator.client_id,
            "client_secret": DEFAULT_CLIENT_SECRET,
            "scope": "alexa:skill_messaging",
        },
    ).json()["access_token"]
    return {
        "good": good,
        "other app": other_app,
        "expired": expired,
        "revoked": revoked,
        "garbage": "Atza|" + secrets.token_urlsafe(60),
        "service": service,
    }


REFUSED = ("expired", "revoked", "garbage", "service")


def assert_lwa_refuses(http: httpx.Client, emulator: Emulator, token: str) -> None:
    """What the emulator answers for a refused token: LWA's 400 ``invalid_token``."""
    answer = http.get(f"{emulator.url}/auth/o2/tokeninfo", headers=bearer(token))
    assert (answer.status_code, answer.json()["error"]) == (400, "invalid_token")


def consent(browser: httpx.Client, authorize_url: str, user_id: str, decision: str) -> str:
    """Answer the emulator's consent page as a person would; the redirect back to the app."""
    page = browser.get(authorize_url)
    assert page.status_code == 200, page.text
    consent_id = re.search(r'name="consent_id" value="([^"]+)"', page.text)
    assert consent_id is not None
    scopes = re.findall(r'name="scope" value="([^"]+)" checked', page.text)
    form = {"consent_id": consent_id.group(1), "user": user_id, "decision": decision}
    action = urlsplit(authorize_url)._replace(path="/ap/oa/decision", query="").geturl()
    answer = browser.post(action, data={**form, "scope": scopes})
    assert answer.status_code == 302, answer.text
    return answer.headers["location"]


def query(url: str) -> dict[str, str]:
    return {key: values[0] for key, values in parse_qs(urlsplit(url).query).items()}


# Amazon Pay SDK ------------------------------------------------------------------------------


@pytest.fixture
def pay(emulator: Emulator, monkeypatch: pytest.MonkeyPatch) -> SimpleNamespace:
    """``client``: ``LoginWithAmazon`` for the emulator's client, its endpoint
    (``https://api.amazon.com`` for ``na``) pointed at the emulator; ``calls``: the keyword
    arguments of its ``requests.get`` calls."""
    client = LoginWithAmazon(emulator.client_id, "na")
    assert client._endpoint == "https://api.amazon.com"
    client._endpoint = emulator.url
    calls: list[dict[str, Any]] = []
    real_get = requests.get

    def recorded(*args: Any, **kwargs: Any) -> requests.Response:
        calls.append(kwargs)
        return real_get(*args, **kwargs)

    monkeypatch.setattr(amazon_pay.login_with_amazon.requests, "get", recorded)
    return SimpleNamespace(client=client, calls=calls)


def test_pay_sdk_good_token(emulator: Emulator, pay: SimpleNamespace, http: httpx.Client) -> None:
    named = tokens(emulator, http)
    before = emulator.calls
    profile = pay.client.get_login_profile(named["good"])
    assert set(profile) == {"user_id", "name", "email"}
    assert profile["name"] == "Ada Lovelace"
    after = emulator.calls
    assert (after["tokeninfo"] - before["tokeninfo"], after["profile"] - before["profile"]) == (
        1,
        1,
    )
    # What docs/alternatives.md says of it: the token in x-amz-access-token (not the query),
    # no timeout on either call.
    calls: list[dict[str, Any]] = pay.calls
    assert [call["url"].removeprefix(emulator.url) for call in calls] == [
        "/auth/o2/tokeninfo",
        "/user/profile",
    ]
    for call in calls:
        assert call["headers"] == {"x-amz-access-token": named["good"]}
        assert call["params"] is None
        assert "timeout" not in call


def test_pay_sdk_refuses_bad_tokens(
    emulator: Emulator, pay: SimpleNamespace, http: httpx.Client
) -> None:
    named = tokens(emulator, http)
    with pytest.raises(ValueError, match=r"^Invalid client Id\.$"):
        pay.client.get_login_profile(named["other app"])  # token-info's aud is another app's
    info = http.get(f"{emulator.url}/auth/o2/tokeninfo", headers=bearer(named["other app"]))
    assert info.json()["aud"] == OTHER_APP
    for name in REFUSED:
        with pytest.raises(ValueError, match=r"^invalid_token$"):
            pay.client.get_login_profile(named[name])
        assert_lwa_refuses(http, emulator, named[name])


def test_pay_sdk_returns_an_error_body_as_a_profile(
    emulator: Emulator, pay: SimpleNamespace, http: httpx.Client
) -> None:
    """The SDK is wrong here: it never looks at the profile call's status, so a token
    without a profile scope gets LWA's error body back as if it were the profile."""
    _, token = emulator.mint_for(scopes=["alexa::ask:skills:read"])
    returned = pay.client.get_login_profile(token)
    assert returned["error"] == "insufficient_scope"  # not a profile
    documented = http.get(f"{emulator.url}/user/profile", headers=bearer(token))
    assert documented.status_code == 401
    assert documented.json()["error"] == "insufficient_scope"


# social-auth-core --------------------------------------------------------------------------

SOCIAL_REDIRECT = "/complete/amazon/"


def capture_user(
    backend: Any, details: dict[str, Any], response: dict[str, Any], uid: str, **_: Any
) -> dict[str, Any]:
    """The pipeline's last step: who signed in (no user database in these tests)."""
    return {"user": SimpleNamespace(uid=uid, details=details, response=response)}


def social_classes() -> tuple[type[Any], type[Any]]:
    from social_core.backends.amazon import AmazonOAuth2
    from social_core.storage import BaseStorage, NonceMixin
    from social_core.strategy import BaseStrategy

    class Nonces(NonceMixin):
        """One-time states (social-core keeps each login's state as a nonce)."""

        live: set[tuple[str, str]] = set()
        used: set[tuple[str, str]] = set()

        @classmethod
        def use(cls, server_url: str, timestamp: int, salt: str) -> bool:
            key = (server_url, salt)
            if key in cls.live or key in cls.used:
                return False
            cls.live.add(key)
            return True

        @classmethod
        def consume(cls, server_url: str, timestamp: int, salt: str) -> bool:
            key = (server_url, salt)
            if key not in cls.live:
                return False
            cls.live.discard(key)
            cls.used.add(key)
            return True

    class Storage(BaseStorage):
        nonce = Nonces

    class Strategy(BaseStrategy[str]):
        """A session and request data in memory: what a web framework gives social-core."""

        def __init__(self, settings: dict[str, Any]) -> None:
            super().__init__(Storage)
            self.settings = settings
            self.session: dict[str, Any] = {}
            self.data: dict[str, str] = {}

        def get_setting(self, name: str) -> Any:
            return self.settings[name]

        def get_request_data(self, merge: bool = True) -> dict[str, Any]:
            return dict(self.data)

        def session_get(self, name: str, default: Any = None) -> Any:
            return self.session.get(name, default)

        def session_set(self, name: str, value: Any) -> None:
            self.session[name] = value

        def session_pop(self, name: str) -> Any:
            return self.session.pop(name, None)

        def build_absolute_uri(self, path: str | None = None) -> str:
            return "http://127.0.0.1:8000" + (path or "/")

        def request_host(self) -> str:
            return "127.0.0.1:8000"

        def redirect(self, url: str) -> str:
            return url

        def html(self, content: str) -> str:
            return content

    return AmazonOAuth2, Strategy


@pytest.fixture(scope="module")
def social(emulator: Emulator) -> Iterator[SimpleNamespace]:
    """social-core's Amazon backend and a strategy factory, Amazon's hosts pointed at the
    emulator: its ``AUTHORIZATION_URL`` and ``ACCESS_TOKEN_URL`` constants, and (its profile
    URL is a literal in ``user_data``) its requests to ``https://api.amazon.com``."""
    if not PY311:
        pytest.skip("social-auth-core 7 needs Python 3.11")
    backend, strategy = social_classes()
    real_request = requests.request

    def to_emulator(method: str, url: str, **kwargs: Any) -> requests.Response:
        return real_request(method, url.replace("https://api.amazon.com", emulator.url), **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(backend, "AUTHORIZATION_URL", f"{emulator.url}/ap/oa")
        patch.setattr(backend, "ACCESS_TOKEN_URL", f"{emulator.url}/auth/o2/token")
        patch.setattr(requests, "request", to_emulator)  # what social-core calls

        def new(secret: str = DEFAULT_CLIENT_SECRET) -> Any:
            return strategy(
                {
                    "SOCIAL_AUTH_AMAZON_KEY": emulator.client_id,
                    "SOCIAL_AUTH_AMAZON_SECRET": secret,
                    "SOCIAL_AUTH_PIPELINE": [
                        "social_core.pipeline.social_auth.social_details",
                        "social_core.pipeline.social_auth.social_uid",
                        f"{__name__}.capture_user",
                    ],
                }
            )

        yield SimpleNamespace(backend=backend, strategy=new)


def social_sign_in(
    social: SimpleNamespace,
    http: httpx.Client,
    user_id: str,
    *,
    decision: str = "approve",
    secret: str = DEFAULT_CLIENT_SECRET,
    code: str | None = None,
) -> tuple[Any, str | None]:
    """Start a login, answer the consent, complete it (with ``code`` instead of the new one,
    for a replay); what ``auth_complete`` returns, and the code the redirect brought."""
    strategy = social.strategy(secret)
    url = social.backend(strategy, redirect_uri=SOCIAL_REDIRECT).auth_url()
    strategy.data = query(consent(http, url, user_id, decision))
    brought = strategy.data.get("code")
    if code is not None:
        strategy.data["code"] = code
    return social.backend(strategy, redirect_uri=SOCIAL_REDIRECT).auth_complete(), brought


@needs_py311
def test_social_core_code_flow_and_refresh(
    emulator: Emulator, social: SimpleNamespace, http: httpx.Client
) -> None:
    ada = emulator.add_user(name="Ada Lovelace", email="ada@example.com")
    before = (emulator.calls, emulator.token_calls)
    signed_in, _ = social_sign_in(social, http, ada.user_id)
    assert signed_in.uid == ada.user_id
    assert signed_in.details["email"] == "ada@example.com"
    assert signed_in.details["fullname"] == "Ada Lovelace"
    assert signed_in.response["refresh_token"].startswith("Atzr|")
    calls, token_calls = emulator.calls, emulator.token_calls
    assert token_calls["authorization_code"] - before[1]["authorization_code"] == 1
    assert calls["profile"] - before[0]["profile"] == 1
    assert calls["tokeninfo"] == before[0]["tokeninfo"]  # it never asks token-info
    backend = social.backend(social.strategy(), redirect_uri=SOCIAL_REDIRECT)
    refreshed = backend.refresh_token(signed_in.response["refresh_token"])
    assert refreshed["refresh_token"].startswith("Atzr|")  # sent with the secret: a new one
    assert emulator.validate(refreshed["access_token"]) is not None
    # A refresh token minted for the user (no sign-in first) works the same.
    minted = backend.refresh_token(emulator.mint_refresh_token(ada.user_id))
    valid = emulator.validate(minted["access_token"])
    assert valid is not None and valid.user.user_id == ada.user_id


@needs_py311
def test_social_core_cancelled_consent(
    emulator: Emulator, social: SimpleNamespace, http: httpx.Client
) -> None:
    from social_core.exceptions import AuthCanceled

    user = emulator.add_user()
    before = emulator.token_calls["authorization_code"]
    with pytest.raises(AuthCanceled):
        social_sign_in(social, http, user.user_id, decision="deny")
    assert emulator.token_calls["authorization_code"] == before  # no code to exchange


@needs_py311
def test_social_core_wrong_secret(
    emulator: Emulator, social: SimpleNamespace, http: httpx.Client
) -> None:
    """LWA's 401 ``invalid_client`` reaches the caller as a configuration error."""
    from social_core.exceptions import AuthConfigurationError

    user = emulator.add_user()
    before = emulator.token_calls["authorization_code"]
    with pytest.raises(AuthConfigurationError) as refused:
        social_sign_in(social, http, user.user_id, secret="wrong")
    assert refused.value.status_code == 401
    assert emulator.token_calls["authorization_code"] == before + 1


@needs_py311
def test_social_core_replayed_code(
    emulator: Emulator, social: SimpleNamespace, http: httpx.Client
) -> None:
    """A replayed code: LWA's ``invalid_grant`` (400), and every token issued from that code
    revoked, the refresh token included."""
    from social_core.exceptions import AuthCredentialError

    user = emulator.add_user()
    first, code = social_sign_in(social, http, user.user_id)
    assert emulator.validate(first.response["access_token"]) is not None
    with pytest.raises(AuthCredentialError) as refused:
        social_sign_in(social, http, user.user_id, code=code)
    assert refused.value.status_code == 400
    assert emulator.validate(first.response["access_token"]) is None
    backend = social.backend(social.strategy(), redirect_uri=SOCIAL_REDIRECT)
    with pytest.raises(AuthCredentialError):
        backend.refresh_token(first.response["refresh_token"])


@needs_py311
def test_social_core_tokens(
    emulator: Emulator, social: SimpleNamespace, http: httpx.Client
) -> None:
    """ "Sign up by access token" (``do_auth``): the profile only, no token-info."""
    from social_core.exceptions import AuthCredentialError

    named = tokens(emulator, http)
    backend = social.backend(social.strategy(), redirect_uri=SOCIAL_REDIRECT)
    assert backend.do_auth(named["good"]).details["fullname"] == "Ada Lovelace"
    # The client does not check the audience: another app's token signs its customer in
    # (token-info, which it never asks, names the other app).
    accepted = backend.do_auth(named["other app"])
    assert accepted.details["fullname"] == "Eve"
    info = http.get(f"{emulator.url}/auth/o2/tokeninfo", headers=bearer(named["other app"]))
    assert info.json()["aud"] == OTHER_APP
    for name in REFUSED:
        with pytest.raises(AuthCredentialError) as refused:
            backend.do_auth(named[name])
        assert refused.value.status_code == 400, name
        assert_lwa_refuses(http, emulator, named[name])


# django-allauth ----------------------------------------------------------------------------


class AllauthSite:
    """The Django site of ``allauth_contract_site.py``, in a process of its own."""

    def __init__(self, emulator: Emulator, folder: Path) -> None:
        self.database = folder / "allauth.db"
        self.log = folder / "allauth.log"
        env = {
            **os.environ,
            "CONTRACT_EMULATOR_URL": emulator.url,
            "CONTRACT_DB": str(self.database),
            "CONTRACT_CLIENT_ID": emulator.client_id,
            "CONTRACT_CLIENT_SECRET": DEFAULT_CLIENT_SECRET,
        }
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(  # started early: Django boots meanwhile
                [sys.executable, str(TESTS / "allauth_contract_site.py")],
                cwd=TESTS,
                env=env,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
                text=True,
            )
        self._url: str | None = None

    @property
    def url(self) -> str:
        """The site's base URL, once it answers (``READY <url>`` on its standard output)."""
        if self._url is None:
            stdout = self.process.stdout
            assert stdout is not None
            ready, _, _ = select.select([stdout], [], [], READY_TIMEOUT)
            line = stdout.readline() if ready else ""
            if not line.startswith("READY "):
                self.stop()
                pytest.fail(f"the allauth site did not start:\n{self.log.read_text()[-3000:]}")
            self._url = line.split()[1]
        return self._url

    def stored_access_token(self, uid: str) -> str:
        """The access token allauth stored for a signed-in account (``STORE_TOKENS``)."""
        with closing(sqlite3.connect(self.database)) as db:
            row = db.execute(
                "SELECT t.token FROM socialaccount_socialtoken t "
                "JOIN socialaccount_socialaccount a ON t.account_id = a.id WHERE a.uid = ?",
                (uid,),
            ).fetchone()
        assert row is not None
        return str(row[0])

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)
        for stream in (self.process.stdin, self.process.stdout):
            if stream is not None:
                stream.close()


@pytest.fixture(scope="module", autouse=True)
def allauth_process(
    emulator: Emulator, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[AllauthSite | None]:
    """Starts the allauth site with the module, so it boots while the other clients run."""
    if not PY311:
        yield None
        return
    site = AllauthSite(emulator, tmp_path_factory.mktemp("allauth"))
    yield site
    site.stop()


@pytest.fixture
def allauth(allauth_process: AllauthSite | None) -> Iterator[tuple[AllauthSite, httpx.Client]]:
    """The site, and a browser of its own (its cookies: one session per test)."""
    assert allauth_process is not None
    with httpx.Client(base_url=allauth_process.url, timeout=10) as site_browser:
        yield allauth_process, site_browser


def allauth_sign_in(
    site_browser: httpx.Client, user_id: str, decision: str = "approve", code: str | None = None
) -> tuple[httpx.Response, str | None]:
    """Sign in through the site as a browser would: the site's login link, the emulator's
    consent page, back to the site's callback (with ``code`` instead of the new one, for a
    replay). The callback's answer, and the code the redirect brought."""
    start = site_browser.get("/accounts/amazon/login/", params={"process": "login"})
    assert start.status_code == 302, start.text
    authorize = start.headers["location"]
    callback = consent(site_browser, authorize, user_id, decision)
    params = query(callback)
    if code is not None:
        params["code"] = code
    answer = site_browser.get(urlsplit(callback).path, params=params)
    return answer, query(callback).get("code")


@needs_py311
def test_allauth_code_flow(emulator: Emulator, allauth: tuple[AllauthSite, httpx.Client]) -> None:
    site, site_browser = allauth
    ada = emulator.add_user(name="Ada Lovelace", email="ada.allauth@example.com")
    before = emulator.token_calls["authorization_code"]
    start = site_browser.get("/accounts/amazon/login/", params={"process": "login"})
    params = query(start.headers["location"])
    assert start.headers["location"].startswith(f"{emulator.url}/ap/oa?")
    assert params["redirect_uri"] == f"{site.url}/accounts/amazon/login/callback/"
    assert (params["scope"], params["response_type"]) == ("profile", "code")
    assert params["code_challenge_method"] == "S256"  # PKCE, verified by the emulator
    answer, _ = allauth_sign_in(site_browser, ada.user_id)
    assert (answer.status_code, answer.headers["location"]) == (302, "/whoami")
    who = site_browser.get("/whoami").json()
    assert who["authenticated"] is True
    assert (who["uid"], who["email"]) == (ada.user_id, "ada.allauth@example.com")
    # The token endpoint spelled /auth/O2/token, as Amazon's SDKs spell it.
    assert emulator.token_calls["authorization_code"] == before + 1
    stored = emulator.validate(site.stored_access_token(ada.user_id))
    assert stored is not None and stored.token.client_id == emulator.client_id


@needs_py311
def test_allauth_cancelled_consent(
    emulator: Emulator, allauth: tuple[AllauthSite, httpx.Client]
) -> None:
    _, site_browser = allauth
    user = emulator.add_user()
    before = emulator.token_calls["authorization_code"]
    answer, _ = allauth_sign_in(site_browser, user.user_id, decision="deny")
    assert answer.status_code == 302
    assert answer.headers["location"] == "/accounts/3rdparty/login/cancelled/"
    who = site_browser.get("/whoami").json()
    assert who["authenticated"] is False
    assert who["last_error"]["error"] == "cancelled"
    assert emulator.token_calls["authorization_code"] == before


@needs_py311
def test_allauth_wrong_secret(
    emulator: Emulator, allauth: tuple[AllauthSite, httpx.Client]
) -> None:
    """The site's secret no longer matches (the emulator's client changed it): LWA's 401
    ``invalid_client`` ends the sign-in; allauth reports it as an ``OAuth2Error``."""
    _, site_browser = allauth
    user = emulator.add_user()
    emulator.register_client(client_secret="rotated")
    try:
        answer, _ = allauth_sign_in(site_browser, user.user_id)
    finally:
        emulator.register_client(client_secret=DEFAULT_CLIENT_SECRET)
    assert answer.status_code == 401  # allauth's error page
    who = site_browser.get("/whoami").json()
    assert who["authenticated"] is False
    assert who["last_error"]["exception"] == "OAuth2Error"
    assert '"error":"invalid_client"' in who["last_error"]["message"]


@needs_py311
def test_allauth_replayed_code(
    emulator: Emulator, allauth: tuple[AllauthSite, httpx.Client]
) -> None:
    """A code sent again (in a new login's callback): LWA's ``invalid_grant``, and the
    tokens the first exchange stored are revoked."""
    site, site_browser = allauth
    user = emulator.add_user(email="replay@example.com")
    answer, code = allauth_sign_in(site_browser, user.user_id)
    assert answer.status_code == 302
    stored = site.stored_access_token(user.user_id)
    assert emulator.validate(stored) is not None
    with httpx.Client(base_url=site.url, timeout=10) as second_browser:
        replayed, _ = allauth_sign_in(second_browser, user.user_id, code=code)
        assert replayed.status_code == 401  # allauth's error page
        who = second_browser.get("/whoami").json()
    assert who["authenticated"] is False
    assert who["last_error"]["exception"] == "OAuth2Error"
    assert '"error":"invalid_grant"' in who["last_error"]["message"]
    assert emulator.validate(stored) is None


@needs_py311
def test_allauth_tokens(
    emulator: Emulator, allauth: tuple[AllauthSite, httpx.Client], http: httpx.Client
) -> None:
    """The provider's ``complete_login`` for a token: the profile only, no token-info."""
    _, site_browser = allauth
    named = tokens(emulator, http)

    def login(name: str) -> dict[str, Any]:
        answer = site_browser.post("/token", data={"token": named[name]})
        assert answer.status_code == 200, answer.text
        result: dict[str, Any] = answer.json()
        return result

    assert login("good")["extra_data"]["name"] == "Ada Lovelace"
    # The client does not check the audience: another app's token signs its customer in.
    assert login("other app")["extra_data"]["name"] == "Eve"
    for name in REFUSED:
        assert login(name) == {"exception": "HTTPError", "status": 400}, name
        assert_lwa_refuses(http, emulator, named[name])
