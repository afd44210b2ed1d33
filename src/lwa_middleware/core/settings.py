"""``LWASettings``: every option of both middlewares, frozen and validated once.

Layer: ``core`` (no I/O, no clock reads, no asyncio; see ``ARCHITECTURE.md``).

Build it directly, from keyword options (``LWASettings.build(None, {...})``, what the
middlewares do), or from ``LWA_*`` environment variables (:meth:`LWASettings.from_env`).
A bad option is a :class:`~lwa_middleware.core.errors.ConfigurationError` at construction,
never a surprise at the first request.

"""

from __future__ import annotations

import dataclasses
import difflib
import importlib.util
import ipaddress
import json
import math
import os
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal, TypedDict, cast
from urllib.parse import urlsplit

from lwa_middleware.core.errors import ConfigurationError, ErrorStyle
from lwa_middleware.core.keys import SecretKey, secret_keys
from lwa_middleware.core.models import SCOPE_POSTAL_CODE, SCOPE_PROFILE, SCOPE_USER_ID, Identity
from lwa_middleware.core.policy import check_judge, check_pattern, parse_allow, parse_deny
from lwa_middleware.core.users import UserLoader, check_loader

TokenSource = Literal["header", "cookie", "query"]

#: LWA's API host per region (sandbox: ``https://api.sandbox.<domain>``).
REGIONS: Mapping[str, str] = MappingProxyType(
    {
        "NA": "https://api.amazon.com",
        "EU": "https://api.amazon.co.uk",
        "FE": "https://api.amazon.co.jp",
    }
)
DEFAULT_API_BASE_URL = REGIONS["NA"]
KNOWN_SCOPES = frozenset({SCOPE_PROFILE, SCOPE_USER_ID, SCOPE_POSTAL_CODE})
TOKEN_SOURCES: frozenset[str] = frozenset({"header", "cookie", "query"})
ERROR_STYLES: frozenset[str] = frozenset({"lwa", "rfc6750"})


_QUOTES = "'\""
_SEPARATORS = re.compile(r"[\s,]+")


def _wrapped(text: str) -> bool:
    """Whether ``text`` is wholly wrapped in one pair of matching single or double quotes."""
    return len(text) >= 2 and text[0] == text[-1] and text[0] in _QUOTES


def _unquote(where: str, text: str, *, secret: bool = False) -> str:
    """``text`` without the matching quotes wholly wrapping it; any other quote is refused.

    ``secret`` text (a key) may hold quotes, and is never shown in an error.
    """
    if _wrapped(text):
        text = text[1:-1]
    if not secret and any(quote in text for quote in _QUOTES):
        raise ConfigurationError(
            f"{where} has a stray quote character in {text!r}: quote a whole value or "
            "item ('a' or \"a\") or nothing"
        )
    return text


def split_items(where: str, text: str) -> tuple[str, ...]:
    """The items of a list written as one string, as ``LWA_*`` variables write lists.

    Items are separated by commas and/or whitespace; an item (or the whole text) wholly
    wrapped in matching quotes loses them, any other quote is refused; text starting
    with ``[`` is a JSON list of non-empty strings. ``where`` (the variable or option
    name) is named in errors.
    """
    text = text.strip()
    if text.startswith("["):
        return _json_list(where, text)
    if _wrapped(text) and text[0] not in text[1:-1]:
        text = text[1:-1]
    return tuple(_unquote(where, item) for item in _SEPARATORS.split(text) if item)


def _json_list(where: str, text: str) -> tuple[str, ...]:
    try:
        value = json.loads(text)
    except ValueError as exc:
        detail = exc.msg if isinstance(exc, json.JSONDecodeError) else "invalid JSON"
        raise ConfigurationError(f"{where} is not a valid JSON list: {detail}") from None
    if not isinstance(value, list) or not all(
        isinstance(item, str) and item.strip() for item in value
    ):
        raise ConfigurationError(f"{where} must be a JSON list of non-empty strings")
    return tuple(value)


def _strings(name: str, value: object) -> tuple[str, ...]:
    """A tuple of non-empty strings; a lone string is split as :func:`split_items` does."""
    if isinstance(value, str):
        value = split_items(name, value)
    if not isinstance(value, Iterable):
        raise ConfigurationError(f"{name} must be a list of strings, got {type(value).__name__}")
    items = tuple(value)
    for item in items:
        if not isinstance(item, str) or not item.strip():
            raise ConfigurationError(f"{name} must hold non-empty strings, got {item!r}")
    return tuple(item.strip() for item in items)


