"""The access policy: which verified customers may enter where (no I/O, no clock).

Layer: ``core`` (no I/O, no clock reads, no asyncio; see ``ARCHITECTURE.md``).

Any of Amazon's customers can sign in to any LWA app, so a verified token says who someone
is, not that they may enter. The policy says who may, per path:

* ``allow``: path pattern (the globs of ``protect``) → rules. Where several patterns match
  a path, **every** one of them must admit the customer (nested patterns narrow); a path
  no ``allow`` pattern matches admits any verified customer.
* ``deny``: rules for every path, or pattern → rules. A matching ``deny`` refuses,
  whatever ``allow`` says.
* A rule: ``user:<user_id>``, ``email:<address>``, ``domain:<domain>`` (the part after
  ``@``, exact) or ``*`` (any verified customer). Emails and domains compare
  case-insensitively (and a domain as its IDNA ASCII form, without a trailing dot). An
  address whose local part is not ASCII is the one exception: an ``allow`` rule admits it
  only as written, since lower-casing could make another mailbox match (``K``, the Kelvin
  sign, lower-cases to ``k``), while a ``deny`` rule refuses it in any case.

Never failing open:

* a policy pattern ``/admin/*`` also covers ``/admin`` (``exclude`` takes the narrower
  reading; a policy must never leave the bare prefix open);
* a path is judged in every form the path rules consider (``rules.path_forms``): every
  ``allow`` pattern any form matches must admit, a ``deny`` any form matches refuses;
* a customer without an email (a ``profile:user_id`` token) passes no ``email:``/``domain:``
  ``allow`` rule and is refused by any ``email:``/``domain:`` ``deny`` rule that applies;
* several sources (the keyword options, ``policy_file``, the environment) all apply:
  :class:`AccessPolicy` takes every source's ``allow`` patterns as its own (so each must
  admit) and every source's ``deny``; none widens another.

Compiled once: each list of rules is a :class:`Rules` of frozensets, and the rule of a
route is an :class:`Access` resolved with the route (:mod:`lwa_middleware.core.rules` memoises
it with the route's decision), so a request costs a few set lookups whatever the number of
rules. :func:`callable_verdict` and :func:`callable_failed` are the ``authorize``
callable's outcomes; the shells call it (sync, or awaited under ASGI).

"""

from __future__ import annotations

import contextlib
import fnmatch
import functools
import importlib
import inspect
import json
import logging
import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from lwa_middleware.core.errors import AccessDenied, ConfigurationError, LWAError, ServerError
from lwa_middleware.core.models import Identity

logger = logging.getLogger("lwa_middleware")

#: The rule that admits (or, in ``deny``, refuses) any verified customer.
ANYONE = "*"
#: The kinds of rule besides ``*``, as written before the colon.
KINDS = ("user", "email", "domain")
#: The pattern a ``deny`` list (rules for every path) stands under.
EVERY_PATH = "*"
#: What a refusal says: it names no rule and no list (the customer reads it).
DENIED = "You are not allowed to access this resource."
#: The ``ServerError`` description when the ``authorize`` callable fails.
CALLABLE_FAILED = "The server could not decide whether this request may enter."

_VALUE = re.compile(r"[\x21-\x7e\u00a1-\U0010ffff]{1,320}")
_SEPARATORS = re.compile(r"[\s,]+")

Refusal = Literal[
    "deny:*", "deny:user", "deny:email", "deny:domain", "deny:no-email", "allow", "allow:no-email"
]
#: What each refusal means, for people (``lwa-middleware inspect``, logs): the kind of
#: rule, never the rule.
REFUSALS: Mapping[str, str] = {
    "deny:*": "a deny rule '*' (everyone) applies to this path",
    "deny:user": "a deny rule of kind user: names this customer",
    "deny:email": "a deny rule of kind email: names this customer's email",
    "deny:domain": "a deny rule of kind domain: names this customer's email domain",
    "deny:no-email": "an email:/domain: deny rule applies and the customer has no email "
    "(a profile:user_id token), so it cannot be shown not to match",
    "allow": "an allow pattern matches this path and none of its rules admits this customer",
    "allow:no-email": "an allow pattern matches this path and admits by email/domain only; "
    "the customer has no email (a profile:user_id token)",
}


# Rules -----------------------------------------------------------------------------------


def domain_key(domain: str) -> str | None:
    """A domain as rules compare it: lower-cased, without a trailing dot, in IDNA ASCII form
    when it is not ASCII (``bücher.de`` and ``xn--bcher-kva.de`` are one domain); ``None``
    for an empty one."""
    key = domain.strip().lower().rstrip(".")
    if not key:
        return None
    if not key.isascii():
        with contextlib.suppress(UnicodeError):  # else not IDNA's: compared as it is
            key = key.encode("idna").decode("ascii")
    return key


