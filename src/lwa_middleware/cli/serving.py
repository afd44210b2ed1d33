"""Serving from the command line, and the ``emulator`` subcommand.

Layer: ``cli`` (the command, on top of everything; see ``ARCHITECTURE.md``).

Starting servers (``start_server`` names the one that cannot listen), stopping on
SIGINT/SIGTERM (``stop_signals``, ``wait``), the emulator with its test customer
(``emulator_serving``, ``mint_test_token``), and the options the serving subcommands share.
Serving needs uvicorn (``pip install 'lwa-middleware[emulator]'``), imported only here.

"""

from __future__ import annotations

import argparse
import errno
import importlib
import json
import shlex
import signal
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, TypeVar

from lwa_middleware.cli.console import EXIT_OK, EXIT_REFUSED, CommandFailed, error, fail, say
from lwa_middleware.core.settings import is_insecure_http
from lwa_middleware.emulator.state import DEFAULT_APP_ID, DEFAULT_CLIENT_ID

if TYPE_CHECKING:
    from lwa_middleware.emulator import Emulator, ServerHandle

H = TypeVar("H", bound="ServerHandle")

HOST = "127.0.0.1"
EMULATOR_PORT = 8765

TEST_NAME = "Test Customer"
TEST_EMAIL = "test.customer@example.com"
TEST_POSTAL_CODE = "98101"
TEST_LIFETIME = 3600
TEST_SCOPES = ("profile", "postal_code")

_NEED_UVICORN = (
    "lwa-middleware {command} needs uvicorn, which is not installed.\n"
    "Install the emulator extra:  pip install 'lwa-middleware[emulator]'"
)


# Servers -----------------------------------------------------------------------------------


def require_uvicorn(command: str) -> None:
    """Give up (status 2, saying how to install it) unless uvicorn can be imported."""
    try:
        importlib.import_module("uvicorn")
    except ImportError:
        say(_NEED_UVICORN.format(command=command), err=True)
        raise CommandFailed from None