def _patterns(name: str, value: object) -> tuple[str, ...]:
    patterns = _strings(name, value)
    for pattern in patterns:
        if not pattern.startswith("/"):
            raise ConfigurationError(f"{name}: path pattern {pattern!r} must start with '/'")
        if any(char.isspace() for char in pattern):
            raise ConfigurationError(
                f"{name}: path pattern {pattern!r}: path patterns cannot contain whitespace "
                "(a space in a URL path arrives decoded: match it with '?' in the glob)"
            )
    return patterns


def _scopes(pattern: str, value: object) -> frozenset[str]:
    scopes = frozenset(value.split()) if isinstance(value, str) else frozenset(_strings("", value))
    if not scopes:
        raise ConfigurationError(f"require_scopes[{pattern!r}] names no scope")
    unknown = scopes - KNOWN_SCOPES
    if unknown:
        raise ConfigurationError(
            f"require_scopes[{pattern!r}]: unknown scope(s) {sorted(unknown)}; "
            f"LWA grants {sorted(KNOWN_SCOPES)}"
        )
    return scopes


def _number(name: str, value: object, *, minimum: float, integer: bool = False) -> Any:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigurationError(f"{name} must be a number, got {value!r}")
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigurationError(f"{name} must be a finite number, got {value!r}")
    if integer and not isinstance(value, int):
        raise ConfigurationError(f"{name} must be a whole number, got {value!r}")
    if value < minimum:
        raise ConfigurationError(f"{name} must be at least {minimum}, got {value!r}")
    return value


def _base_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigurationError(f"api_base_url must be an http(s) URL, got {value!r}")
    if parts.query or parts.fragment:
        raise ConfigurationError("api_base_url must not carry a query or fragment")
    path = parts.path.lower()
    if any(endpoint in path for endpoint in _ENDPOINT_PATHS):
        raise ConfigurationError(
            f"api_base_url must be the API's base URL (such as https://api.amazon.com), "
            f"not an endpoint's: drop the path {parts.path!r}"
        )
    return value.rstrip("/")


#: Paths of LWA's endpoints: an ``api_base_url`` that holds one is an endpoint's URL.
_ENDPOINT_PATHS = ("/auth/o2", "/user/profile", "/ap/oa")
#: What an LWA app ID (not a client ID) begins with: ``amzn1.application.…``.
_APP_ID_PREFIX = "amzn1.application."


#: The longest ``redis_timeout``: Redis is an accelerator, never a reason a request is slow.
MAX_REDIS_TIMEOUT = 0.25
REDIS_SCHEMES = frozenset({"redis", "rediss", "unix"})
_PREFIX = re.compile(r"[A-Za-z0-9_.:-]{1,64}")


def _redis_url(value: object) -> None:
    """Refuse a ``redis_url`` redis-py cannot use (the message never shows the URL: it may
    carry a password)."""
    if not isinstance(value, str) or not value.strip():
        raise ConfigurationError("redis_url must be a non-empty string")
    parts = urlsplit(value.strip())
    if parts.scheme.lower() not in REDIS_SCHEMES:
        raise ConfigurationError(
            f"redis_url must start with redis://, rediss:// or unix://, "
            f"got a {parts.scheme or 'scheme-less'!s} URL"
        )
    if parts.scheme.lower() != "unix" and not parts.hostname:
        raise ConfigurationError("redis_url must name a host (redis://host:6379/0)")


def _importable(module: str) -> bool:
    """Whether ``module`` could be imported (found, not imported: nothing is loaded)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a parent missing; a module blocked with None
        return False


def _origins(value: object) -> tuple[str, ...]:
    """``scheme://host[:port]`` origins, lower-cased, without a trailing slash."""
    origins = []
    for item in _strings("csrf_trusted_origins", value):
        parts = urlsplit(item.lower().rstrip("/"))
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.path:
            raise ConfigurationError(
                f"csrf_trusted_origins must hold origins like https://app.example.com, got {item!r}"
            )
        origins.append(f"{parts.scheme}://{parts.netloc}")
    return tuple(origins)


#: ``authorize``: ``(identity, method, path) -> bool`` (async allowed under ASGI).
Authorize = Callable[[Identity, str, str], "bool | Awaitable[bool]"]
#: Rules as the options take them: a list of rule strings, or one string of them.
RuleList = str | Iterable[str]


