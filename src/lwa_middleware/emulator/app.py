"""Starlette app emulating Login with Amazon, and the ``Emulator`` facade.

Layer: ``emulator`` (stands on ``core`` alone; see ``ARCHITECTURE.md``).

``build_app(state)`` serves Amazon's ``GET /auth/o2/tokeninfo`` and
``GET /user/profile`` as documented (bodies, errors, ``x-amzn-RequestId``,
``application/json;charset=UTF-8``), the authorization-code grant of
:mod:`.oauth_endpoints` (``GET /ap/oa``, ``POST /ap/oa/decision``,
``POST /auth/o2/token``), code-based linking of :mod:`.codepair_endpoints`
(``POST /auth/o2/create/codepair``, ``GET``/``POST /activate``, the ``device_code``
grant), applies injected latency and faults (to the token and code pair endpoints
too), and mounts the JSON control endpoints of :mod:`.controls` under ``/_emulator/``.
Paths under ``/auth/o2/`` are matched in any case, as LWA serves them (``/auth/O2/token``,
Amazon's SDKs' spelling), and an unknown one (or a wrong method) is answered with LWA's
JSON error (``invalid_request``, 404 or 405), never a bare text page.
``Emulator`` is the state plus its app, and can serve itself on a local port.

About the ``reset`` fault: under uvicorn the emulator aborts the TCP
connection, so the client sees a disconnect without any response. Under a
server whose transport it cannot reach (e.g. ``httpx.ASGITransport``) it raises
``EmulatedConnectionReset`` instead: in-process clients get that exception,
other servers usually answer 500 ``text/plain``.

About the ``trickle`` faults: the answer is the one the endpoint would give (a valid
token's 200, or LWA's error), sent one byte every ``trickle_interval`` seconds, so a client
whose timeouts apply per socket read never times out. ``trickle_body`` sends the status
line and headers at once (with a ``Content-Length``) and trickles the body through ASGI,
under any server. ``trickle`` trickles the status line and headers too: ASGI cannot, so
under uvicorn it writes the raw HTTP/1.1 answer (``Connection: close``) to the connection's
transport and closes it after the last byte; under a server whose transport it cannot
reach it falls back to ``trickle_body``. Either stops as soon as the client goes away.

"""

from __future__ import annotations

import http
import json
import uuid
from collections.abc import Awaitable, Callable, Mapping
from functools import cached_property
from typing import Any, TypeVar

import anyio
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from lwa_middleware.emulator.accounts import TOKEN_PREFIX, ValidToken
from lwa_middleware.emulator.codepair import ACTIVATE_PATH, CODEPAIR_PATH
from lwa_middleware.emulator.codepair_endpoints import CodePairEndpoints, verification_uri
from lwa_middleware.emulator.controls import CONTROL_ERROR_HANDLERS, ControlEndpoints
from lwa_middleware.emulator.faults import CODEPAIR_ENDPOINT, TOKEN_ENDPOINT, FaultKind, RequestPlan
from lwa_middleware.emulator.oauth import grant_type_of
from lwa_middleware.emulator.oauth_endpoints import DECISION_PATH, OAuthEndpoints
from lwa_middleware.emulator.server import ServerHandle, serve
from lwa_middleware.emulator.state import EmulatorState

JSON_CONTENT_TYPE = "application/json;charset=UTF-8"
REQUEST_ID_HEADER = "x-amzn-RequestId"
ISSUER = "https://www.amazon.com"
LWA_PATH_PREFIX = "/auth/o2/"
PROFILE_SCOPES = frozenset({"profile", "profile:user_id", "postal_code"})

_MISSING = "The request is missing a required parameter : access_token"
_MULTIPLE = "The request has more than one access token : access_token"
_INVALID = "The access token provided is expired, revoked, malformed, or invalid for other reasons."
_NO_SCOPE = "The access token provided does not have the scope required for this resource."
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")
_NOT_FOUND = "The requested resource does not exist."
_NOT_ALLOWED = "The HTTP method is not supported by this resource."
_RESET_DISCONNECT_WAIT = 1.0
_TRICKLES = frozenset({FaultKind.TRICKLE, FaultKind.TRICKLE_BODY})


class EmulatedConnectionReset(ConnectionResetError):
    """Raised by the ``reset`` fault when the server's transport cannot be aborted."""