def start_server(what: str, host: str, port: int, start: Callable[[], H]) -> H:
    """``start()``'s server; when it cannot listen, give up naming ``what`` and why."""
    from lwa_middleware.emulator import ServerStartError

    try:
        return start()
    except (OSError, ServerStartError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        hint = ""
        if (isinstance(exc, OSError) and exc.errno == errno.EADDRINUSE) or (
            "in use" in reason.lower()
        ):
            hint = (
                "; choose another port (--port 0 picks a free one; "
                "the demo also has --emulator-port)"
            )
        fail(f"cannot serve the {what} on {host}:{port}: {reason}{hint}")


@contextmanager
def stop_signals() -> Iterator[threading.Event]:
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


def wait(stop: threading.Event, handles: Sequence[ServerHandle]) -> int:
    """Block until a stop signal (0) or until a server thread dies (1)."""
    while not stop.wait(0.2):
        for handle in handles:
            if not handle.running:
                error(f"the server at {handle.url} stopped unexpectedly")
                return EXIT_REFUSED
    say("\nStopping...", flush=True)
    return EXIT_OK


# The emulator and its test customer --------------------------------------------------------


@contextmanager
def emulator_serving(
    args: argparse.Namespace, port: int, *, farewell: str | None = None
) -> Iterator[tuple[Emulator, ServerHandle]]:
    """The emulator for ``args`` serving on ``args.host:port`` while the block runs.

    Gives up (status 2) when it cannot listen; once it has stopped, says ``farewell``.
    """
    from lwa_middleware.emulator import Emulator

    emulator = Emulator(client_id=args.client_id, app_id=args.app_id)
    server = start_server("LWA emulator", args.host, port, lambda: emulator.start(args.host, port))
    try:
        yield emulator, server
    finally:
        emulator.stop()
        if farewell is not None:
            say(farewell, flush=True)


def mint_test_token(emulator: Emulator, scopes: Sequence[str] = TEST_SCOPES) -> tuple[str, str]:
    """``(user_id, token)`` for the test customer, with ``scopes``, valid one hour."""
    user, token = emulator.mint_for(
        name=TEST_NAME,
        email=TEST_EMAIL,
        postal_code=TEST_POSTAL_CODE,
        scopes=tuple(scopes),
        lifetime=TEST_LIFETIME,
    )
    return user.user_id, token


def shell_exports(tokens: Mapping[str, str]) -> str:
    """One indented ``export NAME='token'`` line per token, quoted for the shell."""
    return "\n".join(f"  export {name}={shlex.quote(token)}" for name, token in tokens.items())


# Options -----------------------------------------------------------------------------------


def port_number(text: str) -> int:
    """``--port``'s type: a whole number from 0 (any free port) to 65535."""
    try:
        port = int(text)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(
            f"expected a port number from 0 to 65535 (0: any free port), got {text!r}"
        )
    return port


def identifier(text: str) -> str:
    """``--client-id``'s and ``--app-id``'s type: non-empty text, stripped."""
    if not text.strip():
        raise argparse.ArgumentTypeError(f"expected a non-empty ID, got {text!r}")
    return text.strip()


def add_serving_parser(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    name: str,
    *,
    summary: str,
    description: str,
    port: int | None,
    port_help: str = "the port to listen on; 0 picks a free one (default: %(default)s)",
) -> argparse.ArgumentParser:
    """The subcommand ``name``, with its ``--host`` and ``--port``."""
    parser = commands.add_parser(name, help=summary, description=description)
    parser.add_argument(
        "--host", default=HOST, help="the address to listen on (default: %(default)s)"
    )
    parser.add_argument("--port", type=port_number, default=port, metavar="PORT", help=port_help)
    return parser


def add_emulator_ids(parser: argparse.ArgumentParser) -> None:
    """``--client-id`` and ``--app-id``: what the emulator issues tokens to."""
    parser.add_argument(
        "--client-id",
        type=identifier,
        default=DEFAULT_CLIENT_ID,
        metavar="ID",
        help="the client ID tokens are issued to (aud; default: %(default)s)",
    )
    parser.add_argument(
        "--app-id",
        type=identifier,
        default=DEFAULT_APP_ID,
        metavar="ID",
        help="the app_id tokens carry (default: %(default)s)",
    )


# lwa-middleware emulator -------------------------------------------------------------------


def add_emulator_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``lwa-middleware emulator``."""
    parser = add_serving_parser(
        commands,
        "emulator",
        summary="serve the LWA emulator and print a ready test token",
        description="Serve the Login with Amazon emulator (token-info, profile, and "
        "control endpoints under /_emulator) until Ctrl-C.",
        port=EMULATOR_PORT,
    )
    add_emulator_ids(parser)
    parser.set_defaults(run=run_emulator)


def run_emulator(args: argparse.Namespace) -> int:
    """Serve the emulator until Ctrl-C, after printing a test token and how to use it."""
    require_uvicorn("emulator")
    with (
        stop_signals() as stop,
        emulator_serving(args, args.port, farewell="LWA emulator stopped.") as (emulator, server),
    ):
        _, token = mint_test_token(emulator)
        say(emulator_banner(emulator, token), flush=True)
        return wait(stop, [server])


def emulator_banner(emulator: Emulator, token: str) -> str:
    """What ``lwa-middleware emulator`` prints once serving."""
    url = emulator.url
    mint = json.dumps({"name": "Grace Hopper", "scopes": ["profile"]})
    # Plain http beyond loopback is refused unless the app allows it (only for an emulator).
    insecure = " LWA_ALLOW_INSECURE_HTTP=true" if is_insecure_http(url) else ""
    return f"""\
LWA emulator running at {url}  (Ctrl-C to stop)
  client_id  {emulator.client_id}
  app_id     {emulator.app_id}

A test token for "{TEST_NAME}" <{TEST_EMAIL}>, postal code {TEST_POSTAL_CODE},
scopes {" ".join(TEST_SCOPES)}, valid 1 h:

{shell_exports({"TOKEN": token})}

Ask the emulator about it, as LWA would answer:
  curl -s -H "x-amz-access-token: $TOKEN" {url}/auth/o2/tokeninfo
  curl -s -H "Authorization: Bearer $TOKEN" {url}/user/profile

Mint another token:
  curl -s -X POST {url}/_emulator/tokens -H 'content-type: application/json' \\
       -d {shlex.quote(mint)}

Point an app at it:
  export LWA_API_BASE_URL={url} LWA_CLIENT_IDS={emulator.client_id}{insecure}"""
