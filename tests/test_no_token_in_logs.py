"""No access token ever reaches a log record, a repr, an error message or a cache key.

Every logger is captured at its lowest level (root at level 1 with one collecting handler;
every existing logger reset to propagate, enabled, level NOTSET; uvicorn at ``trace``
with its access log on) while the clients, the ASGI middleware (under uvicorn) and the
WSGI middleware (under ``wsgiref``) handle good, bad, missing, expired and revoked tokens
and LWA faults, all over real HTTP against the emulator. Each record is kept as text
(formatted message with traceback, ``args``, ``msg``, the exception and any extra
attributes) and searched for pieces of every token the test used: the whole token and
16-character pieces of its random part (start, middle, end), which also catches a token
logged truncated or URL-encoded. A self-test proves the capture and the search can fail.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from lwa_middleware.asgi import LWAMiddleware
from lwa_middleware.core.cache import MemoryCache, cache_key
from lwa_middleware.core.errors import LWAError
from lwa_middleware.core.models import Identity
from lwa_middleware.core.settings import LWASettings
from lwa_middleware.emulator import Emulator, serve, serve_wsgi
from lwa_middleware.upstream.client import AsyncLWAClient, LWAClient
from lwa_middleware.wsgi import LWAWSGIMiddleware

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

ALL_LEVELS = 1
START = 1_800_000_000.0
_STANDARD_ATTRS = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


class FakeClock:
    """One settable clock shared by the emulator and the middleware."""

    def __init__(self, now: float = START) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@dataclass
class Seen:
    """One captured record, as every piece of text it could end up printed as."""

    name: str
    text: str


class Capture(logging.Handler):
    """Collects every record it is given, rendered to text at emit time."""

    def __init__(self) -> None:
        super().__init__(ALL_LEVELS)
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
        self.seen: list[Seen] = []

    def emit(self, record: logging.LogRecord) -> None:
        parts = [repr(record.msg), repr(record.args)]
        try:
            parts.append(self.format(record))  # message, exc_text and stack_info
        except Exception as exc:  # a broken record must not hide the others
            parts.append(f"unformattable: {exc!r}")
        if record.exc_info and record.exc_info[1] is not None:
            parts.append(repr(record.exc_info[1]))
        for key, value in vars(record).items():
            if key not in _STANDARD_ATTRS:
                parts.append(f"{key}={value!r}")
        self.seen.append(Seen(record.name, "\n".join(parts)))

    @property
    def names(self) -> set[str]:
        """The loggers that produced at least one record."""
        return {seen.name for seen in self.seen}


@pytest.fixture
def logs() -> Iterator[Capture]:
    """Capture every record of every logger; restore the logging setup afterwards."""
    handler = Capture()
    manager = logging.Logger.manager
    root = logging.getLogger()
    loggers = [x for x in manager.loggerDict.values() if isinstance(x, logging.Logger)]
    saved = [(x, x.level, x.propagate, x.disabled) for x in loggers]
    saved_root, saved_disable = root.level, manager.disable
    logging.disable(logging.NOTSET)
    for logger in loggers:
        logger.setLevel(logging.NOTSET)
        logger.propagate = True
        logger.disabled = False
    root.setLevel(ALL_LEVELS)
    root.addHandler(handler)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        root.setLevel(saved_root)
        logging.disable(saved_disable)
        for logger, level, propagate, disabled in saved:
            logger.setLevel(level)
            logger.propagate = propagate
            logger.disabled = disabled


@dataclass
class Tokens:
    """Every token a test used, and the pieces of them that must never be seen."""

    tokens: list[str] = field(default_factory=list)

    def add(self, token: str) -> str:
        self.tokens.append(token)
        return token

    def fresh(self) -> str:
        """A random, unknown token shaped like Amazon's."""
        return self.add("Atza|" + secrets.token_urlsafe(300))

    def pieces(self) -> set[str]:
        found: set[str] = set()
        for token in self.tokens:
            secret = token.partition("|")[2] or token
            middle = len(secret) // 2
            found |= {token, secret, secret[:16], secret[middle - 8 : middle + 8], secret[-16:]}
        return {piece for piece in found if len(piece) >= 16}

    def leaks(self, texts: Iterable[tuple[str, str]]) -> list[str]:
        """``where: piece`` for each text that holds a piece of a token."""
        pieces = self.pieces()
        return [
            f"{where}: ...{piece[:8]}..."
            for where, text in texts
            for piece in pieces
            if piece in text
        ]

    def assert_absent(self, *texts: object) -> None:
        leaks = self.leaks((f"text #{i}", str(text)) for i, text in enumerate(texts))
        assert not leaks, leaks


