"""The ``demo`` subcommand: the emulator plus the demo app, and the checks of ``--once``.

Layer: ``cli`` (the command, on top of everything; see ``ARCHITECTURE.md``).

``lwa-middleware demo`` serves the LWA emulator and ``lwa_middleware.cli.demo_app``'s app behind
``LWAMiddleware`` and prints tokens and a curl line for every outcome (each a ``Check``);
``--once`` makes those requests itself and exits 0 when every answer is the expected one.

"""

from __future__ import annotations

import argparse
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import httpx

from lwa_middleware.cli.console import EXIT_OK, EXIT_REFUSED, fail, say
from lwa_middleware.cli.demo_signin import sign_in_checks
from lwa_middleware.cli.serving import (
    EMULATOR_PORT,
    TEST_LIFETIME,
    TEST_NAME,
    TEST_POSTAL_CODE,
    TEST_SCOPES,
    add_emulator_ids,
    add_serving_parser,
    emulator_serving,
    mint_test_token,
    port_number,
    require_uvicorn,
    shell_exports,
    start_server,
    stop_signals,
    wait,
)
from lwa_middleware.core.settings import is_loopback_host

if TYPE_CHECKING:
    from lwa_middleware.emulator import Emulator

DEMO_PORT = 8000
OTHER_CLIENT_ID = "amzn1.application-oa2-client.someone-else"


@dataclass(frozen=True)
class Check:
    """One request of the demo and the answer it must get."""

    title: str
    path: str
    token: str | None  # a key of the demo's tokens, or None for no token
    status: int
    error: str | None = None
    field: tuple[str, object] | None = None
    #: Text the (non-JSON) body must hold, and what to say when the status is wrong.
    text: str | None = None
    hint: str | None = None

    def curl(self, base_url: str) -> str:
        """The curl line showing this check (tokens as shell variables)."""
        auth = f'-H "Authorization: Bearer ${self.token}" ' if self.token else ""
        return f"curl -si {auth}{base_url}{self.path}"

    def headers(self, tokens: Mapping[str, str]) -> dict[str, str]:
        """The request's headers: the bearer token named by ``token``, if any."""
        return {"authorization": f"Bearer {tokens[self.token]}"} if self.token else {}

    def outcome(self) -> str:
        """The expected status and error code."""
        return f"{self.status} {self.error}" if self.error else f"{self.status}"

    def expected(self) -> str:
        """What the answer must be, in words."""
        if self.field:
            return f"{self.outcome()} {self.field[0]}={self.field[1]!r}"
        if self.text:
            return f"{self.outcome()} with {self.text}"
        return self.outcome()

    def judge(self, response: httpx.Response) -> str | None:
        """``None`` when the response is the expected one, else what is wrong."""
        if response.status_code != self.status:
            hint = f" ({self.hint})" if self.hint else ""
            return f"status {response.status_code}, expected {self.status}{hint}"
        if self.text is not None:
            return None if self.text in response.text else f"the body has no {self.text}"
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
    Check(
        "a token with postal_code on /zip",
        "/zip",
        "TOKEN",
        200,
        field=("postal_code", TEST_POSTAL_CODE),
    ),
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
    Check(
        "the middleware's metrics (an operator endpoint)",
        "/metrics",
        None,
        200,
        text="lwa_verifications_total",
        hint="prometheus_client is missing: pip install 'lwa-middleware[emulator]'",
    ),
)


def add_demo_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``lwa-middleware demo``."""
    parser = add_serving_parser(
        commands,
        "demo",
        summary="the emulator plus an example app behind LWAMiddleware",
        description="Serve the LWA emulator and a demo app protected by LWAMiddleware, "
        "and print tokens and curl lines for every outcome.",
        port=None,
        port_help=f"the demo app's port; 0 picks a free one (default: {DEMO_PORT}, "
        "a free one with --once)",
    )
    parser.add_argument(
        "--emulator-port",
        type=port_number,
        default=None,
        metavar="PORT",
        help=f"the emulator's port; 0 picks a free one (default: {EMULATOR_PORT}, "
        "a free one with --once)",
    )
    parser.add_argument(
        "--once",
        "--check",
        action="store_true",
        help="make the demo requests, print the results and exit: 0 when all are as "
        "expected, else 1 (free ports unless given; default: off, serve until Ctrl-C)",
    )
    add_emulator_ids(parser)
    parser.set_defaults(run=run_demo)


def run_demo(args: argparse.Namespace) -> int:
    """Serve the demo until Ctrl-C, or with ``--once`` run its checks and exit."""
    require_uvicorn("demo")
    if not (is_loopback_host(args.host) or args.host in _ANY_ADDRESS):
        # The demo app calls the emulator over plain http, refused beyond loopback.
        fail(
            f"demo --host {args.host}: the demo app calls the emulator over plain http, "
            "which is allowed on a loopback address only; use --host 127.0.0.1 (or 0.0.0.0 "
            "to listen on every address)"
        )
    from lwa_middleware.cli.demo_app import demo_app
    from lwa_middleware.emulator import serve

    # The sign-in's redirect_uri names the demo's port: pick a free one now when asked to.
    port = _port(args.port, DEMO_PORT, once=args.once) or free_port(args.host)
    emulator_port = _port(args.emulator_port, EMULATOR_PORT, once=args.once)
    farewell = None if args.once else "Demo stopped."
    with (
        stop_signals() as stop,
        emulator_serving(args, emulator_port, farewell=farewell) as (emulator, server),
    ):
        base_url = _loopback_url(f"http://{_url_host(args.host)}:{port}")
        app = demo_app(_loopback_url(emulator.url), emulator.client_id, base_url=base_url)
        with start_server(
            "demo app", args.host, port, lambda: serve(app, args.host, port, lifespan="on")
        ) as handle:
            tokens = demo_tokens(emulator)
            if args.once:
                say(f"Demo app at {base_url}, LWA emulator at {emulator.url}\n")
                return run_checks(base_url, tokens)
            say(demo_banner(emulator, base_url, tokens), flush=True)
            return wait(stop, [handle, server])


#: The wildcard addresses: listening on every address, loopback included.
_ANY_ADDRESS = frozenset({"0.0.0.0", "::", ""})  # noqa: S104 (names them, binds nothing)


def _loopback_url(url: str) -> str:
    """``url``, with a wildcard host (``0.0.0.0``, ``::``) replaced by loopback's."""
    parts = urlsplit(url)
    if (parts.hostname or "") not in _ANY_ADDRESS:
        return url
    host = "[::1]" if parts.hostname == "::" else "127.0.0.1"
    return f"{parts.scheme}://{host}:{parts.port}"