#: The most emails whose keys :func:`email_keys` keeps (the memo is emptied when full).
EMAIL_MEMO_LIMIT = 4096
EmailKeys = tuple[str | None, str | None, str | None]
_email_memo: dict[str, EmailKeys] = {}
_NO_EMAIL: EmailKeys = (None, None, None)


def email_keys(email: str | None) -> EmailKeys:
    """``(address as allow compares it, address as deny compares it, domain)``: the address
    lower-cased (its local part only when ASCII, for ``allow``), the domain as
    :func:`domain_key` makes it; ``None`` for what is missing (no email, no ``@``).
    Memoised (a verified customer's email is read on every request of theirs), for at most
    :data:`EMAIL_MEMO_LIMIT` emails."""
    if not email:
        return _NO_EMAIL
    keys = _email_memo.get(email)
    if keys is None:
        keys = _email_keys(email)
        if len(_email_memo) >= EMAIL_MEMO_LIMIT:
            _email_memo.clear()
        _email_memo[email] = keys
    return keys


def _email_keys(email: str) -> EmailKeys:
    email = email.strip()
    if not email:
        return _NO_EMAIL
    local, at, domain = email.rpartition("@")
    key = domain_key(domain) if at and local else None
    if key is None:  # not an address: it matches no email rule (and no domain rule)
        return email, email.lower(), None
    folded = f"{local.lower()}@{key}"
    return (folded if local.isascii() else f"{local}@{key}"), folded, key


@dataclass(frozen=True, slots=True, eq=False)
class Rules:
    """One list of rules, compiled: who it names."""

    anyone: bool = False
    users: frozenset[str] = frozenset()
    #: Addresses as ``allow`` compares them (:func:`email_keys`' first key).
    emails: frozenset[str] = frozenset()
    domains: frozenset[str] = frozenset()
    #: The same addresses as ``deny`` compares them (the second key; usually ``emails``).
    folded: frozenset[str] = frozenset()

    @property
    def by_email(self) -> bool:
        """Whether it names anyone by email or domain."""
        return bool(self.emails or self.domains)

    @property
    def empty(self) -> bool:
        """Whether it names no one (an ``allow`` list of it admits no one)."""
        return not (self.anyone or self.users or self.emails or self.domains)

    def __len__(self) -> int:
        return int(self.anyone) + len(self.users) + len(self.emails) + len(self.domains)

    def __repr__(self) -> str:
        return (
            f"Rules(anyone={self.anyone}, users={len(self.users)}, emails={len(self.emails)}, "
            f"domains={len(self.domains)})"
        )


def _bad_rule(where: str, rule: object, why: str = "") -> ConfigurationError:
    hint = f" ({why})" if why else ""
    return ConfigurationError(
        f"{where}: {rule!r} is not a rule{hint}; a rule is 'user:<user_id>', "
        "'email:<address>', 'domain:<domain>' or '*'"
    )


def parse_rules(where: str, value: object) -> Rules:
    """A list of rules (or one string of them, separated by commas or spaces) compiled into
    :class:`Rules`; a malformed rule is a :class:`ConfigurationError` naming ``where``."""
    if isinstance(value, str):
        items: list[object] = [item for item in _SEPARATORS.split(value) if item]
    elif isinstance(value, Iterable) and not isinstance(value, (bytes, Mapping)):
        items = list(value)
    else:
        raise ConfigurationError(
            f"{where} must be a list of rules ('user:…', 'email:…', 'domain:…', '*'), "
            f"got {type(value).__name__}"
        )
    anyone = False
    users: set[str] = set()
    emails: set[str] = set()
    folded: set[str] = set()
    domains: set[str] = set()
    for item in items:
        if not isinstance(item, str):
            raise _bad_rule(where, item)
        rule = item.strip()
        if rule == ANYONE:
            anyone = True
            continue
        kind, colon, text = rule.partition(":")
        if not colon or kind not in KINDS:
            near = kind.strip().lower()
            why = f"write '{near}:' exactly" if colon and near in KINDS else ""
            raise _bad_rule(where, item, why)
        if not _VALUE.fullmatch(text) or any(char.isspace() for char in text):
            raise _bad_rule(where, item, "nothing, a space or a control character after ':'")
        if kind == "user":
            users.add(text)
        elif kind == "email":
            address, folding, domain = _email_keys(text)
            if text.count("@") != 1 or domain is None or address is None or folding is None:
                raise _bad_rule(where, item, "an email address is local-part@domain")
            emails.add(address)
            folded.add(folding)
        else:
            if "@" in text or "*" in text or text.startswith("."):
                raise _bad_rule(
                    where,
                    item,
                    "a domain is exact, as after the '@' of an address: no '@', no '*', no "
                    "leading '.'; list each subdomain",
                )
            key = domain_key(text)
            if key is None:
                raise _bad_rule(where, item, "an empty domain")
            domains.add(key)
    kept = frozenset(emails)
    return Rules(
        anyone,
        frozenset(users),
        kept,
        frozenset(domains),
        kept if folded == emails else frozenset(folded),
    )


