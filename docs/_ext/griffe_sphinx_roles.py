"""A griffe extension for the API reference: the project's docstrings are reST-ish.

mkdocstrings renders a docstring's text as Markdown. ``double backticks`` already are
Markdown code, but two reST constructs are not:

- Sphinx roles (``:class:`~lwa_middleware.core.errors.LWAError```, ``:meth:`Emulator.mint```,
  ``:func:``, ``:mod:``, ``:data:``, ``:attr:``) would show as literal text. Each becomes an
  optional cross-reference: a link when the target is on the site, plain code otherwise
  (``<autoref ... optional>``, the form mkdocstrings' own templates use, so an internal
  helper that is documented nowhere never fails ``mkdocs build --strict``).
- A paragraph ending in ``::`` introduces a literal block (indented, after a blank line),
  which Markdown already renders as code: only the ``::`` goes (``text::`` → ``text:``, a
  line that is only ``::`` is dropped).

Used from ``mkdocs.yml`` (``plugins.mkdocstrings.handlers.python.options.extensions``);
``docs/_ext/`` is left out of the built site (``exclude_docs``).
"""

from __future__ import annotations

import html
import re
from typing import Any

import griffe

_ROLE = re.compile(r":(?P<role>class|meth|func|mod|data|attr|exc|obj):`(?P<target>[^`]+)`")
_CALLABLE_ROLES = frozenset({"meth", "func"})


def _resolve(obj: griffe.Object, name: str) -> str:
    """The full path of ``name`` as seen from ``obj`` (its own name when it cannot be
    resolved: the cross-reference is optional, so it just stays unlinked)."""
    if name.startswith("lwa_middleware"):
        return name
    if name.startswith("."):  # :meth:`.aclose` (Sphinx: a member of the current scope)
        name = name[1:]
    head, _, rest = name.partition(".")
    scope: griffe.Object | None = obj
    while scope is not None:
        if head in scope.members:
            base = scope.members[head]
            path = base.path
            return f"{path}.{rest}" if rest else path
        try:
            resolved = scope.resolve(head)
        except Exception:  # best effort: NameResolutionError, alias errors
            resolved = None
        if resolved:
            return f"{resolved}.{rest}" if rest else resolved
        scope = scope.parent
    return name


def _replace_roles(obj: griffe.Object, text: str) -> str:
    def replace(match: re.Match[str]) -> str:
        role, target = match["role"], match["target"].strip()
        explicit = re.fullmatch(r"(?P<title>.+?)\s*<(?P<target>[^>]+)>", target)
        if explicit:  # :class:`the title <a.b.C>`
            title, target = explicit["title"], explicit["target"]
        else:
            short = target.startswith("~")
            target = target.lstrip("~")
            title = target.rsplit(".", 1)[-1] if short else target
            if role in _CALLABLE_ROLES and not title.endswith(")"):
                title += "()"
        identifier = _resolve(obj, target.rstrip("()"))
        return (
            f'<autoref identifier="{html.escape(identifier)}" optional>'
            f"<code>{html.escape(title)}</code></autoref>"
        )

    return _ROLE.sub(replace, text)


def _literal_blocks(text: str) -> str:
    lines = []
    for line in text.split("\n"):
        stripped = line.rstrip()
        if stripped.strip() == "::":
            continue
        if stripped.endswith("::"):
            line = stripped[:-1]
        lines.append(line)
    return "\n".join(lines)


def convert(obj: griffe.Object, text: str) -> str:
    """The Markdown mkdocstrings should render for one docstring."""
    return _literal_blocks(_replace_roles(obj, text))


class SphinxRoles(griffe.Extension):
    """Rewrite every docstring of the loaded package once its tree is complete."""

    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        seen: set[int] = set()

        def visit(obj: griffe.Object) -> None:
            if id(obj) in seen:
                return
            seen.add(id(obj))
            if obj.docstring is not None:
                obj.docstring.value = convert(obj, obj.docstring.value)
            for member in obj.members.values():
                if not member.is_alias:
                    visit(member)  # type: ignore[arg-type]

        visit(pkg)
