"""How the command talks and ends: exit statuses, output, and giving up after saying why
(and the options the subcommands share: where LWA is, how long to wait for it).

Layer: ``cli`` (the command, on top of everything; see ``ARCHITECTURE.md``).

Every line the command prints goes through ``say`` (so ``print`` lives here only); a
command that cannot go on says why and raises ``CommandFailed``, which ``main`` turns
into the exit status.

"""

from __future__ import annotations

import argparse
import math
import sys
from typing import NoReturn

from lwa_middleware.core.settings import DEFAULT_API_BASE_URL, REGIONS

EXIT_OK = 0
EXIT_REFUSED = 1  # inspect: the token is refused; demo --once: an answer was unexpected
EXIT_ERROR = 2  # usage error, cannot serve, or LWA could not be asked
EXIT_INTERRUPTED = 130  # Ctrl-C outside a server's wait

#: ``--api-base-url``'s help where it names LWA itself (not a stored login).
LWA_URL_HELP = (
    f"LWA's API base URL, e.g. the emulator's (default: {DEFAULT_API_BASE_URL}, the NA region's)"
)


class CommandFailed(Exception):
    """The command gave up after saying why; ``main`` returns ``exit_code``."""

    def __init__(self, exit_code: int = EXIT_ERROR) -> None:
        super().__init__(exit_code)
        self.exit_code = exit_code


def say(text: str = "", *, err: bool = False, flush: bool = False) -> None:
    """Print ``text`` on standard output (standard error with ``err``)."""
    print(text, file=sys.stderr if err else sys.stdout, flush=flush)


def error(message: str) -> None:
    """Print ``lwa-middleware: error: message`` on standard error."""
    say(f"lwa-middleware: error: {message}", err=True)


def fail(message: str) -> NoReturn:
    """Say ``message`` as an error and give up with status 2."""
    error(message)
    raise CommandFailed(EXIT_ERROR)


def seconds(text: str) -> float:
    """A positive, finite number of seconds (``--timeout``)."""
    return _seconds(text, positive=True)


def non_negative_seconds(text: str) -> float:
    """A finite number of seconds, zero or more (``--min-valid``)."""
    return _seconds(text, positive=False)


def _seconds(text: str, *, positive: bool) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if math.isfinite(value) and (value > 0 if positive else value >= 0):
        return value
    wanted = "a positive number of seconds" if positive else "a number of seconds >= 0"
    raise argparse.ArgumentTypeError(f"expected {wanted}, got {text!r}")


def add_where_options(
    parser: argparse.ArgumentParser,
    *,
    url_help: str = LWA_URL_HELP,
    insecure_help: str | None = None,
    timeout: bool = True,
) -> None:
    """``--api-base-url`` / ``--region`` (and ``--allow-insecure-http`` when it has a help,
    and ``--timeout``)."""
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--api-base-url", metavar="URL", help=url_help)
    where.add_argument(
        "--region",
        choices=sorted(REGIONS),
        help="LWA's region, instead of --api-base-url (default: none)",
    )
    if insecure_help is not None:
        parser.add_argument("--allow-insecure-http", action="store_true", help=insecure_help)
    if timeout:
        parser.add_argument(
            "--timeout",
            type=seconds,
            default=5.0,
            metavar="SECONDS",
            help="time budget per call to LWA (default: %(default)s)",
        )