def _rule_texts(value: object) -> tuple[str, ...]:
    """A list of rules as stored: stripped strings (already checked by the parser)."""
    if isinstance(value, str):
        return tuple(item for item in _SEPARATORS.split(value) if item)
    return tuple(str(item).strip() for item in cast(Iterable[object], value))


def _allow(value: object) -> Mapping[str, tuple[str, ...]] | None:
    """``allow`` checked (a malformed rule is a ``ConfigurationError``) and stored read-only."""
    if value is None:
        return None
    parse_allow("allow", value)
    assert isinstance(value, Mapping)
    return MappingProxyType(
        {check_pattern("allow", k): _rule_texts(rules) for k, rules in value.items()}
    )


def _deny(value: object) -> tuple[str, ...] | Mapping[str, tuple[str, ...]]:
    """``deny`` checked and stored: a tuple of rules, or a read-only mapping."""
    if value is None:
        return ()
    parse_deny("deny", value)
    if isinstance(value, Mapping):
        return MappingProxyType(
            {check_pattern("deny", k): _rule_texts(rules) for k, rules in value.items()}
        )
    return _rule_texts(value)


def is_loopback_host(host: str) -> bool:
    """Whether ``host`` is ``localhost``, a 127.0.0.0/8 address or ``::1``."""
    if host.lower() == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


def is_insecure_http(url: str) -> bool:
    """Whether ``url`` is plain ``http://`` to a host that is not loopback."""
    parts = urlsplit(url)
    return parts.scheme.lower() == "http" and not is_loopback_host(parts.hostname or "")


class LWAOptions(TypedDict, total=False):
    """The keyword options of both middlewares (typed ``**options``; see :class:`LWASettings`)."""

    client_ids: str | Iterable[str]
    app_ids: str | Iterable[str]
    api_base_url: str
    region: str | None
    token_sources: str | Iterable[TokenSource]  # one string: "header cookie"
    cookie_name: str
    protect: str | Iterable[str]  # one string is split on commas and whitespace
    exclude: str | Iterable[str]
    optional: str | Iterable[str]
    require_scopes: Mapping[str, str | Iterable[str]]
    cache_ttl: float
    cache_maxsize: int
    negative_ttl: float
    negative_maxsize: int
    expiry_leeway: float
    timeout: float
    max_concurrent_verifications: int
    max_queued_verifications: int
    check_token_prefix: bool
    verify_preflight: bool
    allow_insecure_http: bool
    error_style: ErrorStyle
    redis_url: str | None
    redis_prefix: str
    redis_timeout: float
    redis_backoff: float
    secret_key: SecretKey | None
    csrf_protection: bool
    csrf_trusted_origins: str | Iterable[str]
    realm: str
    breaker_failures: int
    breaker_open_seconds: float
    stale_if_error: float
    trace_user_id: bool
    allow: Mapping[str, RuleList] | None
    deny: RuleList | Mapping[str, RuleList]
    policy_file: str | os.PathLike[str] | None
    authorize: Authorize | None
    user_loader: UserLoader | None
    user_cache_ttl: float
    user_optional: str | Iterable[str]


def resolve_api_base_url(api_base_url: str | None, region: str | None) -> str:
    """The API base URL from one of ``api_base_url`` or ``region`` (NA when neither)."""
    if region is not None:
        if api_base_url and api_base_url.rstrip("/") != REGIONS.get(region):
            raise ConfigurationError("pass api_base_url or region, not both")
        if region not in REGIONS:
            raise ConfigurationError(f"region must be one of {sorted(REGIONS)}, got {region!r}")
        return REGIONS[region]
    return _base_url(api_base_url or DEFAULT_API_BASE_URL)