class LwaError(Exception):
    """An error answered with Amazon's documented JSON error body."""

    def __init__(self, status: int, error: str, description: str) -> None:
        super().__init__(f"{status} {error}: {description}")
        self.status = status
        self.error = error
        self.description = description

    def response(self, request_id: str, headers: Mapping[str, str] | None = None) -> Response:
        """Return the error as an LWA JSON response."""
        body = {"error": self.error, "error_description": self.description}
        return lwa_response(self.status, {**body, "request_id": request_id}, request_id, headers)


def lwa_response(
    status: int,
    body: Mapping[str, object],
    request_id: str,
    headers: Mapping[str, str] | None = None,
) -> Response:
    """Return a JSON response shaped like Amazon's (content type and request id header)."""
    content = json.dumps(body, separators=(",", ":")).encode()
    all_headers = {REQUEST_ID_HEADER: request_id, **(headers or {})}
    return Response(content, status, all_headers, media_type=JSON_CONTENT_TYPE)


# Token handling ---------------------------------------------------------------


def extract_token(request: Request) -> str:
    """Return the access token, given in exactly one place, or raise ``LwaError``.

    Places: ``x-amz-access-token`` header, ``Authorization: Bearer`` header,
    ``access_token`` query parameter (already URL-decoded by Starlette).
    """
    found = [value.strip() for value in request.headers.getlist("x-amz-access-token")]
    for value in request.headers.getlist("authorization"):
        scheme, _, credentials = value.strip().partition(" ")
        if scheme.lower() == "bearer":
            found.append(credentials.strip())
    found.extend(request.query_params.getlist("access_token"))
    tokens = [token for token in found if token]
    if not tokens:
        raise LwaError(400, "invalid_request", _MISSING)
    if len(tokens) > 1:
        raise LwaError(400, "invalid_request", _MULTIPLE)
    return tokens[0]


def tokeninfo_body(valid: ValidToken) -> dict[str, object]:
    """Return the token-info success body."""
    return {
        "iss": ISSUER,
        "user_id": valid.user.user_id,
        "aud": valid.token.client_id,
        "app_id": valid.token.app_id,
        "exp": valid.expires_in,
        "iat": int(valid.token.issued_at),
    }


def profile_body(valid: ValidToken) -> dict[str, object]:
    """Return the profile success body for the token's scopes, or raise ``LwaError``."""
    scopes = set(valid.token.scopes)
    if not scopes & PROFILE_SCOPES:
        raise LwaError(401, "insufficient_scope", _NO_SCOPE)
    body: dict[str, object] = {"user_id": valid.user.user_id}
    if "profile" in scopes:
        body["name"] = valid.user.name
        body["email"] = valid.user.email
    if "postal_code" in scopes:
        body["postal_code"] = valid.user.postal_code
    return body


# Delays and faults ------------------------------------------------------------


async def until_disconnected(receive: Receive, work: Callable[[], Awaitable[None]]) -> None:
    """Run ``work()``, cancelling it as soon as the client disconnects."""

    async def watch(scope: anyio.CancelScope) -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        scope.cancel()

    async with anyio.create_task_group() as group:
        group.start_soon(watch, group.cancel_scope)
        await work()
        group.cancel_scope.cancel()


async def sleep_unless_disconnected(receive: Receive, seconds: float) -> None:
    """Sleep ``seconds``, returning early if the client disconnects meanwhile."""
    await until_disconnected(receive, lambda: anyio.sleep(seconds))


def server_transport(receive: Receive) -> Any | None:
    """The asyncio transport of the client's connection under uvicorn, else ``None``."""
    owner = getattr(receive, "__self__", None)  # uvicorn's request-response cycle
    transport = getattr(owner, "transport", None)
    needed = ("abort", "close", "is_closing", "write")
    if all(callable(getattr(transport, name, None)) for name in needed):
        return transport
    return None


async def wait_for_disconnect(receive: Receive) -> None:
    """Wait (a second at most) until the server has seen the client go, so it drops any
    response the app returns."""
    with anyio.move_on_after(_RESET_DISCONNECT_WAIT):
        while (await receive())["type"] != "http.disconnect":
            pass


async def reset_connection(request: Request) -> Response:
    """Abort the client's TCP connection (uvicorn), else raise ``EmulatedConnectionReset``."""
    transport = server_transport(request.receive)
    if transport is None:
        raise EmulatedConnectionReset("LWA emulator: injected connection reset")
    transport.abort()
    await wait_for_disconnect(request.receive)
    return Response(status_code=500)


