"""The ``lwa-middleware`` command: ``emulator``, ``demo``, ``inspect``, ``login``, ``token``,
``logout`` and ``gateway``.

Layer: ``cli`` (the command, on top of everything; see ``ARCHITECTURE.md``).

* ``lwa-middleware emulator``: serve the LWA emulator in the foreground and print a ready
  test token; point an app at it with ``LWA_API_BASE_URL``.
* ``lwa-middleware demo``: the emulator plus a small app behind ``LWAMiddleware``, with
  curl lines for each outcome; ``--once`` makes those requests itself and exits 0 when
  every answer is the expected one (a smoke test for CI).
* ``lwa-middleware inspect --client-id ID < token.txt``: ask LWA about a token (read from
  standard input, never from the command line, where ``ps`` and shell history would see
  it) and say whether ``LWAMiddleware`` with these options would accept it.
* ``lwa-middleware login --client-id ID``: sign in with a code pair (open the printed page,
  enter the printed code) and store the tokens; ``lwa-middleware token`` prints a valid
  access token (refreshed when it expires soon) for ``curl -H "Authorization: Bearer
  $(lwa-middleware token)"``; ``lwa-middleware logout`` forgets them.
* ``lwa-middleware gateway --proxy nginx``: answer a proxy's forward-authentication checks
  (nginx ``auth_request``, Caddy ``forward_auth``, Traefik ``ForwardAuth``, Envoy
  ``ext_authz``) with the ``LWA_*`` environment's options (``gateway``).

This module builds the parser and runs the subcommand. The rest, one job a module:
``serving`` (starting, watching and stopping servers; the ``emulator`` subcommand),
``demo`` (the ``demo`` subcommand and its checks), ``inspection`` (the ``inspect``
subcommand), ``device_login`` (``login``), ``stored_tokens`` (``token``, ``logout``)
and ``console`` (exit statuses and output). Serving needs uvicorn
(``pip install 'lwa-middleware[emulator]'``), imported only then.

"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence

from lwa_middleware._version import __version__
from lwa_middleware.cli.console import EXIT_ERROR, EXIT_INTERRUPTED, CommandFailed
from lwa_middleware.cli.demo import add_demo_command
from lwa_middleware.cli.device_login import add_login_command
from lwa_middleware.cli.gateway import add_gateway_command
from lwa_middleware.cli.inspection import Inspection, add_inspect_command, inspect_token
from lwa_middleware.cli.serving import add_emulator_command
from lwa_middleware.cli.stored_tokens import add_logout_command, add_token_command

__all__ = ["Inspection", "build_parser", "inspect_token", "main"]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``lwa-middleware``."""
    parser = argparse.ArgumentParser(
        prog="lwa-middleware",
        description="Login with Amazon middleware tools: a local LWA emulator, a demo, "
        "a token inspector, sign-in for calling protected routes (login, token, logout), and "
        "a forward-auth gateway for nginx, Caddy, Traefik and Envoy.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for add_command in (
        add_emulator_command,
        add_demo_command,
        add_inspect_command,
        add_login_command,
        add_token_command,
        add_logout_command,
        add_gateway_command,
    ):
        add_command(commands)
    for command in commands.choices.values():  # its usage errors show its own usage
        command.set_defaults(command_parser=command)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``lwa-middleware``; return the exit status."""
    parser = build_parser()
    try:
        args, extras = parser.parse_known_args(argv)
        if extras:
            command: argparse.ArgumentParser = args.command_parser
            command.error(_unrecognized(extras))
    except SystemExit as exc:  # --help, --version, usage errors
        return exc.code if isinstance(exc.code, int) else EXIT_ERROR
    run: Callable[[argparse.Namespace], int] = args.run
    try:
        return run(args)
    except CommandFailed as failed:  # it has said why
        return failed.exit_code
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # `... | head`: the reader is gone; exit quietly
        _silence_stdout()
        return EXIT_BROKEN_PIPE


#: The status of a command whose reader went away (as a shell reports SIGPIPE: 128 + 13).
EXIT_BROKEN_PIPE = 141


def _silence_stdout() -> None:
    """Point standard output at the null device, so the interpreter's last flush of what
    is still buffered raises no second ``BrokenPipeError`` at exit (Python's documented
    recipe for SIGPIPE)."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # no real file descriptor (a test's capture)
        pass
    finally:
        os.close(devnull)


def _unrecognized(extras: Sequence[str]) -> str:
    """The usage error for ``extras``: options named, other arguments (a token?) not shown."""
    options = [arg for arg in extras if arg.startswith("-")]
    others = len(extras) - len(options)
    shown = " ".join(options)
    if others:
        hidden = f"{others} positional argument{'s' if others > 1 else ''} (not shown)"
        shown = f"{shown} and {hidden}" if shown else hidden
    message = f"unrecognized arguments: {shown}"
    if others:
        message += "; no command takes one: inspect reads the token from standard input"
    return message