@dataclass(frozen=True)
class LWASettings:
    """Every option of both middlewares, validated once, when it is built.

    Frozen: build it directly (``LWASettings(client_ids=[...], region="EU")``), from
    keyword options with a clear error for a misspelt name (:meth:`build`, what the
    middlewares do), or from ``LWA_*`` environment variables (:meth:`from_env`). Lists are
    stored as tuples, ``require_scopes`` as a read-only mapping of frozensets, and
    ``api_base_url`` is resolved from ``region`` when one is given. Any bad value raises
    :class:`~lwa_middleware.core.errors.ConfigurationError`. ``secret_key`` and ``redis_url``
    are left out of ``repr``. Each option's meaning and default: the Options page of the
    documentation.
    """

    # Sequences are stored as tuples, scopes as frozensets (normalized in __post_init__).
    client_ids: Sequence[str] = ()
    app_ids: Sequence[str] = ()
    api_base_url: str = ""
    region: str | None = None
    token_sources: Sequence[TokenSource] = ("header", "cookie")
    cookie_name: str = "lwa_token"
    protect: Sequence[str] = ("/*",)
    exclude: Sequence[str] = ()
    optional: Sequence[str] = ()
    require_scopes: Mapping[str, Any] = field(default_factory=dict)
    cache_ttl: float = 300
    cache_maxsize: int = 10_000
    negative_ttl: float = 30
    negative_maxsize: int = 10_000
    expiry_leeway: float = 10
    timeout: float = 5.0
    max_concurrent_verifications: int = 32
    max_queued_verifications: int = 256
    check_token_prefix: bool = True
    verify_preflight: bool = False
    allow_insecure_http: bool = False
    error_style: ErrorStyle = "lwa"
    # The URL may carry a password: never in a repr or an error message. A shared cache
    # needs secret_key (the verifier refuses it without: login= may lend its own first).
    redis_url: str | None = field(default=None, repr=False)
    redis_prefix: str = "lwa"
    redis_timeout: float = 0.25
    redis_backoff: float = 5.0
    #: The fleet's one secret (or several, newest first): every purpose derives its own
    #: key from it (:mod:`lwa_middleware.core.keys`). Never in a ``repr`` or an error.
    secret_key: SecretKey | None = field(default=None, repr=False)
    csrf_protection: bool = True
    csrf_trusted_origins: Sequence[str] = ()
    realm: str = "lwa"
    breaker_failures: int = 5
    breaker_open_seconds: float = 10.0
    stale_if_error: float = 0
    trace_user_id: bool = False
    #: The access policy (:mod:`lwa_middleware.core.policy`): pattern → rules every matching
    #: pattern's list must admit; rules (or pattern → rules) that refuse; a file of both,
    #: re-read when it changes; a callable ``(identity, method, path) -> bool``. Left out
    #: of ``repr`` (lists of people).
    allow: Mapping[str, Any] | None = field(default=None, repr=False)
    deny: Any = field(default=(), repr=False)
    policy_file: str | os.PathLike[str] | None = None
    authorize: Authorize | None = field(default=None, repr=False)
    #: The app's own users (:mod:`lwa_middleware.core.users`): ``(identity) -> user | None``,
    #: called for admitted customers, each answer kept in memory for ``user_cache_ttl``
    #: seconds; ``user_optional``: the paths a customer without an account may still reach.
    user_loader: UserLoader | None = field(default=None, repr=False)
    user_cache_ttl: float = 60
    user_optional: Sequence[str] = ()

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "client_ids", _strings("client_ids", self.client_ids))
        if not self.client_ids:
            raise ConfigurationError(
                "client_ids is required: the LWA client ID(s) your tokens must be issued to "
                "(e.g. client_ids=['amzn1.application-oa2-client.…'])"
            )
        for client_id in self.client_ids:
            if client_id.startswith(_APP_ID_PREFIX):
                raise ConfigurationError(
                    f"client_ids: {client_id!r} is an app ID (amzn1.application.…), not a "
                    "client ID (amzn1.application-oa2-client.…); tokens carry the client ID "
                    "in aud: put the client ID in client_ids, or the app ID in app_ids to "
                    "accept every client of the app"
                )
        set_(self, "app_ids", _strings("app_ids", self.app_ids))
        set_(self, "api_base_url", resolve_api_base_url(self.api_base_url, self.region))
        sources = _strings("token_sources", self.token_sources)
        if not sources or not set(sources) <= TOKEN_SOURCES:
            raise ConfigurationError(
                f"token_sources must be a non-empty subset of {sorted(TOKEN_SOURCES)}, "
                f"got {list(sources)}"
            )
        set_(self, "token_sources", tuple(dict.fromkeys(sources)))
        if not isinstance(self.cookie_name, str) or not self.cookie_name.strip():
            raise ConfigurationError("cookie_name must be a non-empty string")
        for name in ("protect", "exclude", "optional", "user_optional"):
            set_(self, name, _patterns(name, getattr(self, name)))
        if not isinstance(self.require_scopes, Mapping):
            raise ConfigurationError("require_scopes must map path patterns to scopes")
        required = {
            pattern: _scopes(pattern, scopes) for pattern, scopes in self.require_scopes.items()
        }
        _patterns("require_scopes", tuple(required))
        set_(self, "require_scopes", MappingProxyType(required))
        _number("cache_ttl", self.cache_ttl, minimum=0)
        _number("cache_maxsize", self.cache_maxsize, minimum=1, integer=True)
        _number("negative_ttl", self.negative_ttl, minimum=0)
        _number("negative_maxsize", self.negative_maxsize, minimum=1, integer=True)
        _number("expiry_leeway", self.expiry_leeway, minimum=0)
        _number("timeout", self.timeout, minimum=0.001)
        _number(
            "max_concurrent_verifications",
            self.max_concurrent_verifications,
            minimum=1,
            integer=True,
        )
        _number("max_queued_verifications", self.max_queued_verifications, minimum=0, integer=True)
        _number("breaker_failures", self.breaker_failures, minimum=0, integer=True)
        _number("breaker_open_seconds", self.breaker_open_seconds, minimum=0.001)
        _number("stale_if_error", self.stale_if_error, minimum=0)
        for name in _BOOLEANS:
            if not isinstance(getattr(self, name), bool):
                raise ConfigurationError(
                    f"{name} must be True or False, got {getattr(self, name)!r}"
                )
        if is_insecure_http(self.api_base_url) and not self.allow_insecure_http:
            host = urlsplit(self.api_base_url).hostname
            raise ConfigurationError(
                f"api_base_url is plain http to {host!r}, which is not a loopback address: "
                "tokens would cross the network unencrypted; use https, or set "
                "allow_insecure_http=True (e.g. for an emulator on another machine)"
            )
        if self.error_style not in ERROR_STYLES:
            raise ConfigurationError(
                f"error_style must be 'lwa' or 'rfc6750', got {self.error_style!r}"
            )
        if self.redis_url is not None:
            _redis_url(self.redis_url)
            if not _importable("redis"):  # at import of the app, not at its first request
                raise ConfigurationError(
                    "redis_url needs redis-py, which is not installed: "
                    "pip install 'lwa-middleware[redis]'"
                )
        if not isinstance(self.redis_prefix, str) or not _PREFIX.fullmatch(self.redis_prefix):
            raise ConfigurationError(
                "redis_prefix must be 1-64 characters of letters, digits, '_', '-', '.' or ':'"
            )
        _number("redis_timeout", self.redis_timeout, minimum=0.001)
        if self.redis_timeout > MAX_REDIS_TIMEOUT:
            raise ConfigurationError(
                f"redis_timeout must be at most {MAX_REDIS_TIMEOUT} s (Redis must never slow "
                f"a request down by more), got {self.redis_timeout!r}"
            )
        _number("redis_backoff", self.redis_backoff, minimum=0)
        set_(self, "csrf_trusted_origins", _origins(self.csrf_trusted_origins))
        if self.secret_key is not None:
            secret_keys(self.secret_key)  # refuses a short or malformed one
            if not isinstance(self.secret_key, (str, bytes)):
                set_(self, "secret_key", tuple(self.secret_key))
        if not isinstance(self.realm, str) or '"' in self.realm or "\\" in self.realm:
            raise ConfigurationError("realm must be a string without quotes or backslashes")
        set_(self, "allow", _allow(self.allow))
        set_(self, "deny", _deny(self.deny))
        if self.policy_file is not None:
            if not isinstance(self.policy_file, (str, os.PathLike)) or not os.fspath(
                self.policy_file
            ):
                raise ConfigurationError("policy_file must be a file's path (or None)")
            set_(self, "policy_file", os.fspath(self.policy_file))
        check_judge(self.authorize)
        check_loader(self.user_loader)
        _number("user_cache_ttl", self.user_cache_ttl, minimum=0)

    @property
    def secret_keys(self) -> tuple[bytes, ...]:
        """``secret_key`` as bytes, newest first (empty when unset)."""
        return () if self.secret_key is None else secret_keys(self.secret_key)

    def __hash__(self) -> int:
        return hash((tuple(self.client_ids), self.api_base_url, tuple(self.token_sources)))

    @classmethod
    def option_names(cls) -> tuple[str, ...]:
        """Every accepted option name."""
        return tuple(f.name for f in dataclasses.fields(cls))

    @classmethod
    def build(cls, settings: LWASettings | None, options: Mapping[str, Any]) -> LWASettings:
        """Settings from an optional base plus keyword options, with a clear error for typos."""
        names = cls.option_names()
        for name in options:
            if name not in names:
                hint = difflib.get_close_matches(name, names, n=1)
                suggestion = f"; did you mean {hint[0]!r}?" if hint else ""
                raise ConfigurationError(f"unknown option {name!r}{suggestion}")
        if settings is None:
            return cls(**options)
        if not isinstance(settings, LWASettings):
            raise ConfigurationError("settings must be an LWASettings instance")
        if not options:
            return settings
        if "region" in options and "api_base_url" not in options:
            options = {**options, "api_base_url": ""}
        return dataclasses.replace(settings, **options)

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, prefix: str = "LWA_", **overrides: Any
    ) -> LWASettings:
        """Settings from ``LWA_CLIENT_IDS``, ``LWA_API_BASE_URL``, … (keyword overrides win).

        Lists are comma- or space-separated (or a JSON list); ``LWA_REQUIRE_SCOPES`` is
        ``/admin/*=profile;/zip/*=postal_code``; booleans are true/false, 1/0, yes/no or
        on/off. A value wholly wrapped in quotes loses them; any other quote is refused.
        Every error names the variable; an unknown variable close to a real one's name
        (``LWA_CLIENT_ID``) is refused with a suggestion.

        The access policy's variables (``LWA_ALLOW``, ``LWA_DENY``, ``LWA_POLICY_FILE``) are
        not options: every middleware reads them from the process environment and adds
        them to its options (they never replace, nor are replaced by, ``allow=``…). Given
        in an ``environ`` of your own (and not the process's), they are refused rather
        than silently left out.
        """
        env = os.environ if environ is None else environ
        _refuse_policy_variables(env, prefix)
        if prefix:
            _refuse_misspelt(env, prefix, cls.option_names())
        options: dict[str, Any] = {}
        variables: dict[str, str] = {}  # option name -> the variable it came from
        for name in cls.option_names():
            if name in _POLICY_OPTIONS:
                continue
            variable = prefix + name.upper()
            raw = env.get(variable)
            if raw is None or raw.strip() in ("", '""', "''"):
                continue
            options[name] = _from_text(name, raw, variable)
            if name not in overrides:
                variables[name] = variable
        options.update(overrides)
        if not options.get("client_ids"):
            raise ConfigurationError(
                f"{prefix}CLIENT_IDS is not set: the LWA client ID(s) your tokens must be "
                f"issued to (e.g. {prefix}CLIENT_IDS=amzn1.application-oa2-client.…)"
            )
        try:
            return cls.build(None, options)
        except ConfigurationError as exc:
            culprit = _culprit(str(exc), variables)
            if culprit is None:
                raise
            raise ConfigurationError(f"{culprit}: {exc}") from None