def _url_host(host: str) -> str:
    """``host`` as it is written in a URL (an IPv6 address in brackets)."""
    return f"[{host}]" if ":" in host else host


def free_port(host: str) -> int:
    """A port free on ``host`` now (the demo's sign-in must know its own address)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
    return port


def _port(given: int | None, default: int, *, once: bool) -> int:
    """The port given, else any free one with ``--once``, else ``default``."""
    if given is not None:
        return given
    return 0 if once else default


def demo_tokens(emulator: Emulator) -> dict[str, str]:
    """The tokens the checks name: ``TOKEN``, ``TOKEN_NO_ZIP``, ``TOKEN_OTHER_APP``."""
    user_id, token = mint_test_token(emulator)
    return {
        "TOKEN": token,
        "TOKEN_NO_ZIP": emulator.mint(user_id, ("profile",), TEST_LIFETIME),
        "TOKEN_OTHER_APP": emulator.mint(
            user_id, TEST_SCOPES, TEST_LIFETIME, client_id=OTHER_CLIENT_ID
        ),
    }


def demo_banner(emulator: Emulator, url: str, tokens: Mapping[str, str]) -> str:
    """What ``lwa-middleware demo`` prints once serving."""
    width = max(len(check.curl(url)) for check in DEMO_CHECKS)
    lines = "\n".join(
        f"  {check.curl(url):<{width}}  # {check.outcome()}: {check.title}" for check in DEMO_CHECKS
    )
    return f"""\
Demo app running at {url} (instructions: curl {url}/), behind LWAMiddleware.
LWA emulator at {emulator.url}, tokens issued to {emulator.client_id}.  Ctrl-C to stop.

In a browser: open {url}/ and click "Login with Amazon": the emulator's consent page
stands in for Amazon's; approve, see your profile at {url}/profile, then sign out.

Tokens for "{TEST_NAME}" (valid 1 h): TOKEN has profile and postal_code, TOKEN_NO_ZIP
only profile, TOKEN_OTHER_APP was issued to another client ID:

{shell_exports(tokens)}

Try:
{lines}"""


def _shown(body: str, wanted: str | None) -> str:
    """A body as the checks print it: whole when one line (JSON), else its first line
    that holds ``wanted`` (a metric's sample), else its first line, and "…"."""
    lines = body.strip().splitlines() or [""]
    if len(lines) == 1:
        return lines[0]
    samples = [line for line in lines if wanted and wanted in line and not line.startswith("#")]
    return (samples or lines)[0] + " …"


def run_checks(base_url: str, tokens: Mapping[str, str]) -> int:
    """Make every demo request, print each result; 0 when all are as expected."""
    failures = 0
    with httpx.Client(base_url=base_url, trust_env=False, timeout=10.0) as http:
        for check in DEMO_CHECKS:
            try:
                response = http.get(check.path, headers=check.headers(tokens))
            except httpx.HTTPError as exc:
                problem: str | None = f"request failed: {type(exc).__name__}"
                answer = "-"
            else:
                problem = check.judge(response)
                answer = f"{response.status_code} {_shown(response.text, check.text)}"
            failures += problem is not None
            mark = "PASS" if problem is None else "FAIL"
            who = f"${check.token}" if check.token else "no token"
            say(f"{mark}  GET {check.path} ({who}): {check.title}")
            say(f"      expected {check.expected()}; got {answer}")
            if problem is not None:
                say(f"      {problem}")
    steps, sign_in_failures = sign_in_checks(base_url)
    failures += sign_in_failures
    total = len(DEMO_CHECKS) + steps
    say(f"\n{total - failures}/{total} demo checks passed.", flush=True)
    return EXIT_OK if failures == 0 else EXIT_REFUSED
