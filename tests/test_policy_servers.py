"""The access policy through real servers: ``LWAMiddleware`` under uvicorn and
``LWAWSGIMiddleware`` under a threaded wsgiref server, against the emulator.

One pair of servers serves the whole module (built once, with every source at once: the
keyword options, a ``policy_file``, ``LWA_ALLOW``/``LWA_DENY``/``LWA_POLICY_FILE``, an
``authorize`` callable: async under ASGI, sync under WSGI), and each customer's token is
minted once; every decision is asked twice, cold and then warm (the cached identity).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import threading
import time
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from lwa_middleware import Identity, LWAMiddleware, LWAWSGIMiddleware
from lwa_middleware.emulator import Emulator, ServerHandle, serve, serve_wsgi

from conftest import (
    APP_HEADER,
    LateASGI,
    LateWSGI,
    assert_error,
    bearer,
    inner_app,
    raw_get,
    wsgi_whoami,
)

ROOT = "amzn1.account.POLICYROOT"
NOMAIL = "amzn1.account.POLICYNOMAIL"
BANNED = "amzn1.account.POLICYBANNED"
GONE = "amzn1.account.POLICYGONE"
SHELLS = ["asgi", "wsgi"]

ALLOW = {
    "/*": ["domain:example.com", "domain:partner.example", f"user:{ROOT}", f"user:{NOMAIL}"],
    "/admin/*": ["email:boss@example.com", f"user:{ROOT}"],
    "/admin/audit/*": [f"user:{ROOT}"],
    "/staff/*": ["domain:example.com"],
}
DENY = {"/private/*": ["email:fired@example.com"], "/reports/*": ["domain:partner.example"]}
POLICY_FILE = {
    "allow": {"/files/*": ["domain:example.com", "domain:evil.example", f"user:{NOMAIL}"]},
    "deny": [f"user:{BANNED}"],
}
ENV_FILE = {"deny": {"/envfile/*": ["*"]}}
ENVIRONMENT = {
    "LWA_ALLOW": json.dumps({"/env/*": ["email:ada@example.com"]}),
    "LWA_DENY": json.dumps([f"user:{GONE}"]),  # an email rule would refuse `nomail` anywhere
}


@dataclass
class Judge:
    """The ``authorize`` callable's rules (shared by its sync and async forms), and what it
    was called with."""

    calls: list[tuple[str, str, str]]

    def decide(self, identity: Identity, method: str, path: str) -> Any:
        self.calls.append((identity.user_id, method, path))
        if path == "/callable/no" or (path == "/callable/ro" and method == "DELETE"):
            return False
        if path == "/callable/boom":
            raise RuntimeError("the judge broke")
        if path == "/callable/odd":
            return "yes"
        return True

    def sync(self, identity: Identity, method: str, path: str) -> Any:
        return self.decide(identity, method, path)

    async def async_(self, identity: Identity, method: str, path: str) -> Any:
        await asyncio.sleep(0)
        return self.decide(identity, method, path)


@dataclass
class Sites:
    urls: dict[str, str]
    tokens: dict[str, str]
    judge: Judge
    emulator: Emulator


def _mint(emulator: Emulator, **people: dict[str, Any]) -> dict[str, str]:
    tokens = {}
    for name, person in people.items():
        scopes = person.pop("scopes", ("profile", "postal_code"))
        user = emulator.add_user(name=name, **person)
        tokens[name] = emulator.mint(user.user_id, scopes)
    return tokens


@pytest.fixture(scope="module")
def sites(emulator: Emulator, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sites]:
    folder = tmp_path_factory.mktemp("policy")
    policy_file = folder / "policy.json"
    policy_file.write_text(json.dumps(POLICY_FILE))
    env_file = folder / "env-policy.toml"
    env_file.write_text('[deny]\n"/envfile/*" = ["*"]\n')
    tokens = _mint(
        emulator,
        ada={"email": "ada@example.com"},
        boss={"email": "Boss@Example.COM"},
        root={"email": "root@elsewhere.test", "user_id": ROOT},
        nomail={"user_id": NOMAIL, "scopes": ("profile:user_id",)},
        outsider={"email": "mallory@evil.example"},
        fired={"email": "fired@example.com"},
        banned={"email": "banned@example.com", "user_id": BANNED},
        pat={"email": "pat@partner.example"},
        gone={"email": "gone@partner.example", "user_id": GONE},
        outsider_narrow={"email": "eve@evil.example", "scopes": ("profile:user_id",)},
    )
    judge = Judge([])
    options: dict[str, Any] = {
        "client_ids": [emulator.client_id],
        "api_base_url": emulator.url,
        "allow": ALLOW,
        "deny": DENY,
        "policy_file": policy_file,
        "optional": ["/maybe"],
        "require_scopes": {"/zip/*": "postal_code"},
    }
    with pytest.MonkeyPatch.context() as env:
        for name, value in {**ENVIRONMENT, "LWA_POLICY_FILE": str(env_file)}.items():
            env.setenv(name, value)
        asgi = LWAMiddleware(inner_app(), authorize=judge.async_, **options)
        wsgi = LWAWSGIMiddleware(wsgi_whoami, authorize=judge.sync, **options)
    handles: list[ServerHandle] = [serve(asgi, lifespan="on"), serve_wsgi(wsgi)]
    try:
        yield Sites(dict(zip(SHELLS, (h.url for h in handles))), tokens, judge, emulator)
    finally:
        for handle in handles:
            handle.stop()
        wsgi.close()


@pytest.fixture(params=SHELLS)
def url(request: pytest.FixtureRequest, sites: Sites) -> str:
    return sites.urls[request.param]


def assert_denied(response: httpx.Response) -> None:
    """The policy's refusal: 403 ``access_denied``, no challenge, no rule named."""
    body = assert_error(response, "access_denied", 403, challenge=False)
    assert "www-authenticate" not in response.headers
    assert body["error_description"] == "You are not allowed to access this resource."


