"""``LWASettings``: every option of both middlewares, frozen and validated once.

Build it directly, from keyword options (``LWASettings.build(None, {...})``, what the
middlewares do), or from ``LWA_*`` environment variables (:meth:`LWASettings.from_env`).
A bad option is a :class:`~lwa_middleware.errors.ConfigurationError` at construction,
never a surprise at the first request.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal, TypedDict, cast
from urllib.parse import urlsplit

from lwa_middleware.errors import ConfigurationError, ErrorStyle
from lwa_middleware.models import SCOPE_POSTAL_CODE, SCOPE_PROFILE, SCOPE_USER_ID

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


def _strings(name: str, value: object) -> tuple[str, ...]:
    """A tuple of non-empty strings; a lone string counts as one item."""
    if isinstance(value, str):
        value = (value,)
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
    return value.rstrip("/")


class LWAOptions(TypedDict, total=False):
    """The keyword options of both middlewares (typed ``**options``; see :class:`LWASettings`)."""

    client_ids: str | Iterable[str]
    app_ids: str | Iterable[str]
    api_base_url: str
    region: str | None
    token_sources: Iterable[TokenSource]
    cookie_name: str
    protect: Iterable[str]
    exclude: Iterable[str]
    optional: Iterable[str]
    require_scopes: Mapping[str, str | Iterable[str]]
    cache_ttl: float
    cache_maxsize: int
    negative_ttl: float
    expiry_leeway: float
    timeout: float
    error_style: ErrorStyle
    redis_url: str | None
    secret_key: str | bytes | None
    realm: str


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
    """All options; see the options reference in the docs for each one's meaning."""

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
    expiry_leeway: float = 10
    timeout: float = 5.0
    error_style: ErrorStyle = "lwa"
    redis_url: str | None = None
    secret_key: str | bytes | None = field(default=None, repr=False)
    realm: str = "lwa"

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "client_ids", _strings("client_ids", self.client_ids))
        if not self.client_ids:
            raise ConfigurationError(
                "client_ids is required: the LWA client ID(s) your tokens must be issued to "
                "(e.g. client_ids=['amzn1.application-oa2-client.…'])"
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
        for name in ("protect", "exclude", "optional"):
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
        _number("expiry_leeway", self.expiry_leeway, minimum=0)
        _number("timeout", self.timeout, minimum=0.001)
        if self.error_style not in ERROR_STYLES:
            raise ConfigurationError(
                f"error_style must be 'lwa' or 'rfc6750', got {self.error_style!r}"
            )
        if self.redis_url is not None:
            raise ConfigurationError(
                "redis_url: the Redis cache is not available in this release; "
                "leave it unset (the in-memory cache is used)"
            )
        if self.secret_key is not None and not (
            isinstance(self.secret_key, (str, bytes)) and self.secret_key
        ):
            raise ConfigurationError("secret_key must be a non-empty string or bytes")
        if not isinstance(self.realm, str) or '"' in self.realm or "\\" in self.realm:
            raise ConfigurationError("realm must be a string without quotes or backslashes")

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

        Lists are comma- or space-separated; ``LWA_REQUIRE_SCOPES`` is
        ``/admin/*=profile;/zip/*=postal_code``.
        """
        env = os.environ if environ is None else environ
        options: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            raw = env.get(prefix + f.name.upper())
            if raw is None or raw.strip() == "":
                continue
            options[f.name] = _from_text(f.name, raw)
        options.update(overrides)
        return cls.build(None, options)


_LISTS = {"client_ids", "app_ids", "token_sources", "protect", "exclude", "optional"}
_FLOATS = {"cache_ttl", "negative_ttl", "expiry_leeway", "timeout"}


def _from_text(name: str, raw: str) -> Any:
    """Parse one environment variable's text into the option's type."""
    if name in _LISTS:
        return tuple(part for part in raw.replace(",", " ").split() if part)
    if name in _FLOATS:
        try:
            return float(raw)
        except ValueError:
            raise ConfigurationError(f"{name} must be a number, got {raw!r}") from None
    if name == "cache_maxsize":
        try:
            return int(raw)
        except ValueError:
            raise ConfigurationError(f"{name} must be a whole number, got {raw!r}") from None
    if name == "require_scopes":
        mapping: dict[str, str] = {}
        for rule in filter(None, (part.strip() for part in raw.split(";"))):
            pattern, sep, scopes = rule.partition("=")
            if not sep:
                raise ConfigurationError(f"require_scopes rule {rule!r} must be pattern=scopes")
            mapping[pattern.strip()] = scopes
        return mapping
    return cast(Any, raw.strip())