def check_pattern(where: str, pattern: object) -> str:
    """A path pattern as ``protect`` takes it: starting with ``/``, without whitespace."""
    if not isinstance(pattern, str) or not pattern.strip():
        raise ConfigurationError(f"{where}: a path pattern must be a non-empty string")
    pattern = pattern.strip()
    if not pattern.startswith("/"):
        raise ConfigurationError(f"{where}: path pattern {pattern!r} must start with '/'")
    if any(char.isspace() for char in pattern):
        raise ConfigurationError(
            f"{where}: path pattern {pattern!r} cannot contain whitespace (match a space with '?')"
        )
    return pattern


def parse_allow(where: str, value: object) -> tuple[tuple[str, Rules], ...]:
    """``allow``: a mapping of path pattern → rules."""
    if not isinstance(value, Mapping):
        raise ConfigurationError(
            f"{where} must map path patterns to lists of rules, e.g. "
            '{"/*": ["domain:example.com"]}, '
            f"got {type(value).__name__}"
        )
    return tuple(
        (check_pattern(where, pattern), parse_rules(f"{where}[{pattern!r}]", rules))
        for pattern, rules in value.items()
    )


def parse_deny(where: str, value: object) -> tuple[tuple[str, Rules], ...]:
    """``deny``: rules for every path (a list), or a mapping like ``allow``'s."""
    if isinstance(value, Mapping):
        return parse_allow(where, value)
    rules = parse_rules(where, value)
    return () if rules.empty else ((EVERY_PATH, rules),)


# Sources ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class PolicySource:
    """One source's rules (the keyword options, a policy file, the environment): its
    ``allow`` and ``deny``, each as (pattern, rules) pairs (``*``: every path)."""

    name: str
    allow: tuple[tuple[str, Rules], ...] = ()
    deny: tuple[tuple[str, Rules], ...] = ()

    @property
    def empty(self) -> bool:
        """Whether it has no rule at all (it admits every verified customer)."""
        return not self.allow and not self.deny

    @classmethod
    def of(cls, name: str, allow: object = None, deny: object = None) -> PolicySource:
        """A source from ``allow`` (a mapping, or ``None``) and ``deny`` (a list, a mapping, or
        ``None``), checked; errors name ``name``."""
        return cls(
            name,
            () if allow is None else parse_allow(f"{name}: allow", allow),
            () if deny is None else parse_deny(f"{name}: deny", deny),
        )


PolicyFormat = Literal["json", "toml"]


def file_format(path: str) -> PolicyFormat:
    """TOML for a ``.toml`` file, else JSON."""
    return "toml" if path.lower().endswith(".toml") else "json"


def parse_document(name: str, text: str, fmt: PolicyFormat = "json") -> PolicySource:
    """A policy file's text: ``{"allow": {pattern: [rules]}, "deny": [rules]}`` (JSON, or
    the same in TOML). Any other key is refused (a misspelt ``alow`` must not leave the
    policy open); so is a document that is not an object."""
    try:
        data: Any = _toml_loads(name, text) if fmt == "toml" else _json_loads(text)
    except ValueError as exc:  # json's and tomllib's decode errors are ValueErrors
        raise ConfigurationError(f"{name}: not valid {fmt.upper()}: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigurationError(
            f'{name}: must be an object with "allow" and/or "deny", got {type(data).__name__}'
        )
    unknown = sorted(set(data) - {"allow", "deny"})
    if unknown:
        raise ConfigurationError(
            f'{name}: unknown key(s) {unknown}; a policy file has "allow" and/or "deny" only'
        )
    return PolicySource.of(name, data.get("allow"), data.get("deny"))


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object whose keys are all different: ``{"allow": …, "allow": {}}`` would
    otherwise keep the last and silently drop rules."""
    seen: set[str] = set()
    for key, _ in pairs:
        if key in seen:
            raise ValueError(f"the key {key!r} is given twice")
        seen.add(key)
    return dict(pairs)


def _json_loads(text: str) -> Any:
    return json.loads(text, object_pairs_hook=_unique_keys)


def _toml_loads(name: str, text: str) -> Any:
    """TOML with the standard library's ``tomllib`` (Python 3.11+)."""
    if sys.version_info < (3, 11):  # pragma: no cover - Python 3.10
        raise ConfigurationError(f"{name}: a TOML policy file needs Python 3.11 or newer; use JSON")
    tomllib: Any = importlib.import_module("tomllib")  # not typed for Python 3.10's mypy
    return tomllib.loads(text)