def verdicts(http: httpx.Client, url: str, token: str, path: str, **kw: Any) -> list[int]:
    """The status of ``path`` asked twice: cold, then warm (the token cached)."""
    statuses = []
    for _ in range(2):
        response = http.request(kw.get("method", "GET"), url + path, headers=bearer(token))
        if response.status_code == 403:
            assert_denied(response)
        elif response.status_code == 200:
            assert response.headers[APP_HEADER[0]] == APP_HEADER[1]
        statuses.append(response.status_code)
    return statuses


CASES = [
    # (who, path, admitted): each rule kind
    ("ada", "/me", True),  # domain:
    ("outsider", "/me", False),  # no /* rule admits them
    ("root", "/me", True),  # user:
    ("boss", "/admin/x", True),  # email:, compared case-insensitively
    ("ada", "/admin/x", False),
    # nested patterns narrow: every matching allow must admit
    ("boss", "/admin/audit/log", False),
    ("root", "/admin/audit/log", True),
    # the bare prefix: /admin/* covers /admin
    ("ada", "/admin", False),
    ("boss", "/admin", True),
    # customers without an email (profile:user_id tokens)
    ("nomail", "/me", True),  # by user:
    ("nomail", "/staff/x", False),  # an email/domain allow never admits them
    ("nomail", "/reports/x", False),  # an email/domain deny refuses them
    ("ada", "/staff/x", True),
    # deny wins over allow
    ("fired", "/me", True),
    ("fired", "/private/x", False),
    ("ada", "/private/x", True),
    ("pat", "/reports/x", False),
    # the policy file: its deny list (every path), its allow narrows, never widens
    ("banned", "/me", False),
    ("pat", "/files/x", False),
    ("ada", "/files/x", True),
    ("outsider", "/files/x", False),
    ("nomail", "/files/x", True),
    # the environment: LWA_DENY, LWA_ALLOW, LWA_POLICY_FILE (TOML)
    ("gone", "/me", False),
    ("ada", "/env/x", True),
    ("boss", "/env/x", False),
    ("root", "/envfile/x", False),
    ("ada", "/envfile", False),  # its bare prefix too
]