_LISTS = {
    "client_ids",
    "app_ids",
    "token_sources",
    "protect",
    "exclude",
    "optional",
    "csrf_trusted_origins",
    "user_optional",
}
_FLOATS = {
    "cache_ttl",
    "negative_ttl",
    "expiry_leeway",
    "timeout",
    "redis_timeout",
    "redis_backoff",
    "breaker_open_seconds",
    "stale_if_error",
    "user_cache_ttl",
}
_INTEGERS = {
    "cache_maxsize",
    "negative_maxsize",
    "max_concurrent_verifications",
    "max_queued_verifications",
    "breaker_failures",
}
_BOOLEANS = (
    "check_token_prefix",
    "verify_preflight",
    "allow_insecure_http",
    "csrf_protection",
    "trace_user_id",
)
_BOOLEAN_WORDS = {
    **dict.fromkeys(("true", "1", "yes", "on"), True),
    **dict.fromkeys(("false", "0", "no", "off"), False),
}
_SECRETS = {"secret_key", "redis_url"}  # may hold quotes; never shown in an error
#: Options no variable of ``from_env`` sets: the policy's come from the process environment
#: to every middleware (:mod:`lwa_middleware.upstream.policy_watch`); a callable from none.
_POLICY_OPTIONS = frozenset({"allow", "deny", "policy_file", "authorize", "user_loader"})
_POLICY_VARIABLES = ("LWA_ALLOW", "LWA_DENY", "LWA_POLICY_FILE")


