"""The emulator's JSON control endpoints under ``/_emulator/``.

Layer: ``emulator`` (stands on ``core`` alone; see ``ARCHITECTURE.md``).

They drive :class:`~lwa_middleware.emulator.state.EmulatorState` over HTTP for users of
``lwa-middleware emulator`` running out of process: add users, mint access and refresh
tokens, revoke and expire tokens, register OAuth clients, approve or deny an authorization
request without the consent page, approve or deny a code pair without the ``/activate``
page and set the device interval and pair lifetime, inject faults and latency, read and
reset call counts. Control requests are not counted.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from lwa_middleware.emulator.codepair import (
    CodePairError,
    check_code_pair_lifetime,
    check_device_interval,
)
from lwa_middleware.emulator.faults import ANY_ENDPOINT, check_interval
from lwa_middleware.emulator.oauth import DEFAULT_REDIRECT_URI, AuthorizationError
from lwa_middleware.emulator.state import EmulatorState


class ControlError(Exception):
    """A bad request to a ``/_emulator/`` control endpoint."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _control_error_response(request: Request, exc: Exception) -> Response:
    status = exc.status if isinstance(exc, ControlError) else 500
    error = "not_found" if status == 404 else "bad_request"
    return JSONResponse({"error": error, "error_description": str(exc)}, status)