@pytest.mark.parametrize(("who", "path", "admitted"), CASES)
def test_rules(
    url: str, sites: Sites, http: httpx.Client, who: str, path: str, admitted: bool
) -> None:
    expected = 200 if admitted else 403
    assert verdicts(http, url, sites.tokens[who], path) == [expected, expected]


RAW_FORMS = [
    # (raw path, who is refused, who passes): the policy of every form
    (b"/admin/%2e%2e/me", "ada", "boss"),  # Starlette routes /admin/../me to /admin/{p}
    (b"/me/../admin", "ada", "boss"),  # a normalizing proxy sends it to /admin
    (b"//admin", "ada", "boss"),  # slashes merged: /admin, the bare prefix
    (b"/admin;x=1", "ada", "boss"),  # servlet form: /admin
    (b"/admin/%252e%252e/me", "ada", "boss"),  # decoded twice
    (b"/private/%2e%2e/me", "fired", "ada"),  # a deny any form matches refuses
    (b"/x/../private/y", "fired", "ada"),
    (b"/admin/audit/../../me", "boss", "root"),
    (b"/%61dmin/x", "ada", "boss"),  # decoded by the server: /admin/x
    (b"/./admin", "ada", "boss"),
    (b"/admin%2Fx", "ada", "boss"),
]


@pytest.mark.parametrize(("raw", "refused", "passes"), RAW_FORMS)
def test_every_form_of_a_path(
    url: str, sites: Sites, http: httpx.Client, raw: bytes, refused: str, passes: str
) -> None:
    for _ in range(2):  # cold, then warm
        assert_denied(raw_get(http, url, raw, bearer(sites.tokens[refused])))
        response = raw_get(http, url, raw, bearer(sites.tokens[passes]))
        assert response.status_code == 200, (raw, response.text)


def test_scopes_and_tokens_come_first(url: str, sites: Sites, http: httpx.Client) -> None:
    """A missing or bad token keeps its own error; a missing scope is judged first."""
    assert_error(http.get(url + "/me"), "invalid_request", 400)
    assert_error(http.get(url + "/me", headers=bearer("Atza|" + "x" * 400)), "invalid_token", 400)
    narrow = sites.tokens["outsider_narrow"]
    assert_error(http.get(url + "/zip/1", headers=bearer(narrow)), "insufficient_scope", 401)
    assert_denied(http.get(url + "/me", headers=bearer(narrow)))


def test_optional_routes(url: str, sites: Sites, http: httpx.Client) -> None:
    """Anonymous on an optional route is not judged; a token there is."""
    assert http.get(url + "/maybe").json()["user"] is None
    assert verdicts(http, url, sites.tokens["outsider"], "/maybe") == [403, 403]
    assert verdicts(http, url, sites.tokens["ada"], "/maybe") == [200, 200]


def test_the_callable(url: str, sites: Sites, http: httpx.Client, caplog: Any) -> None:
    """``authorize`` narrows (never widens), runs on every request (warm too) with the
    method and the path below the mount point, and failing is a 500, never an admission."""
    ada, outsider = sites.tokens["ada"], sites.tokens["outsider"]
    calls = sites.judge.calls
    before = len(calls)
    assert verdicts(http, url, ada, "/callable/yes") == [200, 200]
    assert len(calls) == before + 2
    assert calls[-1][1:] == ("GET", "/callable/yes")
    assert verdicts(http, url, ada, "/callable/no") == [403, 403]
    assert verdicts(http, url, ada, "/callable/ro", method="POST") == [200, 200]
    assert verdicts(http, url, ada, "/callable/ro", method="DELETE") == [403, 403]
    before = len(calls)
    assert verdicts(http, url, outsider, "/callable/boom") == [403, 403]  # rules first
    assert len(calls) == before
    with caplog.at_level(logging.ERROR, logger="lwa_middleware"):
        for path in ("/callable/boom", "/callable/odd"):
            for _ in range(2):
                response = http.get(url + path, headers=bearer(ada))
                assert_error(response, "ServerError", 500)
    messages = [record.getMessage() for record in caplog.records]
    assert any("authorize callable raised RuntimeError" in m for m in messages)
    assert any("returned str, not True or False" in m for m in messages)
    assert not any(ada in m for m in messages)


