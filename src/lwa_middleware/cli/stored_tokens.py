"""The ``token`` and ``logout`` subcommands, and what ``login`` shares with them.

Layer: ``cli`` (the command, on top of everything; see ``ARCHITECTURE.md``).

* ``lwa-middleware token [--client-id ID] [--api-base-url URL | --region R]``: print the
  stored login's access token on standard output (only the token and a newline), refreshed
  first when it expires within ``--min-valid`` seconds, so
  ``curl -H @<(printf 'Authorization: Bearer %s\n' "$(lwa-middleware token)") …`` works
  (the header on a file descriptor: never in curl's arguments, which ``ps`` shows). With no
  ``--client-id`` (or ``--api-base-url``), the only stored login that matches is used.
* ``lwa-middleware logout [--client-id ID] [--api-base-url URL | --region R] [--all]``:
  forget a stored login (the file entry and the keyring's password).

Where the tokens are kept: :mod:`lwa_middleware.callers.token_store`. ``clock`` is the seam tests
move time with (the command runs in-process there).

"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from lwa_middleware.callers.token_store import (
    STORE_VARIABLE,
    AmbiguousLogin,
    NotLoggedIn,
    StoredTokens,
    TokenStore,
    TokenStoreError,
)
from lwa_middleware.cli.console import (
    EXIT_OK,
    EXIT_REFUSED,
    CommandFailed,
    add_where_options,
    error,
    fail,
    non_negative_seconds,
    say,
)
from lwa_middleware.cli.serving import identifier
from lwa_middleware.core.errors import ConfigurationError
from lwa_middleware.core.grants import (
    GrantError,
    GrantUnavailable,
    InvalidClient,
    InvalidGrant,
    UnauthorizedClient,
)
from lwa_middleware.core.settings import (
    is_insecure_http,
    resolve_api_base_url,
)
from lwa_middleware.upstream.token_client import TokenClient

__all__ = [
    "add_logout_command",
    "add_token_command",
    "run_logout",
    "run_token",
]

#: The clock of ``token`` (epoch seconds); tests replace it.
clock: Callable[[], float] = time.time

DEFAULT_MIN_VALID = 60.0
_LOGIN_AGAIN = "run `lwa-middleware login --client-id {client_id}`"


# What the three commands share ---------------------------------------------------------


def api_base_url_of(args: argparse.Namespace, *, default: str | None) -> str | None:
    """The API base URL of ``--api-base-url``/``--region`` (``default`` when neither)."""
    if args.api_base_url is None and args.region is None:
        return default
    try:
        return resolve_api_base_url(args.api_base_url, args.region)
    except ConfigurationError as exc:
        fail(f"--api-base-url: {exc}")


def open_store(*, keyring: bool | None = None) -> TokenStore:
    """The token store (gives up with status 2 when it cannot be used)."""
    try:
        return TokenStore(keyring=keyring)
    except TokenStoreError as exc:
        fail(str(exc))


@contextmanager
def locked_store() -> Iterator[TokenStore]:
    """The token store, locked meanwhile (gives up with status 2 when it cannot be used)."""
    store = open_store()
    try:
        with store.lock():
            yield store
    except TokenStoreError as exc:
        fail(str(exc))


def refused(message: str) -> CommandFailed:
    """Say ``message`` as an error; the failure (status 1) to raise."""
    error(message)
    return CommandFailed(EXIT_REFUSED)


def find_login(store: TokenStore, client_id: str | None, api_base_url: str | None) -> StoredTokens:
    """The one stored login matching; not logged in is status 1, several matches 2."""
    try:
        return store.find(client_id, api_base_url)
    except NotLoggedIn as exc:
        raise refused(str(exc)) from None
    except AmbiguousLogin as exc:
        fail(str(exc))
    except TokenStoreError as exc:
        fail(str(exc))


# token -------------------------------------------------------------------------------------


def add_token_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``lwa-middleware token``."""
    parser = commands.add_parser(
        "token",
        help="print a valid access token of the stored login",
        description="Print the access token stored by `lwa-middleware login` on standard "
        "output (only the token, then a newline), refreshing it first when it expires "
        "soon; e.g. curl -H @<(printf 'Authorization: Bearer %s\\n' "
        '"$(lwa-middleware token)") URL (the header on a file descriptor, not in curl\'s '
        "arguments). "
        f"{STORE_VARIABLE}=file keeps the tokens out of the OS keyring.",
        epilog="Exit status: 0 the token was printed, 1 not logged in or the refresh token "
        "was refused (run lwa-middleware login), 2 usage error, several logins match, or "
        "LWA could not be asked.",
    )
    parser.add_argument(
        "--client-id",
        type=identifier,
        metavar="ID",
        help="the client ID of the stored login (default: the only stored login)",
    )
    add_where_options(
        parser,
        url_help="the API base URL of the stored login to use (default: any; needed only "
        "when several logins of one client ID are stored)",
    )
    parser.add_argument(
        "--min-valid",
        type=non_negative_seconds,
        default=DEFAULT_MIN_VALID,
        metavar="SECONDS",
        help="refresh the token first when it expires within this many seconds "
        "(default: %(default)s)",
    )
    parser.set_defaults(run=run_token)