def parse_json_variable(variable: str, text: str, *, mapping: bool) -> object:
    """An ``LWA_ALLOW`` (a JSON object) or ``LWA_DENY`` (a JSON list, or an object) value."""
    try:
        value = _json_loads(text)
    except ValueError as exc:
        raise ConfigurationError(f"{variable} is not valid JSON: {exc}") from None
    if mapping and not isinstance(value, dict):
        raise ConfigurationError(
            f"{variable} must be a JSON object of pattern → rules, "
            'e.g. {"/*": ["domain:example.com"]}'
        )
    if not mapping and not isinstance(value, (list, dict)):
        raise ConfigurationError(f"{variable} must be a JSON list of rules (or an object)")
    return value


# The combined policy, per route ----------------------------------------------------------


def pattern_regex(pattern: str) -> re.Pattern[str]:
    """A policy pattern's regex: the glob as ``protect`` reads it and, for a pattern ending
    in ``/*``, the bare prefix too (``/admin/*`` covers ``/admin``); ``*`` alone is every
    path."""
    if pattern == EVERY_PATH:
        return re.compile("(?s:.*)")
    globs = [pattern]
    stem = pattern.rstrip("*")
    if stem != pattern and stem.endswith("/") and len(stem) > 1:
        globs.append(stem[:-1])
    return re.compile("|".join(f"(?:{fnmatch.translate(glob)})" for glob in globs))


@dataclass(frozen=True, slots=True, eq=False)
class Access:
    """The policy of one route: every :class:`Rules` of ``required`` must admit, ``deny``
    (every matching deny list merged) must not name the customer."""

    required: tuple[Rules, ...]
    deny: Rules | None

    def admits(self, identity: Identity) -> bool:
        """Whether the rules let ``identity`` in (the warm path's check: set lookups; the
        email's keys are looked up only when a user id did not decide)."""
        profile = identity.profile
        user = profile.user_id
        deny = self.deny
        keys: EmailKeys | None = None
        if deny is not None:
            if deny.anyone or user in deny.users:
                return False
            if deny.folded or deny.domains:
                email = profile.email
                keys = (_email_memo.get(email) or email_keys(email)) if email else _NO_EMAIL
                if keys[1] is None or keys[1] in deny.folded:
                    return False
                if deny.domains and (keys[2] is None or keys[2] in deny.domains):
                    return False
        for rules in self.required:
            if user in rules.users:
                continue
            if keys is None:
                email = profile.email
                keys = (_email_memo.get(email) or email_keys(email)) if email else _NO_EMAIL
            if keys[1] is None:
                return False
            if keys[0] in rules.emails or (keys[2] is not None and keys[2] in rules.domains):
                continue
            return False
        return True

    def refusal(self, identity: Identity) -> Refusal | None:
        """Why the rules refuse ``identity`` (a key of :data:`REFUSALS`), or ``None``.
        Slower than :meth:`admits`; for ``inspect`` and tests."""
        profile = identity.profile
        user = profile.user_id
        address, folded, domain = email_keys(profile.email)
        deny = self.deny
        if deny is not None:
            if deny.anyone:
                return "deny:*"
            if user in deny.users:
                return "deny:user"
            if deny.by_email and folded is None:
                return "deny:no-email"
            if folded in deny.folded:
                return "deny:email"
            if deny.domains and (domain is None or domain in deny.domains):
                return "deny:domain" if domain is not None else "deny:no-email"
        for rules in self.required:
            if user in rules.users:
                continue
            if folded is not None and (
                address in rules.emails or (domain is not None and domain in rules.domains)
            ):
                continue
            return "allow:no-email" if folded is None and rules.by_email else "allow"
        return None