def assert_no_leak(logs: Capture, tokens: Tokens, capsys: pytest.CaptureFixture[str]) -> None:
    """No captured record nor anything printed holds a token piece."""
    out, err = capsys.readouterr()
    texts = [(f"log {seen.name}", seen.text) for seen in logs.seen]
    leaks = tokens.leaks([*texts, ("stdout", out), ("stderr", err)])
    assert not leaks, f"token text in {len(leaks)} place(s): {leaks[:10]}"
    assert len(tokens.pieces()) >= 4 * len(tokens.tokens)


def serve_emulator(emu: Emulator) -> Any:
    """The emulator under uvicorn with its most verbose logging and its access log."""
    return serve(emu.app, log_level="trace", access_log=True)


# The capture itself -------------------------------------------------------------


def test_capture_and_search_find_a_leak(logs: Capture) -> None:
    tokens = Tokens()
    token = tokens.fresh()
    secret = token.partition("|")[2]
    logging.getLogger("lwa_middleware.selftest").debug("token %s", secret[:20] + "...")
    logging.getLogger("httpx").log(5, "url %s", f"https://x/?access_token={token}")
    logging.getLogger("some.library").info("nothing", extra={"credentials": secret[-30:]})
    try:
        raise RuntimeError(f"bad token {token[:40]}")
    except RuntimeError:
        logging.getLogger("another").exception("failed")
    names = [seen.name for seen in logs.seen]
    leaks = tokens.leaks((seen.name, seen.text) for seen in logs.seen)
    assert names == ["lwa_middleware.selftest", "httpx", "some.library", "another"]
    assert {leak.partition(":")[0] for leak in leaks} == set(names)


# The clients --------------------------------------------------------------------


def run_clients(url: str, emu: Emulator, clock: FakeClock, tokens: Tokens) -> list[object]:
    """Both clients through success, rejections and faults; returns what they produced."""
    produced: list[object] = []
    user, good = emu.mint_for(scopes=["profile", "postal_code"])
    tokens.add(good)
    _, no_scope = emu.mint_for(scopes=["payments:widget"])
    tokens.add(no_scope)
    _, revoked = emu.mint_for()
    tokens.add(revoked)
    emu.revoke(revoked)
    _, expiring = emu.mint_for(lifetime=30)
    tokens.add(expiring)
    unknown = tokens.fresh()
    secret = tokens.fresh().partition("|")[2]
    malformed = [
        "Atza|" + secret[:100] + "\r\nX-Evil: 1" + secret[100:],
        "Atza|" + secret[:100] + " " + secret[100:],
        "Atza%7C" + secret,
    ]
    faults = [("500", 3.0), ("503", 3.0), ("429", 3.0), ("reset", 3.0), ("non_json", 3.0)]
    faults += [("missing_fields", 3.0), ("hang", 0.3)]

    def attempt(call: Callable[[], object]) -> None:
        try:
            produced.append(call())
        except LWAError as error:
            produced.append(error)

    with LWAClient(url, timeout=3.0) as sync:
        info, profile = sync.tokeninfo(good), sync.profile(good)
        assert info.user_id == profile.user_id == user.user_id
        produced.append(Identity.build(info, profile))
        for token in (no_scope, revoked, unknown, *malformed):
            attempt(partial(sync.tokeninfo, token))
            attempt(partial(sync.profile, token))
    for kind, timeout in faults:
        emu.fault(kind)
        with LWAClient(url, timeout=timeout) as sync:
            attempt(partial(sync.tokeninfo, good))
        emu.clear_faults()

    async def async_part() -> None:
        async with AsyncLWAClient(url, timeout=3.0) as client:
            info, profile = await asyncio.gather(client.tokeninfo(good), client.profile(good))
            produced.append(Identity.build(info, profile))
            for token in (no_scope, revoked, unknown, *malformed):
                for call in (client.tokeninfo, client.profile):
                    try:
                        produced.append(await call(token))
                    except LWAError as error:
                        produced.append(error)
        for kind, timeout in faults:
            emu.fault(kind)
            async with AsyncLWAClient(url, timeout=timeout) as client:
                try:
                    produced.append(await client.profile(good))
                except LWAError as error:
                    produced.append(error)
            emu.clear_faults()

    asyncio.run(async_part())
    clock.now += 31
    with LWAClient(url, timeout=3.0) as sync:
        attempt(partial(sync.tokeninfo, expiring))
    return produced


