"""Path-rule bypasses found by an outside review, as regressions through real servers.

The middleware once judged only the normalized path, while Starlette, Werkzeug/Flask and
Django route on the decoded path *as received*: ``/admin/../public`` was judged as the
excluded ``/public`` and then served by the ``/admin/{p:path}`` handler without a token.
The rules now take the strictest decision over every form a router may make of a path
(see ``docs/security.md``). Each attack runs against a Starlette app under uvicorn (h11
and httptools) and a Flask app under wsgiref and Werkzeug's server; every handler answers
which handler ran and what the middleware attached, so a test sees exactly who answered.

The second review finding: the path memo was capped by count, not size, so 4,096 distinct
60 KB paths held ~235 MB in a uvicorn worker. Long paths are now decided every time.

The apps, servers and invariants here are shared with ``test_path_property.py``.
"""

from __future__ import annotations

import gc
import json
import tracemalloc
from collections.abc import Iterable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from fnmatch import fnmatchcase
from http.client import HTTPConnection
from typing import Any

import flask
import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from lwa_middleware import Identity, LWAMiddleware, LWAWSGIMiddleware
from lwa_middleware.core.rules import MAX_JUDGED_PATH, Mode, PathRules, normalize_path
from lwa_middleware.emulator import Emulator, serve, serve_wsgi

from conftest import APP_HEADER, assert_error, bearer, raw_get, serve_werkzeug

# The apps: one handler per area, each answering who ran and what it was given -------------

#: Starlette's and Flask's routes, in matching order: (name, Starlette path, Flask rules).
AREAS = [
    ("admin", "/admin/{p:path}", ["/admin/<path:p>"]),
    ("users", "/users/{p:path}", ["/users/<path:p>"]),
    ("account", "/account/{p:path}", ["/account/<path:p>"]),
    ("public", "/public", ["/public"]),
    ("public", "/public/{p:path}", ["/public/<path:p>"]),
    ("health", "/health", ["/health"]),
    ("other", "/{p:path}", ["/", "/<path:p>"]),
]


def answer(handler: str, path: str, has_lwa: bool, identity: Identity | None) -> dict[str, Any]:
    """What a handler answers: which one ran, on what path, and what it was given."""
    return {
        "handler": handler,
        "path": path,
        "has_lwa": has_lwa,
        "verified": identity is not None,
        "scopes": sorted(identity.scopes) if identity is not None else [],
    }


def starlette_app() -> Starlette:
    def endpoint(name: str) -> Any:
        async def handle(request: Request) -> Response:
            scope = request.scope
            body = answer(name, scope["path"], "lwa" in scope, scope.get("lwa"))
            return JSONResponse(body, headers=dict([APP_HEADER]))

        return handle

    return Starlette(routes=[Route(path, endpoint(name)) for name, path, _ in AREAS])


def flask_app() -> flask.Flask:
    app = flask.Flask("path_attacks")

    def endpoint(name: str) -> Any:
        def handle(p: str = "") -> flask.Response:
            environ = flask.request.environ
            body = answer(name, environ["PATH_INFO"], "lwa" in environ, environ.get("lwa"))
            response = flask.jsonify(body)
            response.headers[APP_HEADER[0]] = APP_HEADER[1]
            return response

        return handle

    for index, (name, _, rules) in enumerate(AREAS):
        view = endpoint(name)
        for rule in rules:
            app.add_url_rule(rule, f"{name}_{index}", view)
    return app


# The rules under test, and what each handler may only see when verified ---------------------

CONFIGS: dict[str, dict[str, Any]] = {
    # everything protected (the default) but what is public
    "exclude": {
        "exclude": ["/public", "/public/*", "/health"],
        "require_scopes": {"/account/*": "profile"},
    },
    # only what is listed is protected
    "protect": {
        "protect": ["/admin/*", "/users/*", "/account/*"],
        "require_scopes": {"/account/*": "profile"},
    },
}
#: Per configuration, the handlers that must never run without a verified identity.
GUARDED = {
    "exclude": {"admin", "users", "account", "other"},
    "protect": {"admin", "users", "account"},
}
#: Handlers that must never run with an identity lacking these scopes.
SCOPED = {"account": {"profile"}}


def excluded(config: str, seen: str) -> bool:
    """Whether the path the app saw is public as is and in normal form. The catch-all may
    serve such a path: Flask routes ``/public/`` and ``/public//`` to it (``<path:p>`` takes
    no empty value and none starting with ``/``), though ``/public/*`` covers them."""
    patterns = CONFIGS[config].get("exclude", [])
    forms = (seen, normalize_path(seen))
    return all(any(fnmatchcase(form, pattern) for pattern in patterns) for form in forms)


