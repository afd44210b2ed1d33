"""The emulator's OAuth endpoints: ``GET /ap/oa`` (consent page), ``POST /ap/oa/decision``
(the page's form) and the answer of ``POST /auth/o2/token``.

Layer: ``emulator`` (stands on ``core`` alone; see ``ARCHITECTURE.md``).

``/ap/oa`` checks the request (:func:`.oauth.parse_authorization_request`): an unknown
client or an unregistered redirect URI gets a 400 error page, any other bad parameter a
302 back with ``error`` and ``state``; a good one gets the consent page, whose one-time
``consent_id`` stands for the checked request (the form cannot change where the user is
sent). The decision redirects with ``code``, ``scope`` and ``state``, or with
``error=access_denied``. The token endpoint's latency and faults are applied by
:mod:`.app`; here is only its answer (``grant_type`` ``authorization_code``,
``refresh_token``, ``client_credentials`` (see :mod:`.oauth_state`) and code-based
linking's ``device_code``, see :mod:`.codepair_state`).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from lwa_middleware.emulator.codepair import DEVICE_GRANT
from lwa_middleware.emulator.consent import PAGE_HEADERS, consent_page, error_page
from lwa_middleware.emulator.oauth import (
    CLIENT_CREDENTIALS_GRANT,
    AuthorizationError,
    TokenError,
    client_credentials,
    parse_form,
    required,
)
from lwa_middleware.emulator.state import EmulatorState

REQUEST_ID_HEADER = "x-amzn-RequestId"
DECISION_PATH = "/ap/oa/decision"
TOKEN_HEADERS = {"Cache-Control": "no-store", "Pragma": "no-cache"}
"""Headers of every token answer (RFC 6749 §5.1)."""

_EXPIRED = "This sign-in page has expired or was already answered. Sign in again from the app."


@dataclass(frozen=True)
class TokenAnswer:
    """What ``POST /auth/o2/token`` answers: status, JSON body, extra headers."""

    status: int
    body: dict[str, object]
    headers: dict[str, str] = field(default_factory=dict)


def _headers(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    return {REQUEST_ID_HEADER: str(uuid.uuid4()), **PAGE_HEADERS, **(extra or {})}


def _error_page(error: str, description: str) -> Response:
    return HTMLResponse(error_page(error, description), 400, _headers())


def _redirect(url: str) -> Response:
    return RedirectResponse(url, 302, _headers())


class OAuthEndpoints:
    """``/ap/oa``, its decision, and the token endpoint's answer, bound to one state."""

    def __init__(self, state: EmulatorState) -> None:
        self._state = state

    async def authorize(self, request: Request) -> Response:
        """``GET /ap/oa``: the consent page, an error redirect, or an error page."""
        try:
            checked = self._state.oauth.check(request.query_params.multi_items())
        except AuthorizationError as error:
            target = error.redirect()
            if target is None:
                return _error_page(error.error, error.description)
            return _redirect(target)
        users = self._state.users or [self._state.add_user()]
        consent_id = self._state.oauth.begin(checked)
        action = request.scope.get("root_path", "") + DECISION_PATH
        return HTMLResponse(consent_page(checked, consent_id, users, action), 200, _headers())

    async def decision(self, request: Request) -> Response:
        """``POST /ap/oa/decision``: the consent form's answer, redirected to the app."""
        try:
            form = parse_qsl((await request.body()).decode("utf-8"), keep_blank_values=True)
        except (UnicodeDecodeError, ValueError):
            return _error_page("invalid_request", "The form could not be read.")
        fields = dict(form)
        pending = self._state.oauth.take(fields.get("consent_id", ""))
        if pending is None:
            return _error_page("invalid_request", _EXPIRED)
        decision = fields.get("decision")
        if decision == "deny":
            return _redirect(pending.denied())
        if decision != "approve":
            return _error_page("invalid_request", "The decision must be approve or deny.")
        scopes = [value for key, value in form if key == "scope" and value in pending.scopes]
        if not scopes:
            return _redirect(pending.denied("The user approved no scope."))
        user = self._state.get_user(fields.get("user", ""))
        if user is None:
            return _error_page("invalid_request", "Unknown user.")
        code = self._state.oauth.issue_code(pending, user.user_id, scopes)
        return _redirect(pending.approved(code, list(dict.fromkeys(scopes))))

    def token_answer(
        self, content_type: str | None, body: bytes, authorization: str | None
    ) -> TokenAnswer:
        """The answer of ``POST /auth/o2/token`` to this request."""
        try:
            form = parse_form(content_type, body)
            grant_type = required(form, "grant_type")
            oauth = self._state.oauth
            if grant_type == "authorization_code":
                answer = oauth.exchange_code(client_credentials(form, authorization), form)
            elif grant_type == "refresh_token":
                answer = oauth.refresh(client_credentials(form, authorization), form)
            elif grant_type == DEVICE_GRANT:
                answer = self._state.device.poll(form, authorization)
            elif grant_type == CLIENT_CREDENTIALS_GRANT:
                answer = oauth.client_credentials(client_credentials(form, authorization), form)
            else:
                raise TokenError(
                    "unsupported_grant_type",
                    f"The authorization grant type is not supported : {grant_type}",
                )
        except TokenError as error:
            return TokenAnswer(error.status, error.body(), {**TOKEN_HEADERS, **error.headers()})
        return TokenAnswer(200, answer, dict(TOKEN_HEADERS))
