"""The ``login`` subcommand: sign a person in with Amazon's code-pair (device) flow and
store the tokens.

Layer: ``cli`` (the command, on top of everything; see ``ARCHITECTURE.md``).

``lwa-middleware login --client-id ID`` asks LWA for a code pair, prints the page to open
and the code to enter (standard output), polls the token endpoint as
:class:`~lwa_middleware.core.device.DevicePoll` decides (the interval, ``slow_down`` and the
pair's expiry) with a countdown on standard error (one line rewritten in place on a
terminal, a plain line now and then otherwise), and stores the tokens
(:mod:`lwa_middleware.callers.token_store`): in the OS keyring when the ``keyring`` package is
installed (``--no-keyring``: not), else in a ``0600`` JSON file. No token is printed.

``clock`` and ``sleep`` are the seams tests move time with (the command runs in-process).

"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Callable
from typing import NoReturn, TextIO

from lwa_middleware.callers.device_flow import DeviceFlow
from lwa_middleware.callers.token_store import STORE_VARIABLE, StoredTokens, TokenStoreError
from lwa_middleware.cli.console import EXIT_OK, add_where_options, fail, say
from lwa_middleware.cli.serving import identifier
from lwa_middleware.cli.stored_tokens import (
    api_base_url_of,
    open_store,
    refused,
)
from lwa_middleware.core.device import CodePair, Wait
from lwa_middleware.core.errors import ConfigurationError
from lwa_middleware.core.grants import (
    GrantError,
    GrantUnavailable,
    InvalidClient,
    InvalidCodePair,
    InvalidGrant,
    InvalidScope,
    UnauthorizedClient,
)
from lwa_middleware.core.settings import DEFAULT_API_BASE_URL, is_insecure_http

__all__ = ["Countdown", "add_login_command", "run_login"]

#: The clock and the sleep of ``login``; tests replace them.
clock: Callable[[], float] = time.time
sleep: Callable[[float], object] = time.sleep

#: The shortest wait between two polls, whatever the answer says (an interval of 0).
MIN_INTERVAL = 1.0


def _left(seconds: float) -> str:
    whole = max(0, math.ceil(seconds))
    return f"{whole // 60}:{whole % 60:02d}"


class Countdown:
    """The waiting line on ``stream``: rewritten each second on a terminal; otherwise a
    line when waiting starts, when the interval changes and each minute."""

    def __init__(
        self,
        pair: CodePair,
        stream: TextIO,
        *,
        clock: Callable[[], float],
        sleep: Callable[[float], object],
        tty: bool | None = None,
    ) -> None:
        self.pair = pair
        self.stream = stream
        self.clock = clock
        self._sleep = sleep
        self.tty = stream.isatty() if tty is None else tty
        self.interval: float | None = None
        self._minute: int | None = None
        self._drawn = False

    def _line(self, text: str) -> None:
        self.stream.write(text + "\n")
        self.stream.flush()

    def _draw(self, text: str) -> None:
        self.stream.write("\r\x1b[2K" + text)
        self.stream.flush()
        self._drawn = True

    def on_wait(self, wait: Wait) -> None:
        """Before each wait: tell when polling starts or slows down."""
        previous, self.interval = self.interval, wait.interval
        if previous is None:
            message = (
                f"Waiting for approval (the code expires in {_left(wait.expires_in)}; "
                f"checking every {wait.interval:g} s)..."
            )
        elif wait.interval > previous:
            message = f"Login with Amazon asked to check less often: every {wait.interval:g} s."
        else:
            return
        if self.tty:
            self.end()
        self._line(message)

    def sleep(self, seconds: float) -> None:
        """Sleep ``seconds``, showing the time left on a terminal (each second)."""
        if not self.tty:
            left = self.pair.expires_at - self.clock()
            minute = math.ceil(left / 60)
            if self._minute is not None and minute < self._minute:
                self._line(f"Still waiting: the code expires in {_left(left)}.")
            self._minute = minute
            self._sleep(seconds)
            return
        until = self.clock() + seconds
        while True:
            now = self.clock()
            remaining = until - now
            self._draw(
                f"Waiting for approval... the code expires in "
                f"{_left(self.pair.expires_at - now)}  (Ctrl-C to cancel)"
            )
            if remaining <= 0:
                return
            self._sleep(min(1.0, remaining))

    def end(self) -> None:
        """End the rewritten line (before any other output)."""
        if self._drawn:
            self.stream.write("\r\x1b[2K")
            self.stream.flush()
            self._drawn = False


def add_login_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``lwa-middleware login``."""
    parser = commands.add_parser(
        "login",
        help="sign in with Amazon (code pair) and store the tokens",
        description="Sign in with Login with Amazon's code-pair flow: open the printed page "
        "in any browser, enter the printed code and approve. The tokens are stored in the "
        "OS keyring when the keyring package is installed, else in a private file in your "
        "config directory; `lwa-middleware token` prints the access token. "
        f"{STORE_VARIABLE}=file keeps the tokens out of the OS keyring.",
        epilog="Exit status: 0 logged in, 1 denied, expired or refused by LWA, 2 usage "
        "error, LWA could not be asked, or the tokens could not be stored; 130 cancelled.",
    )
    parser.add_argument(
        "--client-id",
        type=identifier,
        required=True,
        metavar="ID",
        help="the LWA client ID (security profile) to sign in to (required)",
    )
    parser.add_argument(
        "--scope",
        type=_scope,
        default="profile",
        metavar="SCOPE",
        help="the scopes to ask for, space-separated (default: %(default)s)",
    )
    add_where_options(
        parser,
        insecure_help="allow a plain http:// --api-base-url to a host that is not loopback "
        "(default: off; http to 127.0.0.1, ::1 or localhost, e.g. the emulator, is always "
        "allowed)",
    )
    parser.add_argument(
        "--no-keyring",
        action="store_true",
        help="store the tokens in the file, not in the OS keyring (default: the keyring "
        "when the keyring package is installed)",
    )
    parser.set_defaults(run=run_login)