def raw_http_response(status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> bytes:
    """The bytes of an HTTP/1.1 answer that closes the connection (no keep-alive)."""
    lines = [f"HTTP/1.1 {status} {http.HTTPStatus(status).phrase}".encode("ascii")]
    lines.extend(name + b": " + value for name, value in headers if name.lower() != b"connection")
    lines.extend((b"connection: close", b"", b""))
    return b"\r\n".join(lines) + body


class TrickledResponse(Response):
    """``answer``, sent one byte every ``interval`` seconds (see the module's docstring).

    ``headers_too`` trickles the status line and headers as well, when the server's
    transport is reachable (uvicorn); otherwise only the body is trickled.
    """

    def __init__(self, answer: Response, interval: float, *, headers_too: bool) -> None:
        super().__init__(bytes(answer.body), answer.status_code)
        self.raw_headers = list(answer.raw_headers)  # Content-Length and Content-Type kept
        self.interval = interval
        self.headers_too = headers_too

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        transport = server_transport(receive) if self.headers_too else None
        if transport is None:
            await self._trickle_body(receive, send)
        else:
            await self._trickle_raw(transport, receive)

    async def _trickle_raw(self, transport: Any, receive: Receive) -> None:
        data = raw_http_response(self.status_code, self.raw_headers, bytes(self.body))
        for index in range(len(data)):
            if transport.is_closing():  # the client went away
                break
            if index:
                await anyio.sleep(self.interval)
            transport.write(data[index : index + 1])
        transport.close()  # after the buffered bytes are sent
        await wait_for_disconnect(receive)

    async def _trickle_body(self, receive: Receive, send: Send) -> None:
        await send(
            {"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers}
        )
        body = bytes(self.body)

        async def trickle() -> None:
            for index in range(len(body)):
                if index:
                    await anyio.sleep(self.interval)
                last = index == len(body) - 1
                chunk = body[index : index + 1]
                await send({"type": "http.response.body", "body": chunk, "more_body": not last})
            if not body:
                await send({"type": "http.response.body", "body": b"", "more_body": False})

        await until_disconnected(receive, trickle)


def fault_response(kind: FaultKind, request_id: str) -> Response:
    """Return the canned response of a fault that answers (not hang or reset)."""
    if kind is FaultKind.SERVER_ERROR:
        return LwaError(500, "ServerError", "The server encountered a runtime error.").response(
            request_id
        )
    if kind is FaultKind.UNAVAILABLE:
        return LwaError(503, "ServiceUnavailable", "Service temporarily unavailable.").response(
            request_id
        )
    if kind is FaultKind.THROTTLED:
        error = LwaError(429, "TooManyRequests", "Rate exceeded.")
        return error.response(request_id, {"Retry-After": "1"})
    if kind is FaultKind.NON_JSON:
        return Response(
            "<html>oops</html>", 200, {REQUEST_ID_HEADER: request_id}, media_type="text/html"
        )
    if kind is FaultKind.MISSING_FIELDS:
        return lwa_response(200, {}, request_id)
    raise ValueError(f"fault {kind.value!r} has no canned response")


async def planned(
    request: Request, plan: RequestPlan, request_id: str, respond: Callable[[], Response]
) -> Response:
    """Apply ``plan`` (latency, then a fault) to a request whose answer is ``respond()``."""
    if plan.latency > 0:
        await sleep_unless_disconnected(request.receive, plan.latency)
    if plan.fault is FaultKind.HANG:
        await sleep_unless_disconnected(request.receive, plan.hang_seconds)
    elif plan.fault is FaultKind.RESET:
        return await reset_connection(request)
    elif plan.fault is not None and plan.fault not in _TRICKLES:
        return fault_response(plan.fault, request_id)
    response = respond()
    if plan.fault in _TRICKLES:
        headers_too = plan.fault is FaultKind.TRICKLE
        return TrickledResponse(response, plan.trickle_interval, headers_too=headers_too)
    return response


# Endpoints --------------------------------------------------------------------


class LwaEndpoints:
    """The emulated Amazon API endpoints, bound to one state."""

    def __init__(self, state: EmulatorState) -> None:
        self._state = state
        self._oauth = OAuthEndpoints(state)
        self._codepair = CodePairEndpoints(state)

    async def tokeninfo(self, request: Request) -> Response:
        """``GET /auth/o2/tokeninfo``."""
        return await self._handle(request, "tokeninfo", tokeninfo_body)

    async def profile(self, request: Request) -> Response:
        """``GET /user/profile``."""
        return await self._handle(request, "profile", profile_body)

    async def token(self, request: Request) -> Response:
        """``POST /auth/o2/token`` (form): the authorization-code and refresh grants."""
        request_id = str(uuid.uuid4())
        content_type, body = request.headers.get("content-type"), await request.body()
        plan = self._state.begin_request(TOKEN_ENDPOINT, grant_type_of(content_type, body))

        def respond() -> Response:
            authorization = request.headers.get("authorization")
            answer = self._oauth.token_answer(content_type, body, authorization)
            return lwa_response(answer.status, answer.body, request_id, answer.headers)

        return await planned(request, plan, request_id, respond)

    async def codepair(self, request: Request) -> Response:
        """``POST /auth/o2/create/codepair`` (form): a code pair for code-based linking."""
        request_id = str(uuid.uuid4())
        content_type, body = request.headers.get("content-type"), await request.body()
        plan = self._state.begin_request(CODEPAIR_ENDPOINT)

        def respond() -> Response:
            uri = verification_uri(request)
            answer = self._codepair.codepair_answer(content_type, body, uri)
            return lwa_response(answer.status, answer.body, request_id, answer.headers)

        return await planned(request, plan, request_id, respond)

    async def _handle(
        self,
        request: Request,
        endpoint: str,
        answer: Callable[[ValidToken], dict[str, object]],
    ) -> Response:
        request_id = str(uuid.uuid4())
        plan = self._state.begin_request(endpoint)
        return await planned(
            request, plan, request_id, lambda: self._answer(request, request_id, answer)
        )

    def _answer(
        self,
        request: Request,
        request_id: str,
        answer: Callable[[ValidToken], dict[str, object]],
    ) -> Response:
        try:
            token = extract_token(request)
            valid = self._state.validate(token) if token.startswith(TOKEN_PREFIX) else None
            if valid is None:
                raise LwaError(400, "invalid_token", _INVALID)
            return lwa_response(200, answer(valid), request_id)
        except LwaError as error:
            return error.response(request_id)


# Paths ----------------------------------------------------------------------


def split_root(scope: Scope) -> tuple[str, str]:
    """``(root path, route path)`` of a request: the path below the app's mount point."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    if root and path.startswith(root) and (len(path) == len(root) or path[len(root)] == "/"):
        return root, path[len(root) :]
    return "", path


def ascii_lower(text: str) -> str:
    """``text`` with ``A``-``Z`` made lower case, and nothing else (``str.lower`` would also
    fold other letters, the Kelvin sign into ``k``)."""
    return text.translate(_ASCII_LOWER)


def is_lwa_path(route_path: str) -> bool:
    """Whether a route path is under ``/auth/o2/`` in any case (LWA's token, token-info and
    code pair endpoints: LWA serves ``/auth/O2/token`` as ``/auth/o2/token``)."""
    lowered = ascii_lower(route_path)
    return lowered == LWA_PATH_PREFIX.rstrip("/") or lowered.startswith(LWA_PATH_PREFIX)


class CaseInsensitiveLwaPaths:
    """ASGI middleware: a path under ``/auth/o2/`` is routed in lower case, whatever case it
    came in (``/auth/O2/token``, ``/AUTH/o2/create/codepair``), as LWA serves them."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            root, route = split_root(scope)
            lowered = ascii_lower(route)
            if lowered != route and is_lwa_path(route):
                scope = {**scope, "path": root + lowered}
        await self.app(scope, receive, send)


async def lwa_http_error(request: Request, exc: Exception) -> Response:
    """A 404 or 405 from the router: under ``/auth/o2/`` LWA's JSON error
    (``invalid_request``, ``x-amzn-RequestId``), elsewhere Starlette's plain text."""
    assert isinstance(exc, HTTPException)
    if not is_lwa_path(split_root(request.scope)[1]):
        return PlainTextResponse(exc.detail, exc.status_code, headers=exc.headers)
    description = _NOT_FOUND if exc.status_code == 404 else _NOT_ALLOWED
    error = LwaError(exc.status_code, "invalid_request", description)
    return error.response(str(uuid.uuid4()), exc.headers)


def build_app(state: EmulatorState) -> Starlette:
    """Return the emulator's Starlette app, serving ``state``."""
    lwa = LwaEndpoints(state)
    oauth = OAuthEndpoints(state)
    codepair = CodePairEndpoints(state)
    control = ControlEndpoints(state)
    routes = [
        Route("/auth/o2/tokeninfo", lwa.tokeninfo, methods=["GET"]),
        Route("/user/profile", lwa.profile, methods=["GET"]),
        Route("/auth/o2/token", lwa.token, methods=["POST"]),
        Route("/ap/oa", oauth.authorize, methods=["GET"]),
        Route(DECISION_PATH, oauth.decision, methods=["POST"]),
        Route(CODEPAIR_PATH, lwa.codepair, methods=["POST"]),
        Route(ACTIVATE_PATH, codepair.page, methods=["GET"]),
        Route(ACTIVATE_PATH, codepair.decision, methods=["POST"]),
        Route("/_emulator", control.info, methods=["GET"]),
        Route("/_emulator/users", control.add_user, methods=["POST"]),
        Route("/_emulator/tokens", control.mint, methods=["POST"]),
        Route("/_emulator/revoke", control.revoke, methods=["POST"]),
        Route("/_emulator/expire", control.expire, methods=["POST"]),
        Route("/_emulator/clients", control.clients, methods=["GET"]),
        Route("/_emulator/clients", control.register_client, methods=["POST"]),
        Route("/_emulator/authorize", control.authorize, methods=["POST"]),
        Route("/_emulator/codepair", control.code_pairs, methods=["GET"]),
        Route("/_emulator/codepair/approve", control.approve_code_pair, methods=["POST"]),
        Route("/_emulator/codepair/deny", control.deny_code_pair, methods=["POST"]),
        Route("/_emulator/codepair/settings", control.code_pair_settings, methods=["POST"]),
        Route("/_emulator/faults", control.add_fault, methods=["POST"]),
        Route("/_emulator/faults", control.clear_faults, methods=["DELETE"]),
        Route("/_emulator/latency", control.set_latency, methods=["POST"]),
        Route("/_emulator/calls", control.calls, methods=["GET"]),
        Route("/_emulator/calls", control.reset_counts, methods=["DELETE"]),
        Route("/_emulator/calls/token", control.token_calls, methods=["GET"]),
        Route("/_emulator/reset", control.reset, methods=["POST"]),
    ]
    handlers = {**CONTROL_ERROR_HANDLERS, 404: lwa_http_error, 405: lwa_http_error}
    return Starlette(
        routes=routes,
        middleware=[Middleware(CaseInsensitiveLwaPaths)],
        exception_handlers=handlers,
    )


_E = TypeVar("_E", bound="Emulator")


class Emulator(EmulatorState):
    """An in-process Login with Amazon emulator: state, ASGI app, optional server.

    ``emu.app`` is the Starlette app; serve it yourself, or call ``start()``
    (or use ``with Emulator() as emu:``) and read ``emu.url``.
    """

    _server: ServerHandle | None = None

    @cached_property
    def app(self) -> Starlette:
        """The Starlette app serving this emulator's state (built once)."""
        return build_app(self)

    def start(self, host: str = "127.0.0.1", port: int = 0) -> ServerHandle:
        """Serve ``app`` with uvicorn in a background thread; return the handle."""
        if self._server is not None:
            raise RuntimeError(f"emulator already serving at {self._server.url}")
        self._server = serve(self.app, host, port)
        return self._server

    def stop(self) -> None:
        """Stop the server started by ``start()``, if any."""
        server, self._server = self._server, None
        if server is not None:
            server.stop()

    @property
    def url(self) -> str:
        """Base URL of the running server, e.g. ``http://127.0.0.1:54321``."""
        if self._server is None:
            raise RuntimeError("emulator is not serving: call start() first")
        return self._server.url

    def public_url(self) -> str:
        """``url`` while ``start()`` serves the emulator, else ``""`` (the
        ``verification_uri`` of ``create_code_pair`` is then the bare path)."""
        return "" if self._server is None else self._server.url

    def __enter__(self: _E) -> _E:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
