"""The ``lwa-middleware`` command: ``emulator``, ``demo`` and ``inspect``.

* ``lwa-middleware emulator``: serve the LWA emulator in the foreground and print a ready
  test token; point an app at it with ``LWA_API_BASE_URL``.
* ``lwa-middleware demo``: the emulator plus a small app behind ``LWAMiddleware``, with
  curl lines for each outcome; ``--once`` makes those requests itself and exits 0 when
  every answer is the expected one (a smoke test for CI).
* ``lwa-middleware inspect --client-id ID < token.txt``: ask LWA about a token (read from
  standard input, never from the command line, where ``ps`` and shell history would see
  it) and say whether ``LWAMiddleware`` with these options would accept it.

Serving needs uvicorn (``pip install 'lwa-middleware[emulator]'``), imported only then.
"""

from __future__ import annotations

import argparse
import getpass
import importlib
import json
import shlex
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, TextIO, TypeVar

import httpx

from lwa_middleware._version import __version__
from lwa_middleware.client import LWAClient
from lwa_middleware.emulator.state import DEFAULT_APP_ID, DEFAULT_CLIENT_ID
from lwa_middleware.errors import ConfigurationError, LWAError, ServerError
from lwa_middleware.models import Profile, TokenInfo
from lwa_middleware.settings import REGIONS
from lwa_middleware.tokens import normalize_token

if TYPE_CHECKING:
    from lwa_middleware.emulator import Emulator, ServerHandle

__all__ = ["main"]

T = TypeVar("T")

EXIT_OK = 0
EXIT_REFUSED = 1  # inspect: the token is refused; demo --once: an answer was unexpected
EXIT_ERROR = 2  # usage error, cannot serve, or LWA could not be asked

TEST_NAME = "Test Customer"
TEST_EMAIL = "test.customer@example.com"
TEST_POSTAL_CODE = "98101"
TEST_LIFETIME = 3600
OTHER_CLIENT_ID = "amzn1.application-oa2-client.someone-else"

_NEED_UVICORN = (
    "lwa-middleware {command} needs uvicorn, which is not installed.\n"
    "Install the emulator extra:  pip install 'lwa-middleware[emulator]'"
)


def _error(message: str) -> None:
    print(f"lwa-middleware: error: {message}", file=sys.stderr)


# Serving ---------------------------------------------------------------------------------


def _uvicorn_missing(command: str) -> bool:
    """Whether uvicorn is missing (after saying how to install it)."""
    try:
        importlib.import_module("uvicorn")
    except ImportError:
        print(_NEED_UVICORN.format(command=command), file=sys.stderr)
        return True
    return False


@contextmanager
def _stop_signals() -> Iterator[threading.Event]:
    """An event set by SIGINT/SIGTERM while the block runs (handlers restored after)."""
    stop = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return

    def on_signal(signum: int, frame: object) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _wait(stop: threading.Event, handles: Sequence[ServerHandle]) -> int:
    """Block until a stop signal (0) or until a server thread dies (1)."""
    while not stop.wait(0.2):
        for handle in handles:
            if not handle.running:
                _error(f"the server at {handle.url} stopped unexpectedly")
                return EXIT_REFUSED
    print("\nStopping...", flush=True)
    return EXIT_OK


def _serve_error(what: str, host: str, port: int, exc: Exception) -> int:
    reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    _error(f"cannot serve the {what} on {host}:{port}: {reason}")
    return EXIT_ERROR


def _start_emulator(args: argparse.Namespace, port: int) -> tuple[Emulator, ServerHandle]:
    """A started emulator (raises ``OSError``/``ServerStartError`` when it cannot listen)."""
    from lwa_middleware.emulator import Emulator

    emulator = Emulator(client_id=args.client_id, app_id=args.app_id)
    return emulator, emulator.start(args.host, port)


def _test_token(emulator: Emulator, scopes: Sequence[str]) -> tuple[str, str]:
    """``(user_id, token)`` for the test customer, with ``scopes``, valid one hour."""
    user, token = emulator.mint_for(
        name=TEST_NAME,
        email=TEST_EMAIL,
        postal_code=TEST_POSTAL_CODE,
        scopes=tuple(scopes),
        lifetime=TEST_LIFETIME,
    )
    return user.user_id, token


# emulator ----------------------------------------------------------------------------------


