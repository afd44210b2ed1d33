"""The ``inspect`` subcommand: ask LWA about a token and judge it for given options.

``inspect_token`` asks LWA's token-info and profile about a token and returns an
``Inspection``: what LWA said, the audience that matched ``--client-id``/``--app-id``,
and the verdict (accepted, refused, or unknown when LWA could not answer), shown as
text or as JSON. The token is read from standard input, never from the command line
(where ``ps`` and shell history would see it), and is never printed.
"""

from __future__ import annotations

import argparse
import getpass
import json
import math
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, TextIO, TypeVar

from lwa_middleware.cli.console import EXIT_ERROR, EXIT_OK, EXIT_REFUSED, fail, say
from lwa_middleware.cli.serving import identifier
from lwa_middleware.client import LWAClient
from lwa_middleware.errors import ConfigurationError, LWAError, ServerError
from lwa_middleware.models import Profile, TokenInfo
from lwa_middleware.settings import (
    DEFAULT_API_BASE_URL,
    REGIONS,
    is_insecure_http,
    resolve_api_base_url,
)
from lwa_middleware.tokens import normalize_token

__all__ = ["Inspection", "add_inspect_command", "inspect_token", "run_inspect"]

T = TypeVar("T")


@dataclass(frozen=True)
class Inspection:
    """What LWA said about a token, and the verdict for the given options."""

    api_base_url: str
    checked_at: float
    client_ids: tuple[str, ...]
    app_ids: tuple[str, ...]
    token_info: TokenInfo | None
    token_info_error: LWAError | None
    profile: Profile | None
    profile_error: LWAError | None

    @property
    def audience(self) -> str | None:
        """``"aud"`` or ``"app_id"`` (what matched the options), else ``None``."""
        info = self.token_info
        if info is None:
            return None
        if info.aud in self.client_ids:
            return "aud"
        if info.app_id is not None and info.app_id in self.app_ids:
            return "app_id"
        return None

    def reasons(self) -> list[str]:
        """Why the token is refused (empty when it is not)."""
        reasons = []
        for what, error in (("token-info", self.token_info_error), ("profile", self.profile_error)):
            if error is not None and not isinstance(error, ServerError):
                reasons.append(f"{what}: {error.error}")
        if self.token_info is not None and self.audience is None:
            reasons.append("the token was issued to another client")
        return reasons

    @property
    def verdict(self) -> str:
        """``accepted``, ``refused``, or ``unknown`` when LWA could not answer."""
        if self.reasons():
            return "refused"
        if self.token_info is None or self.profile is None:
            return "unknown"
        return "accepted"

    @property
    def exit_code(self) -> int:
        """0 accepted, 1 refused, 2 unknown."""
        return {"accepted": EXIT_OK, "refused": EXIT_REFUSED}.get(self.verdict, EXIT_ERROR)

    def to_json(self) -> dict[str, Any]:
        """The inspection as JSON (no token in it)."""
        info = self.token_info
        return {
            "verdict": self.verdict,
            "reasons": self.reasons(),
            "api_base_url": self.api_base_url,
            "checked_at": _iso(self.checked_at),
            "token_info": None if info is None else _token_info_json(info, self.checked_at),
            "token_info_error": _error_json(self.token_info_error),
            "audience": None
            if info is None
            else {
                "accepted": self.audience is not None,
                "matched": self.audience,
                "client_ids": list(self.client_ids),
                "app_ids": list(self.app_ids),
            },
            "profile": None if self.profile is None else _profile_json(self.profile),
            "profile_error": _error_json(self.profile_error),
            "scopes": None if self.profile is None else sorted(self.profile.scopes),
        }