def _scope(text: str) -> str:
    scope = " ".join(text.split())
    if not scope or not scope.isprintable():
        raise argparse.ArgumentTypeError(f"expected space-separated scopes, got {text!r}")
    return scope


def _show(pair: CodePair) -> None:
    say("To sign in, open this page in a browser (on any device):")
    say()
    say(f"    {pair.verification_uri}")
    say()
    say("and enter the code:")
    say()
    say(f"    {pair.user_code}")
    say(flush=True)


def run_login(args: argparse.Namespace) -> int:
    """Sign in with a code pair, store the tokens."""
    api_base_url = api_base_url_of(args, default=DEFAULT_API_BASE_URL)
    assert api_base_url is not None
    if is_insecure_http(api_base_url) and not args.allow_insecure_http:
        fail(
            "--api-base-url: plain http:// to a host that is not loopback would send the "
            "tokens unencrypted; use https://, or pass --allow-insecure-http"
        )
    store = open_store(keyring=False if args.no_keyring else None)
    try:  # before a code is shown: nobody should approve tokens that cannot be kept
        store.check_writable()
    except TokenStoreError as exc:
        fail(f"the tokens could not be stored: {exc}; set XDG_CONFIG_HOME to a writable place")
    try:
        flow = DeviceFlow(
            args.client_id,
            scope=args.scope,
            api_base_url=api_base_url,
            timeout=args.timeout,
            allow_insecure_http=args.allow_insecure_http,
            clock=clock,
            sleep=sleep,
            min_interval=MIN_INTERVAL,
        )
    except ConfigurationError as exc:
        fail(str(exc))
    with flow:
        try:
            pair = flow.start()
        except GrantError as exc:
            _failed(exc, args.client_id, starting=True)
        _show(pair)
        countdown = Countdown(pair, sys.stderr, clock=clock, sleep=sleep)
        flow.sleep = countdown.sleep
        try:
            grant = flow.wait(pair, on_wait=countdown.on_wait)
        except GrantError as exc:
            countdown.end()
            _failed(exc, args.client_id, starting=False)
        except KeyboardInterrupt:
            countdown.end()
            say("Login cancelled.", err=True)
            raise
        countdown.end()
    try:
        tokens = StoredTokens.from_grant(
            grant,
            api_base_url=api_base_url,
            client_id=args.client_id,
            now=clock(),
            scope=args.scope,
            allow_insecure_http=args.allow_insecure_http and is_insecure_http(api_base_url),
        )
        with store.lock():
            store.save(tokens)
            where = store.describe(tokens)
    except TokenStoreError as exc:
        fail(f"signed in, but the tokens could not be stored: {exc}")
    say(f"Logged in: the tokens of {args.client_id} at {api_base_url} are stored in {where}.")
    say("`lwa-middleware token` prints the access token (refreshed when needed).")
    return EXIT_OK


def _failed(exc: GrantError, client_id: str, *, starting: bool) -> NoReturn:
    """Say why the login failed and give up (1: refused, 2: LWA could not answer)."""
    again = "run `lwa-middleware login` again"
    if isinstance(exc, InvalidCodePair):
        raise refused(f"the code expired before it was approved; {again}")
    if isinstance(exc, InvalidGrant):
        raise refused(f"the sign-in was denied (or the code is no longer valid); {again}")
    if isinstance(exc, InvalidClient):
        raise refused(f"Login with Amazon does not know the client ID {client_id}")
    if isinstance(exc, UnauthorizedClient):
        raise refused(f"the client {client_id} may not sign in with a code pair")
    if isinstance(exc, InvalidScope):
        raise refused(f"Login with Amazon refused the scope: {exc.description}")
    if isinstance(exc, GrantUnavailable):
        what = "ask for a code pair" if starting else "finish the sign-in"
        fail(f"could not {what}: {exc.description} Try again.")
    raise refused(f"Login with Amazon refused the sign-in: {exc.error}: {exc.description}")
