"""The emulator's code-based linking endpoints: the answer of
``POST /auth/o2/create/codepair`` (its latency and faults are applied by :mod:`.app`, as
for the token endpoint) and the user's pages, ``GET /activate`` (the code entry page,
``?user_code=`` prefills it) and ``POST /activate`` (its form, answered with a result
page). The device's poll is a grant of ``POST /auth/o2/token`` (see
:mod:`.oauth_endpoints` and :mod:`.codepair_state`).

Layer: ``emulator`` (stands on ``core`` alone; see ``ARCHITECTURE.md``).
"""

from __future__ import annotations

import uuid
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from lwa_middleware.emulator.codepair import ACTIVATE_PATH, CodePairError
from lwa_middleware.emulator.consent import PAGE_HEADERS, activate_page, activate_result_page
from lwa_middleware.emulator.oauth import TokenError, parse_form
from lwa_middleware.emulator.oauth_endpoints import REQUEST_ID_HEADER, TOKEN_HEADERS, TokenAnswer
from lwa_middleware.emulator.state import EmulatorState


def _page_headers() -> dict[str, str]:
    return {REQUEST_ID_HEADER: str(uuid.uuid4()), **PAGE_HEADERS}


def verification_uri(request: Request) -> str:
    """``/activate`` below the URL the request reached the emulator at (its root path
    included)."""
    return str(request.base_url).rstrip("/") + ACTIVATE_PATH


class CodePairEndpoints:
    """The code pair endpoint's answer and the ``/activate`` pages, bound to one state."""

    def __init__(self, state: EmulatorState) -> None:
        self._state = state

    def codepair_answer(
        self, content_type: str | None, body: bytes, verification_uri: str
    ) -> TokenAnswer:
        """The answer of ``POST /auth/o2/create/codepair`` to this request."""
        try:
            form = parse_form(content_type, body)
            answer = self._state.device.create(form, verification_uri)
        except TokenError as error:
            return TokenAnswer(error.status, error.body(), {**TOKEN_HEADERS, **error.headers()})
        return TokenAnswer(200, answer, dict(TOKEN_HEADERS))

    def _action(self, request: Request) -> str:
        root_path: str = request.scope.get("root_path", "")
        return root_path + ACTIVATE_PATH

    def _error(self, request: Request, error: str, description: str) -> Response:
        page = activate_result_page(
            "error", error=error, description=description, action=self._action(request)
        )
        return HTMLResponse(page, 400, _page_headers())

    async def page(self, request: Request) -> Response:
        """``GET /activate``: the code entry page (``?user_code=`` prefills the code)."""
        users = self._state.users or [self._state.add_user()]
        user_code = request.query_params.get("user_code", "")
        html = activate_page(users, self._action(request), user_code)
        return HTMLResponse(html, 200, _page_headers())

    async def decision(self, request: Request) -> Response:
        """``POST /activate``: approve or deny the pair of the entered code; a result page
        (``#result``), 400 for an unknown, expired or already answered code."""
        try:
            fields = dict(parse_qsl((await request.body()).decode("utf-8")))
        except (UnicodeDecodeError, ValueError):
            return self._error(request, "invalid_request", "The form could not be read.")
        user_code = fields.get("user_code", "").strip()
        decision = fields.get("decision")
        if not user_code:
            return self._error(request, "invalid_request", "Enter the code your device shows.")
        if decision not in ("approve", "deny"):
            return self._error(request, "invalid_request", "The decision must be approve or deny.")
        try:
            if decision == "deny":
                info = self._state.device.deny(user_code)
                return self._result(info.client_id, "denied")
            user = self._state.get_user(fields.get("user", ""))
            if user is None:
                return self._error(request, "invalid_request", "Unknown user.")
            info = self._state.device.approve(user_code, user.user_id)
        except KeyError:
            return self._error(request, "unknown_user_code", "This code is not valid.")
        except CodePairError as refused:
            return self._error(request, refused.error, refused.description)
        return self._result(info.client_id, "approved")

    @staticmethod
    def _result(client_id: str, result: str) -> Response:
        return HTMLResponse(activate_result_page(result, client_id=client_id), 200, _page_headers())