def inspect_token(
    token: str,
    client: LWAClient,
    client_ids: Sequence[str],
    app_ids: Sequence[str] = (),
) -> Inspection:
    """Ask LWA's token-info and profile about ``token`` and judge it for these options."""
    now = time.time()
    info: TokenInfo | None = None
    profile: Profile | None = None
    info_error: LWAError | None = None
    profile_error: LWAError | None = None
    try:
        token = normalize_token(token)
    except LWAError as error:  # the middleware refuses it before calling LWA
        info_error = error
    else:
        info, info_error = _attempt(lambda: client.tokeninfo(token, now=now))
        profile, profile_error = _attempt(lambda: client.profile(token))
    return Inspection(
        api_base_url=client.api_base_url,
        checked_at=now,
        client_ids=tuple(client_ids),
        app_ids=tuple(app_ids),
        token_info=info,
        token_info_error=info_error,
        profile=profile,
        profile_error=profile_error,
    )


def _attempt(call: Callable[[], T]) -> tuple[T | None, LWAError | None]:
    try:
        return call(), None
    except LWAError as error:
        return None, error


# The command -------------------------------------------------------------------------------


def add_inspect_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``lwa-middleware inspect``."""
    parser = commands.add_parser(
        "inspect",
        help="ask LWA about a token read from standard input",
        description="Read an access token from standard input (never pass it as an "
        "argument), call LWA's token-info and profile, and say whether LWAMiddleware "
        "with these options would accept it. The token is never printed. A leading "
        "'Bearer ' is ignored; a URL-encoded token (Atza%7C...) is decoded once, as the "
        "middleware does.",
        epilog="Exit status: 0 accepted, 1 refused (LWA says invalid/expired/insufficient "
        "scope, or another client's token), 2 usage error or LWA could not be asked.",
    )
    parser.add_argument(
        "--client-id",
        action="append",
        type=identifier,
        required=True,
        metavar="ID",
        help="an accepted client ID (aud); repeat for several (required)",
    )
    parser.add_argument(
        "--app-id",
        action="append",
        type=identifier,
        default=[],
        metavar="ID",
        help="an accepted app_id; repeat for several (default: none)",
    )
    where = parser.add_mutually_exclusive_group()
    where.add_argument(
        "--api-base-url",
        metavar="URL",
        help=f"LWA's API base URL, e.g. the emulator's (default: {DEFAULT_API_BASE_URL}, "
        "the NA region's)",
    )
    where.add_argument(
        "--region",
        choices=sorted(REGIONS),
        help="LWA's region, instead of --api-base-url (default: none)",
    )
    parser.add_argument(
        "--allow-insecure-http",
        action="store_true",
        help="allow a plain http:// --api-base-url to a host that is not loopback, e.g. an "
        "emulator on another machine (default: off; http to 127.0.0.1, ::1 or localhost "
        "is always allowed)",
    )
    parser.add_argument(
        "--timeout",
        type=_seconds,
        default=5.0,
        metavar="SECONDS",
        help="time budget per call to LWA (default: %(default)s)",
    )
    parser.add_argument("--json", action="store_true", help="print JSON (default: off, print text)")
    parser.set_defaults(run=run_inspect)


def _seconds(text: str) -> float:
    """``--timeout``'s type: a positive, finite number of seconds."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text!r}")
    return value


def run_inspect(args: argparse.Namespace) -> int:
    """Inspect the token on standard input; the exit status is the verdict's."""
    try:
        api_base_url = resolve_api_base_url(args.api_base_url, args.region)
    except ConfigurationError as exc:
        fail(f"--api-base-url: {exc}")
    if is_insecure_http(api_base_url) and not args.allow_insecure_http:
        fail(
            "--api-base-url: plain http:// to a host that is not loopback would send the "
            "token unencrypted; use https://, or pass --allow-insecure-http (e.g. for an "
            "emulator on another machine)"
        )
    token = _read_token(sys.stdin)
    if not token:
        fail("no access token on standard input (e.g. `lwa-middleware inspect ... < token.txt`)")
    with LWAClient(api_base_url, timeout=args.timeout) as client:
        inspection = inspect_token(token, client, args.client_id, args.app_id)
    say(json.dumps(inspection.to_json(), indent=2) if args.json else render(inspection))
    return inspection.exit_code


