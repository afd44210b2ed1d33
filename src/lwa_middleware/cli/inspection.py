"""The ``inspect`` subcommand: ask LWA about a token and judge it for given options.

Layer: ``cli`` (the command, on top of everything; see ``ARCHITECTURE.md``).

``inspect_token`` asks LWA's token-info and profile about a token and returns an
``Inspection``: what LWA said, the audience that matched ``--client-id``/``--app-id``,
and the verdict (accepted, refused, or unknown when LWA could not answer), shown as
text or as JSON. With an access policy (``--allow``, ``--deny``, ``--policy-file`` and
the ``LWA_ALLOW``/``LWA_DENY``/``LWA_POLICY_FILE`` environment, as the middleware reads
them), it also says whether the customer passes it at ``--method`` ``--path`` and, if
not, which kind of rule refused them (never which rule). The token is read from standard
input, never from the command line (where ``ps`` and shell history would see it), and is
never printed.

"""

from __future__ import annotations

import argparse
import getpass
import json
import re
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from types import SimpleNamespace
from typing import Any, TextIO, TypeVar

from lwa_middleware.cli.console import (
    EXIT_ERROR,
    EXIT_OK,
    EXIT_REFUSED,
    add_where_options,
    fail,
    say,
)
from lwa_middleware.cli.serving import identifier
from lwa_middleware.core.errors import ConfigurationError, LWAError, LWAUnavailable, ServerError
from lwa_middleware.core.models import Identity, Profile, TokenInfo
from lwa_middleware.core.policy import REFUSALS, AccessPolicy, parse_json_variable
from lwa_middleware.core.rules import MAX_JUDGED_PATH, path_forms
from lwa_middleware.core.settings import (
    is_insecure_http,
    resolve_api_base_url,
)
from lwa_middleware.core.tokens import normalize_token
from lwa_middleware.upstream.client import LWAClient
from lwa_middleware.upstream.policy_watch import build_policy

__all__ = ["Inspection", "PolicyVerdict", "add_inspect_command", "inspect_token", "run_inspect"]

T = TypeVar("T")
_METHOD = re.compile(r"[A-Z]{1,20}")


@dataclass(frozen=True)
class PolicyVerdict:
    """The access policy's verdict on the customer at ``method`` ``path``: ``refusal`` is
    the kind of rule that refused them (a key of
    :data:`~lwa_middleware.core.policy.REFUSALS`), ``None`` when admitted."""

    method: str
    path: str
    sources: tuple[str, ...]
    refusal: str | None

    @property
    def admitted(self) -> bool:
        return self.refusal is None

    def to_json(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "path": self.path,
            "sources": list(self.sources),
            "admitted": self.admitted,
            "refused_by": self.refusal,
            "reason": None if self.refusal is None else REFUSALS[self.refusal],
        }


def judge_policy(
    policy: AccessPolicy, info: TokenInfo, profile: Profile, method: str, path: str
) -> PolicyVerdict:
    """The rules' verdict on a verified customer at ``method`` ``path`` (every form of the
    path, as the middleware judges it; the app's ``authorize`` callable is not run)."""
    forms = path_forms(path) if len(path) <= MAX_JUDGED_PATH else None
    access = policy.access(forms) if forms is not None else policy.strictest()
    refusal = None if access is None else access.refusal(Identity.build(info, profile))
    return PolicyVerdict(method, path, tuple(s.name for s in policy.sources), refusal)


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
    #: The access policy's verdict (``None``: not judged, LWA gave no customer to judge).
    policy: PolicyVerdict | None = None

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
        policy = self.policy
        if policy is not None and policy.refusal is not None:
            reasons.append(
                f"the access policy refuses it at {policy.method} {policy.path}: "
                f"{REFUSALS[policy.refusal]}"
            )
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
            "policy": None if self.policy is None else self.policy.to_json(),
        }