def _cmd_emulator(args: argparse.Namespace) -> int:
    if _uvicorn_missing("emulator"):
        return EXIT_ERROR
    from lwa_middleware.emulator import ServerStartError

    with _stop_signals() as stop:
        try:
            emulator, server = _start_emulator(args, args.port)
        except (OSError, ServerStartError) as exc:
            return _serve_error("LWA emulator", args.host, args.port, exc)
        try:
            _, token = _test_token(emulator, ("profile", "postal_code"))
            print(_emulator_banner(emulator, token), flush=True)
            return _wait(stop, [server])
        finally:
            emulator.stop()
            print("LWA emulator stopped.", flush=True)


def _emulator_banner(emulator: Emulator, token: str) -> str:
    url = emulator.url
    mint = json.dumps({"name": "Grace Hopper", "scopes": ["profile"]})
    return f"""\
LWA emulator running at {url}  (Ctrl-C to stop)
  client_id  {emulator.client_id}
  app_id     {emulator.app_id}

A test token for "{TEST_NAME}" <{TEST_EMAIL}>, postal code {TEST_POSTAL_CODE},
scopes profile postal_code, valid 1 h:

  export TOKEN={shlex.quote(token)}

Ask the emulator about it, as LWA would answer:
  curl -s -H "x-amz-access-token: $TOKEN" {url}/auth/o2/tokeninfo
  curl -s -H "Authorization: Bearer $TOKEN" {url}/user/profile

Mint another token:
  curl -s -X POST {url}/_emulator/tokens -H 'content-type: application/json' \\
       -d {shlex.quote(mint)}

Point an app at it:
  export LWA_API_BASE_URL={url} LWA_CLIENT_IDS={emulator.client_id}"""


# demo --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Check:
    """One request of the demo and the answer it must get."""

    title: str
    path: str
    token: str | None  # a key of the demo's tokens, or None for no token
    status: int
    error: str | None = None
    field: tuple[str, object] | None = None

    def curl(self, base_url: str) -> str:
        """The curl line showing this check (tokens as shell variables)."""
        auth = f'-H "Authorization: Bearer ${self.token}" ' if self.token else ""
        return f"curl -si {auth}{base_url}{self.path}"

    def outcome(self) -> str:
        """The expected status and error code."""
        return f"{self.status} {self.error}" if self.error else f"{self.status}"

    def expected(self) -> str:
        """What the answer must be, in words."""
        if self.field:
            return f"{self.outcome()} {self.field[0]}={self.field[1]!r}"
        return self.outcome()

    def judge(self, response: httpx.Response) -> str | None:
        """``None`` when the response is the expected one, else what is wrong."""
        if response.status_code != self.status:
            return f"status {response.status_code}, expected {self.status}"
        if self.error is None and self.field is None:
            return None
        try:
            body = response.json()
        except ValueError:
            return "the body is not JSON"
        if not isinstance(body, dict):
            return "the body is not a JSON object"
        if self.error is not None and body.get("error") != self.error:
            return f"error {body.get('error')!r}, expected {self.error!r}"
        if self.field is not None and body.get(self.field[0]) != self.field[1]:
            key, value = self.field
            return f"{key} is {body.get(key)!r}, expected {value!r}"
        return None


DEMO_CHECKS = (
    Check("your profile (/me)", "/me", "TOKEN", 200, field=("name", TEST_NAME)),
    Check("no token on a protected route", "/me", None, 400, error="invalid_request"),
    Check(
        "a token without postal_code on /zip",
        "/zip",
        "TOKEN_NO_ZIP",
        401,
        error="insufficient_scope",
    ),
    Check("a token with postal_code on /zip", "/zip", "TOKEN", 200, field=("postal_code", "98101")),
    Check("a token issued to another app", "/me", "TOKEN_OTHER_APP", 400, error="invalid_token"),
    Check("an excluded route (/public)", "/public", None, 200, field=("public", True)),
    Check("optional route, anonymous", "/hello", None, 200, field=("message", "Hello, anonymous!")),
    Check(
        "optional route, with a token",
        "/hello",
        "TOKEN",
        200,
        field=("message", f"Hello, {TEST_NAME}!"),
    ),
)


def _demo_tokens(emulator: Emulator) -> dict[str, str]:
    user_id, token = _test_token(emulator, ("profile", "postal_code"))
    return {
        "TOKEN": token,
        "TOKEN_NO_ZIP": emulator.mint(user_id, ("profile",), TEST_LIFETIME),
        "TOKEN_OTHER_APP": emulator.mint(
            user_id, ("profile", "postal_code"), TEST_LIFETIME, client_id=OTHER_CLIENT_ID
        ),
    }