def _read_token(stdin: TextIO) -> str:
    """The token from standard input (prompted without echo on a terminal)."""
    if stdin.isatty():
        raw = _prompt()
        if not raw.strip():
            fail("no access token entered at the prompt")
    else:
        raw = stdin.read()
    token = raw.strip()
    scheme, _, rest = token.partition(" ")
    if scheme.lower() == "bearer" and rest.strip():
        token = rest.strip()
    return token


def _prompt() -> str:
    """The token typed at the terminal, not echoed; gives up on Ctrl-D or Ctrl-C."""
    try:
        return getpass.getpass("Access token (not echoed): ", stream=sys.stderr)
    except EOFError:
        say(err=True)  # end the prompt's line
        fail("no access token entered at the prompt (end of input)")
    except KeyboardInterrupt:
        say(err=True)
        fail("interrupted at the prompt; no access token read")


# Text --------------------------------------------------------------------------------------


def render(inspection: Inspection) -> str:
    """The inspection as text, for a person."""
    out = [f"Login with Amazon  {inspection.api_base_url}", "", "Token info"]
    info, now = inspection.token_info, inspection.checked_at
    if info is not None:
        issued = "-" if info.issued_at is None else _when(info.issued_at)
        left = round(info.expires_at - now)
        out += _rows(
            [
                ("user_id", info.user_id),
                ("aud", info.aud),
                ("app_id", info.app_id or "-"),
                ("iss", info.iss or "-"),
                ("issued at", issued),
                ("expires in", f"{left} s (at {_when(info.expires_at)})"),
            ]
        )
        out.append("")
        if inspection.audience == "aud":
            out.append("Audience  accepted: aud is one of --client-id")
        elif inspection.audience == "app_id":
            out.append("Audience  accepted: app_id is one of --app-id")
        else:
            out.append("Audience  REFUSED: neither aud matches --client-id nor app_id --app-id")
    else:
        out.append(f"  {_describe(inspection.token_info_error)}")
    out += ["", "Profile"]
    if inspection.profile is not None:
        out += _rows(_profile_json(inspection.profile).items())
        out += ["", f"Scopes granted  {' '.join(sorted(inspection.profile.scopes))}"]
    else:
        out.append(f"  {_describe(inspection.profile_error)}")
    out.append("")
    verdict = inspection.verdict
    if verdict == "accepted":
        out.append("Verdict: ACCEPTED (LWAMiddleware with these client IDs would accept it)")
    elif verdict == "refused":
        out.append(f"Verdict: REFUSED ({'; '.join(inspection.reasons())})")
    else:
        out.append("Verdict: UNKNOWN (Login with Amazon could not be asked; try again)")
    return "\n".join(out)


def _rows(pairs: Iterable[tuple[str, object]]) -> list[str]:
    return [f"  {name:<13}{value}" for name, value in pairs]


def _describe(error: LWAError | None) -> str:
    if error is None:
        return "-"
    return f"{error.error}: {error.description}"


def _utc(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, timezone.utc)


def _when(epoch: float) -> str:
    return _utc(epoch).strftime("%Y-%m-%d %H:%M:%S UTC")


# JSON --------------------------------------------------------------------------------------


def _iso(epoch: float) -> str:
    return _utc(epoch).isoformat(timespec="seconds")


def _token_info_json(info: TokenInfo, now: float) -> dict[str, Any]:
    return {
        "user_id": info.user_id,
        "aud": info.aud,
        "app_id": info.app_id,
        "iss": info.iss,
        "issued_at": None if info.issued_at is None else _iso(info.issued_at),
        "expires_at": _iso(info.expires_at),
        "expires_in": round(info.expires_at - now),
    }


def _profile_json(profile: Profile) -> dict[str, Any]:
    if profile.raw:
        return dict(profile.raw)
    fields = {"name": profile.name, "email": profile.email, "postal_code": profile.postal_code}
    return {"user_id": profile.user_id, **{k: v for k, v in fields.items() if v is not None}}


def _error_json(error: LWAError | None) -> dict[str, str] | None:
    if error is None:
        return None
    return {"error": error.error, "error_description": error.description}
