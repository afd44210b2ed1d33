"""How the command talks and ends: exit statuses, output, and giving up after saying why.

Every line the command prints goes through ``say`` (so ``print`` lives here only); a
command that cannot go on says why and raises ``CommandFailed``, which ``main`` turns
into the exit status.
"""

from __future__ import annotations

import sys
from typing import NoReturn

EXIT_OK = 0
EXIT_REFUSED = 1  # inspect: the token is refused; demo --once: an answer was unexpected
EXIT_ERROR = 2  # usage error, cannot serve, or LWA could not be asked
EXIT_INTERRUPTED = 130  # Ctrl-C outside a server's wait


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