def check_invariants(config: str, path: bytes, response: httpx.Response) -> None:
    """No guarded handler answered unverified, no scoped one without its scope."""
    if response.headers.get(APP_HEADER[0]) != APP_HEADER[1]:
        return  # the middleware (or the framework: 404, redirect) answered, not a handler
    body = response.json()
    handler = body["handler"]
    if handler in GUARDED[config] and not (handler == "other" and excluded(config, body["path"])):
        assert body["verified"], (config, path, body)
    if body["verified"]:
        missing = SCOPED.get(handler, set()) - set(body["scopes"])
        assert not missing, (config, path, body)


# Serving them behind the middlewares ---------------------------------------------------------

SERVERS = ["uvicorn-h11", "uvicorn-httptools", "flask-wsgiref", "flask-werkzeug"]


@contextmanager
def serving(kind: str, options: Mapping[str, Any]) -> Iterator[str]:
    """The areas app behind the middleware, served by ``kind``; yields its base URL."""
    if kind.startswith("uvicorn-"):
        app = LWAMiddleware(starlette_app(), **options)
        with serve(app, lifespan="on", http=kind.removeprefix("uvicorn-")) as handle:
            yield handle.url
        return
    middleware = LWAWSGIMiddleware(flask_app(), **options)
    try:
        with (serve_wsgi if kind == "flask-wsgiref" else serve_werkzeug)(middleware) as handle:
            yield handle.url
    finally:
        middleware.close()


def options_for(emulator: Emulator, config: str) -> dict[str, Any]:
    return {"client_ids": [emulator.client_id], "api_base_url": emulator.url, **CONFIGS[config]}


@contextmanager
def site(kind: str, emulator: Emulator, configs: Iterable[str] = CONFIGS) -> Iterator[Site]:
    """One server of ``kind`` per configuration."""
    with ExitStack() as stack:
        urls = {
            config: stack.enter_context(serving(kind, options_for(emulator, config)))
            for config in configs
        }
        yield Site(kind, urls)


@dataclass(frozen=True)
class Site:
    kind: str
    urls: dict[str, str]


# Fixtures --------------------------------------------------------------------------------------


@pytest.fixture(scope="module", params=SERVERS)
def areas(request: pytest.FixtureRequest, emulator: Emulator) -> Iterator[Site]:
    with site(request.param, emulator) as serving_site:
        yield serving_site


@pytest.fixture(scope="module")
def narrow(emulator: Emulator) -> str:
    """A valid token proving only ``profile:user_id``."""
    return emulator.mint_for(name="Narrow", scopes=("profile:user_id",))[1]


@pytest.fixture(scope="module")
def full(emulator: Emulator) -> str:
    """A valid token proving ``profile``."""
    return emulator.mint_for(name="Full", scopes=("profile",))[1]


def app_body(response: httpx.Response) -> dict[str, Any]:
    """The handler's answer (failing if the middleware or the framework answered)."""
    assert response.status_code == 200, response.text
    assert response.headers.get(APP_HEADER[0]) == APP_HEADER[1], response.text
    body: dict[str, Any] = response.json()
    return body


# The attacks ------------------------------------------------------------------------------------

#: With ``exclude=["/public", "/public/*", "/health"]``: reach ``/admin/{p:path}`` as if public.
EXCLUDE_BYPASSES = [
    b"/admin/%2e%2e/health",
    b"/admin/../public",
    b"/admin/x/../../health",
    b"/admin/..%2fpublic",
    b"/admin/%2e%2e/public/x",
    b"/admin/./../health",
    b"/admin//..//health",
]
#: With ``protect=["/admin/*", "/users/*", ...]``: reach a protected area as if unlisted.
PROTECT_BYPASSES = [
    b"/admin/.",
    b"/admin/%2e",
    b"/admin/x/..",
    b"/users/%2e%2e",
    b"/users/x/%2e%2e",
    b"/admin/%2E",
]
#: With ``protect=[...]``: Werkzeug merges ``//`` (sent as ``/%2f``) and keeps ``.``, so
#: Flask serves ``//admin/.`` from ``/admin/<path:p>``, neither as received nor normal.
MERGED_SLASHES_BYPASSES = [b"/%2fadmin/.", b"/%2fusers/x/..", b"/users/%2f%2e", b"/%2faccount/."]
#: With ``require_scopes={"/account/*": "profile"}``: reach the account without the scope.
SCOPE_BYPASSES = [b"/account/orders/..", b"/account/%2e", b"/account/x/%2e%2e"]


