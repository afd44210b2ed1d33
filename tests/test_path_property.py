"""Property: whatever path a client sends, no request reaches a guarded handler unverified,
nor a scoped handler without its scope, on real routers behind the middlewares.

Paths are built from dot segments, encoded dots and slashes, doubled slashes, ``;params``
and the areas' names, and sent verbatim to a Starlette app under uvicorn and a Flask app
under wsgiref and Werkzeug (the apps, servers and invariants of ``test_path_attacks.py``),
once without a token and once with a ``profile:user_id`` token. The servers start once per
module; the unit properties below compare the rules with each form's own decision.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lwa_middleware.core.rules import Mode, PathRules, normalize_path, path_forms
from lwa_middleware.emulator import Emulator
from test_path_attacks import CONFIGS, Site, check_invariants, site

from conftest import bearer, raw_get

# Hypothesis caches what it reads of the source in .hypothesis/ under the working directory,
# even with database=None; keep it out of the tree (read lazily, so setting it here is enough).
os.environ.setdefault(
    "HYPOTHESIS_STORAGE_DIRECTORY", os.path.join(tempfile.gettempdir(), "lwa-middleware-hypothesis")
)

PIECES = [
    *(".", "..", "%2e", "%2E%2e", "%2e.", "%2f", "%2F", "//", "", ";x", "..;", "%252e"),
    *("%5c", "%3b", "admin", "public", "health", "account", "users", "orders", "x"),
]
AREAS = ["admin", "public", "health", "account", "users"]
SEGMENTS = st.lists(st.sampled_from(PIECES), min_size=1, max_size=3).map("".join)
PATHS = st.builds(
    lambda first, rest: "/" + "/".join([first, *rest]),
    st.one_of(st.sampled_from(AREAS), SEGMENTS),
    st.lists(SEGMENTS, max_size=5),
)
KINDS = ["uvicorn-h11", "uvicorn-httptools", "flask-wsgiref", "flask-werkzeug"]
SETTINGS = settings(
    max_examples=150,
    deadline=None,
    database=None,  # write no .hypothesis directory into the working tree
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.fixture(scope="module")
def sites(emulator: Emulator) -> Iterator[list[Site]]:
    """Every kind of server, one per configuration, for the whole module."""
    with ExitStack() as stack:
        yield [stack.enter_context(site(kind, emulator)) for kind in KINDS]


@pytest.fixture(scope="module")
def narrow(emulator: Emulator) -> str:
    return emulator.mint_for(name="Narrow", scopes=("profile:user_id",))[1]


@pytest.mark.parametrize("config", CONFIGS)
@SETTINGS
@given(path=PATHS)
def test_no_path_reaches_a_guarded_handler_unverified(
    sites: list[Site], http: httpx.Client, narrow: str, config: str, path: str
) -> None:
    raw = path.encode()
    for served in sites:
        for headers in ({}, bearer(narrow)):
            response = raw_get(http, served.urls[config], raw, headers)
            assert response.status_code < 500, (served.kind, path, response.text)
            check_invariants(config, raw, response)


# The rules alone: stricter than any one form, and unchanged on plain paths ------------------

RULES = {
    "exclude": PathRules(
        protect=("/*",),
        exclude=("/public", "/public/*", "/health"),
        optional=("/users/*",),
        require_scopes={"/account/*": frozenset({"profile"}), "/admin*": frozenset({"x"})},
    ),
    "protect": PathRules(
        protect=("/admin/*", "/users/*", "/account/*"),
        optional=("/public/*",),
        require_scopes={"/account/*": frozenset({"profile"})},
    ),
}
STRICTNESS = {Mode.EXCLUDE: 0, Mode.PASS: 1, Mode.OPTIONAL: 2, Mode.PROTECT: 3}


@pytest.mark.parametrize("config", RULES)
@settings(max_examples=400, deadline=None, database=None)
@given(path=PATHS)
def test_decision_is_the_strictest_over_every_form(config: str, path: str) -> None:
    rules = RULES[config]
    route = rules.route(path)
    forms = path_forms(path)
    assert {path, normalize_path(path)} <= forms
    for form in forms:
        alone = rules._decide(form)
        assert STRICTNESS[route.mode] >= STRICTNESS[alone.mode], (path, form)
        if alone.verifies:
            assert route.required_scopes >= alone.required_scopes, (path, form)
    if route.mode is Mode.EXCLUDE:
        assert all(rules._decide(form).mode is Mode.EXCLUDE for form in forms)
    assert rules.route(path) is route  # memoised


@given(path=st.lists(st.sampled_from(["admin", "public", "x", "a.b", "-"]), max_size=5))
@settings(max_examples=100, deadline=None, database=None)
def test_a_plain_path_has_one_form(path: list[str]) -> None:
    plain = "/" + "/".join(path)
    assert path_forms(plain) == {plain}
    for rules in RULES.values():
        assert rules.route(plain) == rules._decide(plain)