@pytest.mark.anyio
async def test_websocket_handshakes(sites: Sites) -> None:
    import websockets

    ws_url = sites.urls["asgi"].replace("http://", "ws://") + "/ws"
    for attempt in ("cold", "warm"):
        with pytest.raises(websockets.InvalidStatus) as refused:
            async with websockets.connect(
                ws_url, additional_headers=bearer(sites.tokens["outsider"])
            ):
                pass  # pragma: no cover - the handshake is refused
        assert refused.value.response.status_code == 403, attempt
        assert b"access_denied" in refused.value.response.body
    async with websockets.connect(ws_url, additional_headers=bearer(sites.tokens["ada"])) as ws:
        assert await ws.recv() != "anonymous"
    assert ("WEBSOCKET", "/ws") in {call[1:] for call in sites.judge.calls}


# A policy file changed, then broken, under load ----------------------------------------


def test_policy_file_changes_under_load(
    emulator: Emulator, tmp_path: Path, http: httpx.Client, caplog: Any
) -> None:
    """Four threads keep asking both shells (warm tokens) while the file changes: the new
    rules apply within two seconds to every request, cached identities included; the file
    then broken keeps them, with one ERROR naming the file; no request fails meanwhile."""
    path = tmp_path / "live.json"
    path.write_text(json.dumps({"allow": {"/*": ["domain:example.com"]}}))
    tokens = _mint(emulator, lou={"email": "lou@example.com"}, kim={"email": "kim@other.example"})
    options: dict[str, Any] = {
        "client_ids": [emulator.client_id],
        "api_base_url": emulator.url,
        "policy_file": str(path),
        "authorize": lambda identity, method, path: path != "/callable/no",  # sync, in both
    }
    asgi = LWAMiddleware(inner_app(), **options)
    wsgi = LWAWSGIMiddleware(wsgi_whoami, **options)
    handles = [serve(asgi, lifespan="on"), serve_wsgi(wsgi)]
    urls = [handle.url for handle in handles]
    expected = {"lou": 200, "kim": 403}
    seen: list[tuple[float, str, int]] = []
    stop = threading.Event()

    def load() -> None:
        with httpx.Client(timeout=10) as client:
            while not stop.is_set():
                for base in urls:
                    for who, token in tokens.items():
                        status = client.get(base + "/me", headers=bearer(token)).status_code
                        seen.append((time.monotonic(), who, status))

    def settled(wanted: dict[str, int], since: float) -> float:
        """Seconds until every shell answers as ``wanted`` (asked directly, no cache help)."""
        deadline = since + 5
        while time.monotonic() < deadline:
            statuses = {
                (base, who): http.get(base + "/me", headers=bearer(token)).status_code
                for base in urls
                for who, token in tokens.items()
            }
            if all(statuses[(base, who)] == wanted[who] for base, who in statuses):
                return time.monotonic() - since
            time.sleep(0.05)
        raise AssertionError(f"not applied within 5 s: {statuses}")

    def replace(text: str) -> None:  # as a deployment writes it: whole, then renamed
        (tmp_path / "next.json").write_text(text)
        os.replace(tmp_path / "next.json", path)

    workers = [threading.Thread(target=load) for _ in range(4)]
    try:
        assert settled(expected, time.monotonic()) < 0.5
        for base in urls:
            assert_denied(http.get(base + "/callable/no", headers=bearer(tokens["lou"])))
        for worker in workers:
            worker.start()
        time.sleep(0.3)
        changed = time.monotonic()
        replace(json.dumps({"allow": {"/*": ["domain:other.example"]}}))
        expected = {"lou": 403, "kim": 200}
        assert settled(expected, changed) < 2.0
        with caplog.at_level(logging.ERROR, logger="lwa_middleware"):
            replace('{"allow": {"/*": ["domian:example.com"]}}')
            time.sleep(1.3)
            assert settled(expected, time.monotonic()) < 0.5  # the last good policy holds
        stop.set()
        for worker in workers:
            worker.join()
    finally:
        stop.set()
        for handle in handles:
            handle.stop()
        wsgi.close()
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 2, [r.getMessage() for r in errors]  # once per middleware
    assert all(str(path) in r.getMessage() and "domian" in r.getMessage() for r in errors)
    assert len(seen) > 40
    assert {status for _, _, status in seen} <= {200, 403}  # no request failed
    late = [(who, status) for at, who, status in seen if at > changed + 2.0]
    assert late and all(status == expected[who] for who, status in late)