def _merge(lists: Sequence[Rules]) -> Rules | None:
    """Every list in one (what a ``deny`` names is refused by any of them); ``None`` when
    they name no one."""
    if len(lists) == 1:
        return None if lists[0].empty else lists[0]
    merged = Rules(
        any(rules.anyone for rules in lists),
        frozenset().union(*(rules.users for rules in lists)),
        frozenset().union(*(rules.emails for rules in lists)),
        frozenset().union(*(rules.domains for rules in lists)),
        frozenset().union(*(rules.folded for rules in lists)),
    )
    return None if merged.empty else merged


def _access(required: Iterable[Rules], denied: Sequence[Rules]) -> Access | None:
    """The :class:`Access` of the lists that apply, or ``None`` when nothing is checked (no
    ``allow`` but ``*`` ones, no ``deny``)."""
    kept: dict[int, Rules] = {}
    for rules in required:
        if not rules.anyone:
            kept.setdefault(id(rules), rules)
    deny = _merge(denied) if denied else None
    if not kept and deny is None:
        return None
    if len(kept) == 1:
        return Access(tuple(kept.values()), deny)
    # Larger user lists first: a customer admitted by user id skips the email work.
    return Access(tuple(sorted(kept.values(), key=lambda r: -len(r.users))), deny)


class AccessPolicy:
    """Every source's rules, compiled: :meth:`access` gives a route's :class:`Access`."""

    __slots__ = ("_allow", "_deny", "empty", "sources")

    def __init__(self, sources: Iterable[PolicySource] = ()) -> None:
        self.sources = tuple(sources)
        self._allow = [
            (pattern_regex(pattern), rules)
            for source in self.sources
            for pattern, rules in source.allow
        ]
        self._deny = [
            (pattern_regex(pattern), rules)
            for source in self.sources
            for pattern, rules in source.deny
        ]
        #: Whether no source has any rule (every verified customer is admitted).
        self.empty = not self._allow and not self._deny

    def access(self, forms: Iterable[str]) -> Access | None:
        """The rules of a path given in every form the path rules judge: every ``allow``
        list whose pattern matches any form, every ``deny`` list likewise; ``None`` when
        none applies."""
        if self.empty:
            return None
        forms = tuple(forms)
        if len(forms) == 1:  # nearly every path: one regex call per pattern
            form = forms[0]
            required = [rules for regex, rules in self._allow if regex.match(form)]
            denied = [rules for regex, rules in self._deny if regex.match(form)]
        else:
            required = [rules for regex, rules in self._allow if any(regex.match(f) for f in forms)]
            denied = [rules for regex, rules in self._deny if any(regex.match(f) for f in forms)]
        return _access(required, denied)

    def strictest(self) -> Access | None:
        """Every ``allow`` list and every ``deny`` list at once (a path too long to judge
        form by form)."""
        if self.empty:
            return None
        return _access([rules for _, rules in self._allow], [rules for _, rules in self._deny])

    def __repr__(self) -> str:
        return f"AccessPolicy(sources={[source.name for source in self.sources]})"


# The authorize callable ------------------------------------------------------------------


def check_judge(judge: object) -> None:
    """Refuse an ``authorize`` that cannot be called, at construction."""
    if judge is not None and not callable(judge):
        raise ConfigurationError(
            f"authorize must be callable (identity, method, path) -> bool, or None; "
            f"got {type(judge).__name__}"
        )


def is_async_callable(judge: object) -> bool:
    """Whether calling ``judge`` gives a coroutine (an ``async def`` function, method,
    ``functools.partial`` of one, or an object whose ``__call__`` is one)."""
    while isinstance(judge, functools.partial):
        judge = judge.func
    call = type(judge).__dict__.get("__call__") if not inspect.isroutine(judge) else None
    return inspect.iscoroutinefunction(judge) or inspect.iscoroutinefunction(call)


def callable_verdict(result: object) -> None:
    """The ``authorize`` callable's answer: ``True`` lets the request in, ``False`` is
    :class:`AccessDenied`; anything else is a bug in it, refused as a ``ServerError``
    (logged)."""
    if result is True:
        return
    if result is False:
        raise AccessDenied(DENIED)
    logger.error(
        "access policy: the authorize callable returned %s, not True or False; the request "
        "is refused (500)",
        type(result).__name__,
    )
    raise ServerError(CALLABLE_FAILED)


def callable_failed(error: BaseException) -> LWAError:
    """The error to answer when the ``authorize`` callable raised: a ``ServerError``
    (logged with its traceback), never an admission."""
    logger.error(
        "access policy: the authorize callable raised %s; the request is refused (500)",
        type(error).__name__,
        exc_info=error,
    )
    return ServerError(CALLABLE_FAILED)