def _cmd_demo(args: argparse.Namespace) -> int:
    if _uvicorn_missing("demo"):
        return EXIT_ERROR
    from lwa_middleware.demo import demo_app
    from lwa_middleware.emulator import ServerStartError, serve

    port = args.port if args.port is not None else (0 if args.once else 8000)
    emulator_port = args.emulator_port
    if emulator_port is None:
        emulator_port = 0 if args.once else 8765
    with _stop_signals() as stop:
        try:
            emulator, server = _start_emulator(args, emulator_port)
        except (OSError, ServerStartError) as exc:
            return _serve_error("LWA emulator", args.host, emulator_port, exc)
        try:
            app = demo_app(emulator.url, emulator.client_id)
            try:
                handle = serve(app, args.host, port, lifespan="on")
            except (OSError, ServerStartError) as exc:
                return _serve_error("demo app", args.host, port, exc)
            try:
                tokens = _demo_tokens(emulator)
                if args.once:
                    print(f"Demo app at {handle.url}, LWA emulator at {emulator.url}\n")
                    return _run_checks(handle.url, tokens)
                print(_demo_banner(emulator, handle.url, tokens), flush=True)
                return _wait(stop, [handle, server])
            finally:
                handle.stop()
        finally:
            emulator.stop()
            if not args.once:
                print("Demo stopped.", flush=True)


def _demo_banner(emulator: Emulator, url: str, tokens: dict[str, str]) -> str:
    exports = "\n".join(f"  export {name}={shlex.quote(token)}" for name, token in tokens.items())
    width = max(len(check.curl(url)) for check in DEMO_CHECKS)
    lines = "\n".join(
        f"  {check.curl(url):<{width}}  # {check.outcome()}: {check.title}" for check in DEMO_CHECKS
    )
    return f"""\
Demo app running at {url} (instructions: curl {url}/), behind LWAMiddleware.
LWA emulator at {emulator.url}, tokens issued to {emulator.client_id}.  Ctrl-C to stop.

Tokens for "{TEST_NAME}" (valid 1 h): TOKEN has profile and postal_code, TOKEN_NO_ZIP
only profile, TOKEN_OTHER_APP was issued to another client ID:

{exports}

Try:
{lines}"""


def _run_checks(base_url: str, tokens: dict[str, str]) -> int:
    """Make every demo request, print each result; 0 when all are as expected."""
    failures = 0
    with httpx.Client(base_url=base_url, trust_env=False, timeout=10.0) as http:
        for check in DEMO_CHECKS:
            headers = {"authorization": f"Bearer {tokens[check.token]}"} if check.token else {}
            try:
                response = http.get(check.path, headers=headers)
            except httpx.HTTPError as exc:
                problem: str | None = f"request failed: {type(exc).__name__}"
                answer = "-"
            else:
                problem = check.judge(response)
                answer = f"{response.status_code} {response.text.strip()}"
            failures += problem is not None
            mark = "PASS" if problem is None else "FAIL"
            who = f"${check.token}" if check.token else "no token"
            print(f"{mark}  GET {check.path} ({who}): {check.title}")
            print(f"      expected {check.expected()}; got {answer}")
            if problem is not None:
                print(f"      {problem}")
    total = len(DEMO_CHECKS)
    print(f"\n{total - failures}/{total} demo checks passed.", flush=True)
    return EXIT_OK if failures == 0 else EXIT_REFUSED


# inspect -----------------------------------------------------------------------------------


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


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, timezone.utc).isoformat(timespec="seconds")