# The sign-in: a customer the policy refuses is told so, and gets no session -------------

SECRET = "policy-signin-secret-0123456789"


@pytest.fixture(scope="module")
def sign_in_sites(emulator: Emulator) -> Iterator[dict[str, str]]:
    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.routing import Mount, Route
    from werkzeug.middleware.dispatcher import DispatcherMiddleware

    from lwa_middleware import LWALogin, LWAWSGILogin

    from conftest import whoami

    policy: dict[str, Any] = {
        "client_ids": [emulator.client_id],
        "api_base_url": emulator.url,
        "allow": {"/*": ["domain:example.com"]},
        "deny": {"/vault/*": ["email:ada@example.com"]},
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
        routes=[Mount("/auth", app=login), Route("/{path:path}", whoami)],
        middleware=[Middleware(LWAMiddleware, login=login, exclude=["/auth/*"], **policy)],
    )
    wsgi_login = LWAWSGILogin(
        emulator.client_id,
        redirect_uri=handles[1].url + "/auth/callback",
        api_base_url=emulator.url,
        **common,
    )
    protected = LWAWSGIMiddleware(wsgi_whoami, login=wsgi_login, **policy)
    late_wsgi.app = DispatcherMiddleware(protected, {"/auth": wsgi_login})
    try:
        yield dict(zip(SHELLS, (handle.url for handle in handles)))
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


@pytest.mark.parametrize("shell", SHELLS)
def test_sign_in_of_a_refused_customer(
    emulator: Emulator, sign_in_sites: dict[str, str], shell: str
) -> None:
    site = sign_in_sites[shell]
    outsider = emulator.add_user(name="Mallory", email="mallory@evil.example")
    ada = emulator.add_user(name="Ada", email="ada@example.com")
    browser, answer = sign_in(emulator, site, outsider.user_id, "/me?tab=1")
    with closing(browser):
        assert answer.status_code == 403, answer.text
        assert answer.headers["content-type"].startswith("text/html")
        assert "not allowed to use this site" in answer.text
        assert "evil.example" not in answer.text and "domain" not in answer.text
        cookies = answer.headers.get_list("set-cookie")
        assert [c.partition("=")[0] for c in cookies] == ["lwa_token_login"]
        assert "Max-Age=0" in cookies[0]
        assert "lwa_token" not in browser.cookies
        assert_error(browser.get("/me"), "invalid_request", 400)
    # the next path is judged as a GET, with the deny too: ada may not GET /vault/*
    browser, answer = sign_in(emulator, site, ada.user_id, "/vault/x", accept="application/json")
    with closing(browser):
        assert answer.status_code == 403
        assert answer.json()["error"] == "access_denied"
        assert "lwa_token" not in browser.cookies
    browser, answer = sign_in(emulator, site, ada.user_id, "/me")
    with closing(browser):
        assert answer.status_code == 302, answer.text
        assert answer.headers["location"] == "/me"
        assert browser.get("/me").json()["email"] == "ada@example.com"


# lwa-middleware inspect --path --method ------------------------------------------------