async def _json_object(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise ControlError(400, "body is not valid JSON") from exc
    if not isinstance(data, dict):
        raise ControlError(400, "body must be a JSON object")
    return data


def _str_field(body: Mapping[str, Any], key: str) -> str | None:
    value = body.get(key)
    if value is None or isinstance(value, str):
        return value
    raise ControlError(400, f"{key!r} must be a string")


def _number_field(body: Mapping[str, Any], key: str) -> float | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    raise ControlError(400, f"{key!r} must be a number")


def _int_field(body: Mapping[str, Any], key: str) -> int | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise ControlError(400, f"{key!r} must be an integer or null")


def _bool_field(body: Mapping[str, Any], key: str) -> bool | None:
    value = body.get(key)
    if value is None or isinstance(value, bool):
        return value
    raise ControlError(400, f"{key!r} must be true or false")


def _strings_field(body: Mapping[str, Any], key: str) -> str | list[str] | None:
    value = body.get(key)
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return value
    raise ControlError(400, f"{key!r} must be a string or a list of strings")


def _missing(exc: KeyError) -> str:
    return str(exc.args[0]) if exc.args else "not found"


def _user_fields(body: Mapping[str, Any]) -> dict[str, str]:
    keys = ("name", "email", "postal_code", "user_id")
    return {key: value for key in keys if (value := _str_field(body, key)) is not None}


class ControlEndpoints:
    """JSON endpoints under ``/_emulator/`` driving the state over HTTP (not counted)."""

    def __init__(self, state: EmulatorState) -> None:
        self._state = state

    async def info(self, request: Request) -> Response:
        """``GET /_emulator``: the client and app ids tokens are issued to."""
        return JSONResponse({"client_id": self._state.client_id, "app_id": self._state.app_id})

    async def add_user(self, request: Request) -> Response:
        """``POST /_emulator/users``: body fields as ``add_user``; returns the user."""
        user = self._state.add_user(**_user_fields(await _json_object(request)))
        return JSONResponse(user.to_json())

    async def mint(self, request: Request) -> Response:
        """``POST /_emulator/tokens``: mint for ``user_id``, or for a new user.

        With ``"refresh_token": true`` the answer also carries a refresh token for that
        user, ``client_id`` (a registered client, default the emulator's; 404 otherwise)
        and ``scopes``, as ``mint_refresh_token`` (the access token is then issued to that
        client too, its ``app_id``, and belongs to the refresh token's family).
        """
        body = await _json_object(request)
        fields = _user_fields(body)
        with_refresh = _bool_field(body, "refresh_token") or False
        user_id = fields.get("user_id")
        if user_id is not None and self._state.get_user(user_id) is None:
            raise ControlError(404, f"unknown user id: {user_id}")
        scopes = body.get("scopes", ["profile"])
        if not isinstance(scopes, (str, list)) or not all(isinstance(s, str) for s in scopes):
            raise ControlError(400, "'scopes' must be a list of strings")
        lifetime = _number_field(body, "lifetime")
        client_id, app_id = _str_field(body, "client_id"), _str_field(body, "app_id")
        if with_refresh and (lifetime is not None or app_id is not None):
            raise ControlError(
                400, "'lifetime' and 'app_id' cannot be set with 'refresh_token' (the client's)"
            )
        if with_refresh and self._state.get_client(client_id) is None:
            raise ControlError(404, f"unknown client id: {client_id}")
        lifetime = 3600 if lifetime is None else lifetime
        if user_id is None:
            user_id = self._state.add_user(**fields).user_id
        answer: dict[str, object]
        try:
            if with_refresh:
                answer = self._state.oauth.mint_tokens(user_id, scopes, client_id)
            else:
                token = self._state.mint(user_id, scopes, lifetime, client_id, app_id)
                expires_in = int(lifetime)
                answer = {"access_token": token, "token_type": "bearer", "expires_in": expires_in}
        except KeyError as exc:
            raise ControlError(404, _missing(exc)) from exc
        except ValueError as exc:
            raise ControlError(400, str(exc)) from exc
        return JSONResponse({**answer, "user_id": user_id})

    async def revoke(self, request: Request) -> Response:
        """``POST /_emulator/revoke`` ``{"token": ...}``."""
        token = _str_field(await _json_object(request), "token")
        if token is None:
            raise ControlError(400, "'token' is required")
        return JSONResponse({"revoked": self._state.revoke(token)})

    async def expire(self, request: Request) -> Response:
        """``POST /_emulator/expire`` ``{"token": ...}``: the access token expires now."""
        token = _str_field(await _json_object(request), "token")
        if token is None:
            raise ControlError(400, "'token' is required")
        return JSONResponse({"expired": self._state.expire(token)})

    async def clients(self, request: Request) -> Response:
        """``GET /_emulator/clients``: the registered OAuth clients (secrets included)."""
        return JSONResponse({"clients": [c.to_json() for c in self._state.oauth.clients]})

    async def register_client(self, request: Request) -> Response:
        """``POST /_emulator/clients`` ``{"client_id", "client_secret", "app_id",
        "redirect_uris", "allow_loopback", "service_scopes"}`` (all optional): as
        ``register_client``."""
        body = await _json_object(request)
        try:
            client = self._state.register_client(
                _str_field(body, "client_id"),
                client_secret=_str_field(body, "client_secret"),
                app_id=_str_field(body, "app_id"),
                redirect_uris=_strings_field(body, "redirect_uris"),
                allow_loopback=_bool_field(body, "allow_loopback"),
                service_scopes=_strings_field(body, "service_scopes"),
            )
        except ValueError as exc:
            raise ControlError(400, str(exc)) from exc
        return JSONResponse(client.to_json())

    async def authorize(self, request: Request) -> Response:
        """``POST /_emulator/authorize``: answer an authorization request as the consent
        page would, without it.

        Body: ``redirect_uri`` (default ``http://127.0.0.1/callback``), ``client_id``,
        ``scope`` (string or list, default ``profile``), ``state``, ``code_challenge``,
        ``code_challenge_method``, ``user_id`` (default: the first user), ``decision``
        (``"approve"``, the default, or ``"deny"``). Answers ``{"code", "redirect"}``
        (``code`` null when denied); a bad request is 400 with the OAuth error.
        """
        body = await _json_object(request)
        decision = _str_field(body, "decision") or "approve"
        if decision not in ("approve", "deny"):
            raise ControlError(400, "'decision' must be 'approve' or 'deny'")
        scope = _strings_field(body, "scope") or "profile"
        params = (
            _str_field(body, "client_id"),
            _str_field(body, "redirect_uri") or DEFAULT_REDIRECT_URI,
            scope,
            _str_field(body, "state"),
            _str_field(body, "code_challenge"),
            _str_field(body, "code_challenge_method"),
        )
        user_id = _str_field(body, "user_id")
        try:
            checked = self._state.authorization_request(*params)
            if decision == "deny":
                return JSONResponse({"code": None, "redirect": checked.denied()})
            user = self._state.consenting_user(user_id)
        except AuthorizationError as exc:
            raise ControlError(400, str(exc)) from exc
        except KeyError as exc:
            raise ControlError(404, f"unknown user id: {user_id}") from exc
        code = self._state.oauth.issue_code(checked, user.user_id)
        return JSONResponse({"code": code, "redirect": checked.approved(code, checked.scopes)})

    def _code_pair_settings(self) -> dict[str, int]:
        return {"interval": self._state.device_interval, "lifetime": self._state.code_pair_lifetime}

    async def code_pairs(self, request: Request) -> Response:
        """``GET /_emulator/codepair``: the settings and every code pair (no device code):
        ``{"interval", "lifetime", "code_pairs": [...]}``."""
        pairs = [info.to_json() for info in self._state.code_pairs.values()]
        return JSONResponse({**self._code_pair_settings(), "code_pairs": pairs})

    async def approve_code_pair(self, request: Request) -> Response:
        """``POST /_emulator/codepair/approve`` ``{"user_code", "user_id", "scope"}``
        (``user_id`` default: the first user; ``scope``, a string or a list, default: every
        requested scope): as ``approve_code_pair``; answers the pair. 404 for an unknown code
        or user, 400 for a pair no longer pending or a scope not requested."""
        body = await _json_object(request)
        user_code = _str_field(body, "user_code")
        if user_code is None:
            raise ControlError(400, "'user_code' is required")
        user_id, scope = _str_field(body, "user_id"), _strings_field(body, "scope")
        try:
            self._state.approve_code_pair(user_code, user_id, scope)
        except KeyError as exc:
            raise ControlError(404, _missing(exc)) from exc
        except ValueError as exc:  # CodePairError included
            raise ControlError(400, str(exc)) from exc
        return self._pair(user_code)

    async def deny_code_pair(self, request: Request) -> Response:
        """``POST /_emulator/codepair/deny`` ``{"user_code"}``: as ``deny_code_pair``;
        answers the pair. 404 for an unknown code, 400 for a pair no longer pending."""
        user_code = _str_field(await _json_object(request), "user_code")
        if user_code is None:
            raise ControlError(400, "'user_code' is required")
        try:
            self._state.deny_code_pair(user_code)
        except KeyError as exc:
            raise ControlError(404, _missing(exc)) from exc
        except CodePairError as exc:
            raise ControlError(400, str(exc)) from exc
        return self._pair(user_code)

    def _pair(self, user_code: str) -> Response:
        info = self._state.device.find(user_code)
        if info is None:  # forgotten meanwhile (reset)
            raise ControlError(404, f"unknown user code: {user_code!r}")
        return JSONResponse(info.to_json())

    async def code_pair_settings(self, request: Request) -> Response:
        """``POST /_emulator/codepair/settings`` ``{"interval", "lifetime"}`` (each
        optional, whole seconds): the device interval (>= 0) and the lifetime of new pairs
        (>= 1); answers both."""
        body = await _json_object(request)
        interval, lifetime = _int_field(body, "interval"), _int_field(body, "lifetime")
        try:  # both checked before either is set
            interval = None if interval is None else check_device_interval(interval)
            lifetime = None if lifetime is None else check_code_pair_lifetime(lifetime)
        except ValueError as exc:
            raise ControlError(400, str(exc)) from exc
        if interval is not None:
            self._state.device_interval = interval
        if lifetime is not None:
            self._state.code_pair_lifetime = lifetime
        return JSONResponse(self._code_pair_settings())

    async def add_fault(self, request: Request) -> Response:
        """``POST /_emulator/faults`` ``{"kind": ..., "endpoint": "*", "times": null}``.

        An optional ``"trickle_interval"`` (seconds) sets the emulator's, used by the
        ``trickle`` faults (echoed back when given).
        """
        body = await _json_object(request)
        kind = _str_field(body, "kind")
        endpoint = _str_field(body, "endpoint") or ANY_ENDPOINT
        times = _int_field(body, "times")
        interval = _number_field(body, "trickle_interval")
        if kind is None:
            raise ControlError(400, "'kind' is required")
        try:
            if interval is not None:
                interval = check_interval(interval)
            self._state.fault(kind, endpoint, times)
        except ValueError as exc:
            raise ControlError(400, str(exc)) from exc
        answer: dict[str, Any] = {"kind": kind, "endpoint": endpoint, "times": times}
        if interval is not None:
            self._state.trickle_interval = interval
            answer["trickle_interval"] = interval
        return JSONResponse(answer)

    async def clear_faults(self, request: Request) -> Response:
        """``DELETE /_emulator/faults``: clear faults and latency."""
        self._state.clear_faults()
        return JSONResponse({"cleared": True})

    async def set_latency(self, request: Request) -> Response:
        """``POST /_emulator/latency`` ``{"seconds": ..., "endpoint": "*"}``."""
        body = await _json_object(request)
        seconds = _number_field(body, "seconds")
        endpoint = _str_field(body, "endpoint") or ANY_ENDPOINT
        if seconds is None:
            raise ControlError(400, "'seconds' is required")
        try:
            self._state.latency(seconds, endpoint)
        except ValueError as exc:
            raise ControlError(400, str(exc)) from exc
        return JSONResponse({"seconds": seconds, "endpoint": endpoint})

    async def calls(self, request: Request) -> Response:
        """``GET /_emulator/calls``: counts per endpoint."""
        return JSONResponse(self._state.calls)

    async def token_calls(self, request: Request) -> Response:
        """``GET /_emulator/calls/token``: ``/auth/o2/token`` counts per ``grant_type``."""
        return JSONResponse(self._state.token_calls)

    async def reset_counts(self, request: Request) -> Response:
        """``DELETE /_emulator/calls``: zero the counts (``token_calls`` too)."""
        self._state.reset_counts()
        return JSONResponse(self._state.calls)

    async def reset(self, request: Request) -> Response:
        """``POST /_emulator/reset``: forget users, tokens, faults and counts."""
        self._state.reset()
        return JSONResponse({"reset": True})


CONTROL_ERROR_HANDLERS: dict[
    Any, Callable[[Request, Exception], Response | Awaitable[Response]]
] = {
    ControlError: _control_error_response,
}