def inspect_token(
    token: str,
    client: LWAClient,
    client_ids: Sequence[str],
    app_ids: Sequence[str] = (),
    *,
    policy: AccessPolicy | None = None,
    method: str = "GET",
    path: str = "/",
) -> Inspection:
    """Ask LWA's token-info and profile about ``token`` and judge it for these options
    (and, with a ``policy``, its rules at ``method`` ``path``)."""
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
    verdict = None
    if policy is not None and info is not None and profile is not None:
        verdict = judge_policy(policy, info, profile, method, path)
    return Inspection(
        api_base_url=client.api_base_url,
        checked_at=now,
        client_ids=tuple(client_ids),
        app_ids=tuple(app_ids),
        token_info=info,
        token_info_error=info_error,
        profile=profile,
        profile_error=profile_error,
        policy=verdict,
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
    add_where_options(
        parser,
        insecure_help="allow a plain http:// --api-base-url to a host that is not loopback, "
        "e.g. an emulator on another machine (default: off; http to 127.0.0.1, ::1 or "
        "localhost is always allowed)",
    )
    parser.add_argument(
        "--path",
        default="/",
        metavar="PATH",
        help="judge the access policy at this path, below the app's mount point (default: /)",
    )
    parser.add_argument(
        "--method",
        type=_method,
        default="GET",
        metavar="METHOD",
        help="the request's method (default: GET); the rules do not depend on it, the app's "
        "authorize callable may (it is not run here)",
    )
    parser.add_argument(
        "--allow",
        metavar="JSON",
        help='the allow option as JSON, e.g. \'{"/*": ["domain:example.com"]}\'; it adds to '
        "LWA_ALLOW from the environment, as in the middleware (default: none)",
    )
    parser.add_argument(
        "--deny",
        metavar="JSON",
        help="the deny option as JSON: a list of rules, or pattern → rules; it adds to LWA_DENY "
        "(default: none)",
    )
    parser.add_argument(
        "--policy-file",
        metavar="FILE",
        help="a policy file (JSON, or TOML if it ends in .toml), as policy_file=; it adds to "
        "LWA_POLICY_FILE (default: none)",
    )
    parser.add_argument("--json", action="store_true", help="print JSON (default: off, print text)")
    parser.set_defaults(run=run_inspect)


def _method(text: str) -> str:
    """``--method``'s type: an HTTP method in capitals."""
    if not _METHOD.fullmatch(text.upper()):
        raise argparse.ArgumentTypeError(f"expected an HTTP method such as GET, got {text!r}")
    return text.upper()


def load_policy(args: argparse.Namespace) -> AccessPolicy:
    """The access policy the options and the environment set, as the middleware builds it;
    a bad one ends the command (exit 2)."""
    try:
        options = SimpleNamespace(
            allow=None
            if args.allow is None
            else parse_json_variable("--allow", args.allow, mapping=True),
            deny=None
            if args.deny is None
            else parse_json_variable("--deny", args.deny, mapping=False),
            policy_file=args.policy_file,
        )
        return build_policy(options).policy
    except ConfigurationError as exc:
        fail(f"access policy: {exc}")


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
    if not args.path.startswith("/"):
        fail("--path must start with '/'")
    policy = load_policy(args)
    token = _read_token(sys.stdin)
    if not token:
        fail("no access token on standard input (e.g. `lwa-middleware inspect ... < token.txt`)")
    with LWAClient(api_base_url, timeout=args.timeout) as client:
        inspection = inspect_token(
            token,
            client,
            args.client_id,
            args.app_id,
            policy=policy,
            method=args.method,
            path=args.path,
        )
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
    policy = inspection.policy
    if policy is not None:
        where = f"{policy.method} {policy.path}"
        if not policy.sources:
            out.append(f"Access policy  none configured: any verified customer may {where}")
        elif policy.admitted:
            out.append(f"Access policy  ADMITTED at {where} (rules of {', '.join(policy.sources)})")
        else:
            assert policy.refusal is not None
            out.append(f"Access policy  REFUSED at {where}: {REFUSALS[policy.refusal]}")
        out += ["  (the app's authorize callable, if it has one, is not run here)", ""]
    verdict = inspection.verdict
    if verdict == "accepted":
        out.append("Verdict: ACCEPTED (LWAMiddleware with these client IDs would accept it)")
    elif verdict == "refused":
        out.append(f"Verdict: REFUSED ({'; '.join(inspection.reasons())})")
    elif any(
        isinstance(error, LWAUnavailable) and not error.retryable
        for error in (inspection.token_info_error, inspection.profile_error)
    ):
        out.append("Verdict: UNKNOWN (the URL is wrong: check --api-base-url)")
    else:
        out.append("Verdict: UNKNOWN (Login with Amazon could not be asked; try again)")
    return "\n".join(out)


def _rows(pairs: Iterable[tuple[str, object]]) -> list[str]:
    return [f"  {name:<13}{value}" for name, value in pairs]


def _describe(error: LWAError | None) -> str:
    if error is None:
        return "-"
    cause = getattr(error, "cause", None)
    return f"{error.error}: {error.description}" + (f" ({cause})" if cause else "")


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