def _refuse_policy_variables(env: Mapping[str, str], prefix: str) -> None:
    """Refuse what ``from_env`` would otherwise drop without a word: a policy variable in an
    ``environ`` that is not the process's, and a ``{prefix}AUTHORIZE`` variable."""
    for variable in _POLICY_VARIABLES:
        value = (env.get(variable) or "").strip()
        if env is not os.environ and value and value != (os.environ.get(variable) or "").strip():
            raise ConfigurationError(
                f"{variable} is read by the middleware from the process environment, not by "
                f"from_env(environ=...): set it in os.environ, or pass "
                f"{variable.removeprefix('LWA_').lower()}= to the middleware"
            )
    for name in ("authorize", "user_loader"):
        if (env.get(prefix + name.upper()) or "").strip():
            raise ConfigurationError(
                f"{prefix}{name.upper()} cannot be set from the environment: {name} is a "
                f"callable (pass {name}= to the middleware)"
            )


#: ``LWA_*`` names (without the prefix) other tools and features use: never "did you mean".
RESERVED_VARIABLES = frozenset(
    {"CLIENT_SECRET", "REDIRECT_URI", "LIVE_TOKEN", "LIVE_CLIENT_ID", "MIDDLEWARE_TOKEN_STORE"}
    | {  # the gateway's (lwa_middleware.gateway.ENV_VARIABLES)
        "GATEWAY_PROXY",
        "GATEWAY_TRUSTED_PROXIES",
        "GATEWAY_ALLOWED_HOSTS",
        "GATEWAY_SIGN_IN_PREFIX",
        "GATEWAY_COOKIE_DOMAIN",
        "GATEWAY_AUTHORIZE_URL",
        "GATEWAY_SCOPES",
    }
)