def run_token(args: argparse.Namespace) -> int:
    """Print a valid access token (refreshed and stored back when it expires soon)."""
    api_base_url = api_base_url_of(args, default=None)
    with locked_store() as store:
        login = find_login(store, args.client_id, api_base_url)
        if login.expires_within(args.min_valid, clock()):
            login = _refresh(store, login, args.timeout)
    say(login.access_token)
    return EXIT_OK


def _refresh(store: TokenStore, login: StoredTokens, timeout: float) -> StoredTokens:
    """``login`` refreshed and stored (the caller holds the store's lock)."""
    again = _LOGIN_AGAIN.format(client_id=login.client_id)
    if is_insecure_http(login.api_base_url) and not login.allow_insecure_http:
        fail(f"the stored login's API base URL is plain http beyond loopback; {again}")
    try:
        with TokenClient(
            login.api_base_url, timeout=timeout, allow_insecure_http=login.allow_insecure_http
        ) as client:
            grant = client.refresh(login.refresh_token, client_id=login.client_id)
    except (InvalidGrant, InvalidClient, UnauthorizedClient) as exc:
        raise refused(
            f"Login with Amazon refused the stored refresh token ({exc.error}: revoked, "
            f"expired, or the client changed); {again}"
        ) from None
    except GrantUnavailable as exc:
        fail(f"could not refresh the access token: {exc.description} Try again.")
    except GrantError as exc:
        fail(f"could not refresh the access token: {exc.error}: {exc.description}")
    except ConfigurationError as exc:
        fail(str(exc))
    refreshed = login.refreshed(grant, clock())
    store.save(refreshed)
    return refreshed


# logout ------------------------------------------------------------------------------------


def add_logout_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``lwa-middleware logout``."""
    parser = commands.add_parser(
        "logout",
        help="forget the stored tokens of a login",
        description="Forget the tokens `lwa-middleware login` stored (the file entry and "
        "the OS keyring's password). LWA has no endpoint to revoke a refresh token: to "
        "revoke it at Amazon, remove the app's access in your Amazon account.",
        epilog="Exit status: 0 forgotten (or nothing was stored), 2 usage error or several "
        "logins match (pass --client-id, or --all).",
    )
    parser.add_argument(
        "--client-id",
        type=identifier,
        metavar="ID",
        help="the client ID of the login to forget (default: the only stored login)",
    )
    add_where_options(
        parser, url_help="the API base URL of the login to forget (default: any)", timeout=False
    )
    parser.add_argument(
        "--all",
        action="store_true",
        help="forget every stored login (default: off)",
    )
    parser.set_defaults(run=run_logout)


def run_logout(args: argparse.Namespace) -> int:
    """Forget the matching login (every matching login with ``--all``)."""
    api_base_url = api_base_url_of(args, default=None)
    with locked_store() as store:
        logins = [
            (api, client)
            for api, client in store.logins()
            if (args.client_id is None or client == args.client_id)
            and (api_base_url is None or api == api_base_url)
        ]
        if len(logins) > 1 and not args.all:
            listed = "; ".join(f"{client} at {api}" for api, client in logins)
            fail(
                f"several logins are stored ({listed}): pass --client-id (and "
                "--api-base-url), or --all"
            )
        for api, client in logins:
            store.delete(api, client)
    if not logins:
        say("No stored login matched: nothing to forget.", err=True)
    for api, client in logins:
        say(f"Logged out: forgot the tokens of {client} at {api}.", err=True)
    return EXIT_OK