def test_clients_log_no_token(logs: Capture, capsys: pytest.CaptureFixture[str]) -> None:
    tokens = Tokens()
    clock = FakeClock()
    emu = Emulator(clock=clock, hang_seconds=5.0)
    with serve_emulator(emu) as server:
        produced = run_clients(server.url, emu, clock, tokens)
    errors = [item for item in produced if isinstance(item, LWAError)]
    identities = [item for item in produced if isinstance(item, Identity)]
    assert len(identities) == 2
    assert {type(e).__name__ for e in errors} >= {
        "InvalidToken",
        "InvalidRequest",
        "InsufficientScope",
        "LWAUnavailable",
    }
    for item in produced:
        tokens.assert_absent(repr(item), str(item))
    for error in errors:
        tokens.assert_absent(error.description, error.args)
    assert "httpx" in logs.names
    assert any(name.startswith("httpcore.") for name in logs.names)
    assert {"uvicorn.access", "uvicorn.error", "uvicorn.asgi"} <= logs.names
    assert_no_leak(logs, tokens, capsys)


# The middlewares ----------------------------------------------------------------


@dataclass
class Case:
    """One request to a protected app and the status it must get."""

    path: str
    headers: Mapping[str, str]
    status: int


def build_cases(emu: Emulator, tokens: Tokens) -> tuple[list[Case], dict[str, str]]:
    """Requests covering good, bad, missing and scope-lacking tokens (no fault, no clock)."""
    user, good = emu.mint_for(scopes=["profile"])
    tokens.add(good)
    _, zip_only = emu.mint_for(scopes=["postal_code"])
    tokens.add(zip_only)
    _, revoked = emu.mint_for()
    tokens.add(revoked)
    emu.revoke(revoked)
    unknown = tokens.fresh()
    other = tokens.fresh()
    secret = tokens.fresh().partition("|")[2]
    spaced = f"Atza|{secret[:90]} {secret[90:]}"
    crlf = f"Atza%7C{secret[:90]}%0D%0AX-Evil:%201{secret[90:]}"
    cases = [
        Case("/", {"authorization": f"Bearer {good}"}, 200),
        Case("/", {"x-amz-access-token": good}, 200),
        Case("/", {"authorization": f"bearer {good}"}, 200),
        Case("/", {"cookie": f"theme=dark; lwa_token={good}"}, 200),
        Case("/", {"x-amz-access-token": good.replace("|", "%7C")}, 200),
        Case("/zip", {"authorization": f"Bearer {good}"}, 401),
        Case("/zip", {"authorization": f"Bearer {zip_only}"}, 200),
        Case("/", {"authorization": f"Bearer {unknown}"}, 400),
        Case("/", {"authorization": f"Bearer {unknown}"}, 400),  # the cached rejection
        Case("/", {"authorization": f"Bearer {revoked}"}, 400),
        Case("/", {"cookie": f"lwa_token={other}"}, 400),
        Case("/", {"authorization": f"Bearer {spaced}"}, 400),
        Case("/", {"x-amz-access-token": crlf}, 400),
        Case("/", {"x-amz-access-token": f"Atza%257C{secret}"}, 400),
        Case("/", {"authorization": f"Bearer {good}", "x-amz-access-token": good}, 400),
        Case("/", {"authorization": f"Basic {good}"}, 400),
        Case("/", {}, 400),
        Case("/public", {}, 200),
        Case("/public", {"authorization": f"Bearer {unknown}"}, 400),
        Case("/public", {"authorization": f"Bearer {good}"}, 200),
    ]
    return cases, {"user_id": user.user_id, "good": good}


def exercise(url: str, emu: Emulator, clock: FakeClock, tokens: Tokens) -> list[httpx.Response]:
    """Every case, then expiry and LWA faults; checks each status; returns the responses."""
    cases, facts = build_cases(emu, tokens)
    _, expiring = emu.mint_for(lifetime=60)
    tokens.add(expiring)
    fault_tokens = {kind: tokens.add(emu.mint_for()[1]) for kind in ("500", "reset", "hang")}
    responses: list[httpx.Response] = []
    with httpx.Client(base_url=url, timeout=10.0) as http:

        def get(path: str, headers: Mapping[str, str], status: int) -> httpx.Response:
            response = http.get(path, headers=dict(headers))
            assert response.status_code == status, (path, sorted(headers), response.text)
            responses.append(response)
            return response

        for case in cases:
            get(case.path, case.headers, case.status)
        body = get("/", {"authorization": f"Bearer {facts['good']}"}, 200).json()
        assert body["user_id"] == facts["user_id"]
        get("/", {"authorization": f"Bearer {expiring}"}, 200)
        clock.now += 61
        get("/", {"authorization": f"Bearer {expiring}"}, 400)
        for kind, token in fault_tokens.items():
            emu.fault(kind)
            get("/", {"authorization": f"Bearer {token}"}, 500)
            emu.clear_faults()
            get("/", {"authorization": f"Bearer {token}"}, 200)
    return responses