def _refuse_misspelt(env: Mapping[str, str], prefix: str, names: Sequence[str]) -> None:
    """Refuse a set ``prefix*`` variable that is no option's but is close to one's name."""
    known = {name.upper() for name in names}
    for key in sorted(env):
        if not key.upper().startswith(prefix.upper()) or not env[key].strip():
            continue
        rest = key[len(prefix) :].upper()
        if key == prefix + rest and rest in known:
            continue  # a real option's variable
        if rest in RESERVED_VARIABLES:
            continue
        match = [rest] if rest in known else difflib.get_close_matches(rest, known, 1, 0.8)
        if match:
            raise ConfigurationError(
                f"unknown environment variable {key}; did you mean {prefix}{match[0]}?"
            )


def _culprit(message: str, variables: Mapping[str, str]) -> str | None:
    """The variable whose option ``message`` names first, if any came from the environment."""
    found = [
        (hit.start(), variable)
        for name, variable in variables.items()
        if (hit := re.search(rf"\b{name}\b", message))
    ]
    return min(found)[1] if found else None


def _from_text(name: str, raw: str, variable: str) -> Any:
    """Parse one environment variable's text into the option's type (errors name it)."""
    if name in _LISTS:
        return split_items(variable, raw)
    secret = name in _SECRETS
    text = _unquote(variable, raw.strip(), secret=secret)
    if not secret:
        text = text.strip()
    if name in _FLOATS:
        try:
            value = float(text)
        except ValueError:
            raise ConfigurationError(f"{variable} must be a number, got {text!r}") from None
        if not math.isfinite(value):
            raise ConfigurationError(f"{variable} must be a finite number, got {text!r}")
        return value
    if name in _INTEGERS:
        try:
            return int(text)
        except ValueError:
            raise ConfigurationError(f"{variable} must be a whole number, got {text!r}") from None
    if name in _BOOLEANS:
        try:
            return _BOOLEAN_WORDS[text.strip().lower()]
        except KeyError:
            raise ConfigurationError(
                f"{variable} must be true or false (also 1/0, yes/no, on/off), got {text!r}"
            ) from None
    if name == "secret_key" and text.startswith("["):
        try:
            keys = json.loads(text)
        except ValueError:
            keys = None
        if not isinstance(keys, list):
            raise ConfigurationError(
                f"{variable} must be one secret, or a JSON list of secrets (newest first)"
            )
        return keys
    if name == "require_scopes":
        mapping: dict[str, str] = {}
        for rule in filter(None, (part.strip() for part in text.split(";"))):
            pattern, sep, scopes = rule.partition("=")
            if not sep:
                raise ConfigurationError(f"{variable}: rule {rule!r} must be pattern=scopes")
            mapping[pattern.strip()] = scopes
        return mapping
    return cast(Any, text)