@pytest.mark.parametrize("path", EXCLUDE_BYPASSES, ids=lambda p: p.decode())
def test_exclude_bypass_needs_a_token(
    areas: Site, http: httpx.Client, narrow: str, path: bytes
) -> None:
    url = areas.urls["exclude"]
    response = raw_get(http, url, path)
    check_invariants("exclude", path, response)
    assert_error(response, "invalid_request", 400)
    body = app_body(raw_get(http, url, path, bearer(narrow)))
    # Werkzeug's <path:p> takes no leading /: Flask serves /admin//… by its catch-all
    assert body["handler"] == (
        "other" if b"//" in path and areas.kind.startswith("flask-") else "admin"
    )
    assert body["verified"] is True


@pytest.mark.parametrize("path", PROTECT_BYPASSES, ids=lambda p: p.decode())
def test_protect_bypass_needs_a_token(
    areas: Site, http: httpx.Client, narrow: str, path: bytes
) -> None:
    url = areas.urls["protect"]
    response = raw_get(http, url, path)
    check_invariants("protect", path, response)
    assert_error(response, "invalid_request", 400)
    body = app_body(raw_get(http, url, path, bearer(narrow)))
    assert body["handler"] in {"admin", "users"}
    assert body["verified"] is True


@pytest.mark.parametrize("path", MERGED_SLASHES_BYPASSES, ids=lambda p: p.decode())
def test_merged_slashes_bypass_needs_a_token(
    areas: Site, http: httpx.Client, narrow: str, path: bytes
) -> None:
    url = areas.urls["protect"]
    response = raw_get(http, url, path)
    check_invariants("protect", path, response)
    assert_error(response, "invalid_request", 400)
    with_token = raw_get(http, url, path, bearer(narrow))
    check_invariants("protect", path, with_token)
    if areas.kind.startswith("flask-") and not path.startswith(b"/%2faccount"):
        assert app_body(with_token)["verified"] is True


@pytest.mark.parametrize("config", CONFIGS)
@pytest.mark.parametrize("path", SCOPE_BYPASSES, ids=lambda p: p.decode())
def test_scope_bypass_is_insufficient_scope(
    areas: Site, http: httpx.Client, narrow: str, full: str, config: str, path: bytes
) -> None:
    url = areas.urls[config]
    response = raw_get(http, url, path, bearer(narrow))
    check_invariants(config, path, response)
    assert_error(response, "insufficient_scope", 401)
    assert_error(raw_get(http, url, path), "invalid_request", 400)
    body = app_body(raw_get(http, url, path, bearer(full)))
    assert body["handler"] == "account"
    assert "profile" in body["scopes"]


def test_plain_paths_are_judged_as_before(
    areas: Site, http: httpx.Client, narrow: str, full: str
) -> None:
    excluding, protecting = areas.urls["exclude"], areas.urls["protect"]
    for path in (b"/public", b"/public/a.css", b"/health"):
        body = app_body(raw_get(http, excluding, path, bearer("not a token!")))
        assert body["has_lwa"] is False  # untouched, even with a bad token
    for url in (excluding, protecting):
        assert_error(raw_get(http, url, b"/admin/x"), "invalid_request", 400)
        assert app_body(raw_get(http, url, b"/admin/x", bearer(narrow)))["verified"] is True
        assert_error(raw_get(http, url, b"/account/x", bearer(narrow)), "insufficient_scope", 401)
        assert app_body(raw_get(http, url, b"/account/x", bearer(full)))["verified"] is True
    body = app_body(raw_get(http, protecting, b"/elsewhere", bearer("not a token!")))
    assert (body["handler"], body["has_lwa"]) == ("other", False)
    assert_error(raw_get(http, excluding, b"/elsewhere"), "invalid_request", 400)


# The forms a path is judged in (unit level: what no server here makes of a path) -------------


def test_every_form_of_a_path_is_judged() -> None:
    rules = PathRules(protect=("/*",), exclude=("/public", "/public/*", "/health"))
    for path in (
        "/public/..;/admin",  # servlet containers drop ;params before resolving dot segments
        "/public;x/../../admin",
        "/public\\..\\admin",  # some servers take \ for /
        "/public/%2e%2e/admin",  # decoded once more by the app or a proxy
        "/public/%2e%2e%2fadmin",
        "/admin/%2e%2e/public",  # the app sees /admin/%2e%2e/public as received
        "/admin/..",
        "/public/../admin",
        "//admin/../public",
    ):
        assert rules.route(path).mode is Mode.PROTECT, path
    for path in ("/public", "/public/a.css", "/public/a;v=1.css", "/health", "/public/100%.css"):
        assert rules.route(path).mode is Mode.EXCLUDE, path
    listed = PathRules(protect=("/admin/*",), optional=("/blog/*",))
    assert listed.route("/admin/.").mode is Mode.PROTECT
    assert listed.route("//admin/.").mode is Mode.PROTECT  # Werkzeug: slashes merged only
    assert listed.route("/q/../admin//..").mode is Mode.PROTECT  # RFC 3986: /admin/ (not /)
    assert listed.route("/admin%2f..").mode is Mode.PROTECT  # /admin/.. once decoded again
    assert listed.route("/blog/../admin/x").mode is Mode.PROTECT  # PROTECT beats OPTIONAL
    assert listed.route("/blog/../x").mode is Mode.OPTIONAL
    assert listed.route("/x/../y").mode is Mode.PASS
    scoped = PathRules(
        protect=("/*",),
        require_scopes={
            "/account/*": frozenset({"profile"}),
            "/account": frozenset({"postal_code"}),
        },
    )
    assert scoped.route("/account/orders/..").required_scopes == {"profile", "postal_code"}
    assert scoped.route("/account/orders").required_scopes == {"profile"}