def check_responses(responses: list[httpx.Response], tokens: Tokens) -> None:
    """No token in any body or header we answered with; identities were rendered."""
    for response in responses:
        tokens.assert_absent(response.text, response.headers.multi_items())
        if response.status_code != 200:
            assert response.json()["error"] in {
                "invalid_request",
                "invalid_token",
                "insufficient_scope",
                "ServerError",
            }
    reprs = [r.json()["identity"] for r in responses if r.status_code == 200]
    assert any(text.startswith("Identity(") for text in reprs)


def check_cache(cache: MemoryCache[Identity], api_base_url: str, tokens: Tokens) -> None:
    """Keys are SHA-256 digests; no key or entry holds a token."""
    entries = dict(cache._data)  # the private map: the test must see every key
    assert entries
    good = [t for t in tokens.tokens if cache_key(api_base_url, t) in entries]
    assert good, "the cache holds none of the test's tokens under their hashed key"
    for key, entry in entries.items():
        assert isinstance(key, bytes)
        assert len(key) == 32
        for token in tokens.tokens:
            assert token.encode() not in key
        tokens.assert_absent(repr(entry), key.hex())


async def whoami(request: Request) -> JSONResponse:
    """The ASGI app behind the middleware: who is calling, as reprs."""
    identity = request.scope.get("lwa")
    return JSONResponse(
        {
            "user_id": identity.user_id if identity else None,
            "identity": repr(identity),
            "user": repr(request.user),
            "scopes": sorted(request.auth.scopes),
        }
    )


def middleware_options(emu: Emulator, emulator_url: str, clock: FakeClock) -> dict[str, Any]:
    """The options both shells run with (short timeout for the ``hang`` fault)."""
    return {
        "client_ids": [emu.client_id],
        "api_base_url": emulator_url,
        "optional": ["/public"],
        "require_scopes": {"/zip": "postal_code"},
        "timeout": 0.5,
        "clock": clock,
    }


def test_asgi_middleware_logs_no_token(logs: Capture, capsys: pytest.CaptureFixture[str]) -> None:
    tokens = Tokens()
    clock = FakeClock()
    emu = Emulator(clock=clock, hang_seconds=5.0)
    routes = [Route(path, whoami) for path in ("/", "/zip", "/public")]
    with serve_emulator(emu) as lwa:
        middleware = LWAMiddleware(
            Starlette(routes=routes), **middleware_options(emu, lwa.url, clock)
        )
        with serve(middleware, lifespan="on", log_level="trace", access_log=True) as app:
            responses = exercise(app.url, emu, clock, tokens)
    check_responses(responses, tokens)
    check_cache(middleware.verifier.authority.cache, lwa.url, tokens)
    tokens.assert_absent(repr(middleware.settings), repr(middleware.verifier.authority.cache))
    assert {"lwa_middleware", "httpx", "uvicorn.access", "uvicorn.asgi"} <= logs.names
    assert any(name.startswith("httpcore.") for name in logs.names)
    assert_no_leak(logs, tokens, capsys)


def whoami_wsgi(environ: WSGIEnvironment, start_response: StartResponse) -> list[bytes]:
    """The WSGI app behind the middleware: who is calling, as reprs."""
    identity = environ.get("lwa")
    body = json.dumps(
        {
            "user_id": identity.user_id if identity else None,
            "identity": repr(identity),
            "remote_user": environ.get("REMOTE_USER"),
        }
    ).encode()
    start_response("200 OK", [("content-type", "application/json")])
    return [body]


def test_wsgi_middleware_logs_no_token(logs: Capture, capsys: pytest.CaptureFixture[str]) -> None:
    tokens = Tokens()
    clock = FakeClock()
    emu = Emulator(clock=clock, hang_seconds=5.0)
    with serve_emulator(emu) as lwa:
        middleware = LWAWSGIMiddleware(whoami_wsgi, **middleware_options(emu, lwa.url, clock))
        try:
            with serve_wsgi(middleware) as app:
                responses = exercise(app.url, emu, clock, tokens)
        finally:
            middleware.close()
    check_responses(responses, tokens)
    check_cache(middleware.verifier.authority.cache, lwa.url, tokens)
    assert {"lwa_middleware", "httpx", "uvicorn.access"} <= logs.names
    assert_no_leak(logs, tokens, capsys)


# Reprs, messages and keys without any server ------------------------------------


def test_settings_and_models_reprs_hold_no_secret() -> None:
    tokens = Tokens()
    token = tokens.fresh()
    secret_key = "cookie-signing-" + secrets.token_urlsafe(24)
    settings = LWASettings(client_ids=("amzn1.application-oa2-client.x",), secret_key=secret_key)
    assert secret_key not in repr(settings)
    assert secret_key not in str(settings)
    key = cache_key(settings.api_base_url, token)
    assert len(key) == 32
    assert token.encode() not in key
    tokens.assert_absent(repr(settings), key, key.hex(), repr(key))