def test_inspect_judges_the_policy(
    sites: Sites,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    import io
    import sys

    from lwa_middleware.cli import main

    def inspect(who: str, *args: str) -> tuple[int, str]:
        monkeypatch.setattr(sys, "stdin", io.StringIO(sites.tokens[who]))
        base = ["inspect", "--api-base-url", sites.emulator.url]
        code = main([*base, "--client-id", sites.emulator.client_id, *args])
        out, err = capsys.readouterr()
        assert sites.tokens[who] not in out + err
        return code, out + err

    code, out = inspect("outsider")
    assert code == 0 and "Access policy  none configured" in out
    allow = json.dumps({"/*": ["domain:example.com", f"user:{ROOT}"], "/admin/*": [f"user:{ROOT}"]})
    code, out = inspect("outsider", "--allow", allow)
    assert code == 1
    assert "Access policy  REFUSED at GET /: an allow pattern matches" in out
    assert "evil.example" in out  # the profile's email, not a rule
    code, out = inspect("ada", "--allow", allow, "--path", "/admin", "--method", "delete", "--json")
    report = json.loads(out)
    assert code == 1 and report["verdict"] == "refused"
    assert report["policy"] == {
        "method": "DELETE",
        "path": "/admin",
        "sources": ["options"],
        "admitted": False,
        "refused_by": "allow",
        "reason": report["policy"]["reason"],
    }
    code, out = inspect("root", "--allow", allow, "--path", "/admin/x")
    assert code == 0 and "ADMITTED at GET /admin/x (rules of options)" in out
    deny = json.dumps({"/private/*": ["email:ADA@example.com"]})
    code, out = inspect("ada", "--deny", deny, "--path", "/private/%2e%2e/x", "--json")
    assert code == 1 and json.loads(out)["policy"]["refused_by"] == "deny:email"
    monkeypatch.setenv("LWA_DENY", json.dumps([f"user:{ROOT}"]))
    code, out = inspect("root", "--json")
    assert json.loads(out)["policy"]["refused_by"] == "deny:user"
    monkeypatch.delenv("LWA_DENY")
    broken = tmp_path / "broken.json"
    broken.write_text('{"allow": {"/*": ["everyone"]}}')
    code, out = inspect("ada", "--policy-file", str(broken))
    assert code == 2 and "is not a rule" in out and str(broken) in out
    code, out = inspect("nomail", "--allow", allow, "--json")
    assert json.loads(out)["policy"]["refused_by"] == "allow:no-email"


# Across workers: an identity another worker put in Redis is judged all the same ----------


def test_identities_from_the_shared_cache_are_judged(
    emulator: Emulator, http: httpx.Client, tmp_path: Path
) -> None:
    from redis_fixtures import RedisServer

    redis_server = RedisServer(tmp_path).start()
    tokens = _mint(emulator, rae={"email": "rae@example.com"}, sly={"email": "sly@evil.example"})
    common: dict[str, Any] = {
        "client_ids": [emulator.client_id],
        "api_base_url": emulator.url,
        "redis_url": redis_server.url,
        "secret_key": "policy-redis-secret-0123456789",
    }
    open_worker = LWAMiddleware(inner_app(), **common)  # an app without a policy ...
    guarded: dict[str, Any] = {"allow": {"/*": ["domain:example.com"]}}
    asgi = LWAMiddleware(inner_app(), **common, **guarded)  # ... and two with one
    wsgi = LWAWSGIMiddleware(wsgi_whoami, **common, **guarded)
    handles = [serve(open_worker, lifespan="on"), serve(asgi, lifespan="on"), serve_wsgi(wsgi)]
    try:
        first, *policed = (handle.url for handle in handles)
        for token in tokens.values():  # verified (and shared) by the worker without a policy
            assert http.get(first + "/me", headers=bearer(token)).status_code == 200
        calls = dict(emulator.calls)
        for url in policed:
            for _ in range(2):  # from Redis, then from memory
                assert_denied(http.get(url + "/me", headers=bearer(tokens["sly"])))
                assert http.get(url + "/me", headers=bearer(tokens["rae"])).status_code == 200
        assert emulator.calls == calls  # no LWA call: every identity came from Redis
        assert asgi.verifier.authority.l2.stats.hits >= 2
    finally:
        for handle in handles:
            handle.stop()
        wsgi.close()
        redis_server.terminate()