def _when(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


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


def _attempt(call: Callable[[], T]) -> tuple[T | None, LWAError | None]:
    try:
        return call(), None
    except LWAError as error:
        return None, error


def _read_token(stdin: TextIO) -> str:
    """The token from standard input (prompted without echo on a terminal)."""
    if stdin.isatty():
        raw = getpass.getpass("Access token (not echoed): ", stream=sys.stderr)
    else:
        raw = stdin.read()
    token = raw.strip()
    scheme, _, rest = token.partition(" ")
    if scheme.lower() == "bearer" and rest.strip():
        token = rest.strip()
    return token


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


def _render(inspection: Inspection) -> str:
    out = [f"Login with Amazon  {inspection.api_base_url}", "", "Token info"]
    info, now = inspection.token_info, inspection.checked_at
    if info is not None:
        issued = "-" if info.issued_at is None else _when(info.issued_at)
        left = round(info.expires_at - now)
        rows = [
            ("user_id", info.user_id),
            ("aud", info.aud),
            ("app_id", info.app_id or "-"),
            ("iss", info.iss or "-"),
            ("issued at", issued),
            ("expires in", f"{left} s (at {_when(info.expires_at)})"),
        ]
        out += [f"  {name:<13}{value}" for name, value in rows]
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
        fields = _profile_json(inspection.profile)
        out += [f"  {name:<13}{value}" for name, value in fields.items()]
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


def _describe(error: LWAError | None) -> str:
    if error is None:
        return "-"
    return f"{error.error}: {error.description}"


def _cmd_inspect(args: argparse.Namespace) -> int:
    try:
        client = LWAClient(args.api_base_url, region=args.region, timeout=args.timeout)
    except ConfigurationError as exc:
        _error(str(exc))
        return EXIT_ERROR
    token = _read_token(sys.stdin)
    if not token:
        _error("no access token on standard input (e.g. `lwa-middleware inspect ... < token.txt`)")
        return EXIT_ERROR
    with client:
        inspection = inspect_token(token, client, args.client_id, args.app_id)
    if args.json:
        print(json.dumps(inspection.to_json(), indent=2))
    else:
        print(_render(inspection))
    return inspection.exit_code


# Parser ------------------------------------------------------------------------------------


def _positive(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``lwa-middleware``."""
    parser = argparse.ArgumentParser(
        prog="lwa-middleware",
        description="Login with Amazon middleware tools: a local LWA emulator, a demo, "
        "and a token inspector.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    emulator = commands.add_parser(
        "emulator",
        help="serve the LWA emulator and print a ready test token",
        description="Serve the Login with Amazon emulator (token-info, profile, and "
        "control endpoints under /_emulator) until Ctrl-C.",
    )
    emulator.add_argument("--host", default="127.0.0.1", help="default: %(default)s")
    emulator.add_argument("--port", type=int, default=8765, help="default: %(default)s")
    _add_ids(emulator)
    emulator.set_defaults(run=_cmd_emulator)

    demo = commands.add_parser(
        "demo",
        help="the emulator plus an example app behind LWAMiddleware",
        description="Serve the LWA emulator and a demo app protected by LWAMiddleware, "
        "and print tokens and curl lines for every outcome.",
    )
    demo.add_argument("--host", default="127.0.0.1", help="default: %(default)s")
    demo.add_argument("--port", type=int, default=None, help="the demo app's (default: 8000)")
    demo.add_argument(
        "--emulator-port", type=int, default=None, help="the emulator's (default: 8765)"
    )
    demo.add_argument(
        "--once",
        "--check",
        action="store_true",
        help="make the demo requests, print the results and exit: 0 when all are as "
        "expected, else 1 (free ports unless given)",
    )
    _add_ids(demo)
    demo.set_defaults(run=_cmd_demo)

    inspect = commands.add_parser(
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
    inspect.add_argument(
        "--client-id",
        action="append",
        required=True,
        metavar="ID",
        help="an accepted client ID (aud); repeat for several",
    )
    inspect.add_argument(
        "--app-id",
        action="append",
        default=[],
        metavar="ID",
        help="an accepted app_id; repeat for several",
    )
    where = inspect.add_mutually_exclusive_group()
    where.add_argument("--api-base-url", metavar="URL", help="default: the NA region's")
    where.add_argument("--region", choices=sorted(REGIONS), help="LWA's region")
    inspect.add_argument("--timeout", type=_positive, default=5.0, help="seconds per call")
    inspect.add_argument("--json", action="store_true", help="print JSON")
    inspect.set_defaults(run=_cmd_inspect)
    return parser


def _add_ids(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--client-id",
        default=DEFAULT_CLIENT_ID,
        help="the client ID tokens are issued to (aud; default: %(default)s)",
    )
    parser.add_argument(
        "--app-id", default=DEFAULT_APP_ID, help="the app_id tokens carry (default: %(default)s)"
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``lwa-middleware``; return the exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, usage errors
        return exc.code if isinstance(exc.code, int) else EXIT_ERROR
    run: Callable[[argparse.Namespace], int] = args.run
    try:
        return run(args)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