# The memo is bounded in size, not only in count ---------------------------------------------------

MEMO_PATH_LIMIT = 256  # the longest path memoised (documented in rules.py)
MEMO_COUNT_LIMIT = 4096
LONG = 60_000


def long_path(index: int) -> str:
    return f"/public/{index:08d}/" + "a" * LONG


def memoised_chars(rules: PathRules) -> int:
    return sum(len(path) for path in rules._memo)


def test_memo_does_not_hold_long_paths() -> None:
    rules = PathRules(protect=("/*",), exclude=("/public/*",))
    for index in range(5_000):
        assert rules.route(long_path(index)).mode is Mode.EXCLUDE
    assert rules.route("/x" + long_path(0)).mode is Mode.PROTECT  # long paths still judged
    assert rules.route("/public/../x" + long_path(0)).mode is Mode.PROTECT
    assert all(len(path) <= MEMO_PATH_LIMIT for path in rules._memo)
    assert memoised_chars(rules) <= MEMO_PATH_LIMIT * MEMO_COUNT_LIMIT
    for index in range(10_000):  # short paths are still memoised, and still bounded by count
        rules.route(f"/u/{index}")
    assert 0 < len(rules._memo) <= MEMO_COUNT_LIMIT
    assert rules.route("/public/" + "a" * MEMO_PATH_LIMIT) is not None


def test_a_long_path_with_several_forms_gets_the_strictest_decision_at_once() -> None:
    """Past ``MAX_JUDGED_PATH`` characters, a path with several forms is not judged form by
    form (a crafted one would cost milliseconds): it needs a token and every scope."""
    rules = PathRules(
        protect=("/admin/*",),
        exclude=("/public/*",),
        require_scopes={"/zip/*": frozenset({"postal_code"}), "/me": frozenset({"profile"})},
    )
    crafted = "/public/" + "%2e%2e;\\x/" * (MAX_JUDGED_PATH // 8)
    route = rules.route(crafted)
    assert route.mode is Mode.PROTECT
    assert route.required_scopes == {"postal_code", "profile"}
    assert rules.route("/public/" + "a" * (2 * MAX_JUDGED_PATH)).mode is Mode.EXCLUDE  # one form
    # Shorter ones are judged form by form, as before.
    assert rules.route("/public/" + "%2e%2e;x/" * 10).mode is Mode.PASS
    assert rules.route("/public/%2e%2e/admin/x").mode is Mode.PROTECT
    assert rules.route("/public/a%20b").mode is Mode.EXCLUDE  # every form excluded


def test_long_paths_do_not_grow_a_uvicorn_worker() -> None:
    """600 distinct 60 KB paths through uvicorn: the worker keeps none of them."""
    middleware = LWAMiddleware(
        starlette_app(), client_ids=["unused"], exclude=["/public", "/public/*"]
    )
    with serve(middleware, lifespan="on", http="httptools") as handle:
        connection = HTTPConnection(handle.host, handle.port, timeout=10)
        try:
            get(connection, "/public/warm-up")
            gc.collect()
            tracemalloc.start()
            try:
                before = tracemalloc.get_traced_memory()[0]
                for index in range(600):
                    assert get(connection, long_path(index))["handler"] == "public"
                gc.collect()
                grown = tracemalloc.get_traced_memory()[0] - before
            finally:
                tracemalloc.stop()
        finally:
            connection.close()
    rules = middleware.gate.rules
    assert memoised_chars(rules) <= MEMO_PATH_LIMIT * MEMO_COUNT_LIMIT
    assert grown < 8_000_000, f"the worker grew by {grown / 1e6:.1f} MB"  # unbounded: 36 MB


def get(connection: HTTPConnection, path: str) -> dict[str, Any]:
    """GET ``path`` on a kept-alive connection; the handler's answer."""
    connection.request("GET", path)
    response = connection.getresponse()
    data = response.read()
    assert response.status == 200, data[:200]
    body: dict[str, Any] = json.loads(data)
    return body
