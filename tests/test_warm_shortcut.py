"""Property test: the warm path's shortcut (``TokenFinder.warm``) never names a token the
full rules (``TokenFinder.find``) would not, for any request whose shortcut bytes could be a
cache key (a token that passed the size and character checks; the cache holds no other
key)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from lwa_middleware.core.tokens import TokenFinder, unchanged_by_the_rules

TOKEN = "Atza|" + "t" * 40
OTHER = "Atza|" + "o" * 40
PIECES = [TOKEN, OTHER, " ", "\t", "%7C", "|", '"', ";", "=", ",", "lwa_token", "x", "é", "\x1f"]
TEXT = st.lists(st.sampled_from(PIECES), max_size=6).map("".join)
SCHEMES = st.sampled_from(["Bearer ", "bearer ", "BEARER ", "Bearer  ", "Basic ", ""])
AUTHORIZATION = st.builds(lambda scheme, text: scheme + text, SCHEMES, TEXT)
COOKIE = st.lists(
    st.one_of(
        st.builds(lambda v: f"lwa_token={v}", TEXT),
        st.builds(lambda v: f"other={v}", TEXT),
        TEXT,
    ),
    max_size=4,
).flatmap(lambda pairs: st.sampled_from(["; ", ";", " ", ", "]).map(lambda sep: sep.join(pairs)))
QUERY = st.sampled_from(["", "page=2", f"access_token={TOKEN}", "access%5Ftoken=x", "a=%41"])
SOURCES = st.sampled_from(
    [("header", "cookie"), ("header",), ("cookie",), ("header", "cookie", "query")]
)


def _latin1(values: list[str]) -> list[bytes]:
    return [value.encode("utf-8") for value in values]


@settings(max_examples=600, deadline=None)
@given(
    sources=SOURCES,
    authorization=st.lists(AUTHORIZATION, max_size=2),
    amz=st.lists(TEXT, max_size=2),
    cookies=st.lists(COOKIE, max_size=2),
    query=QUERY,
)
def test_the_shortcut_names_only_the_token_the_full_rules_find(
    sources: tuple[str, ...],
    authorization: list[str],
    amz: list[str],
    cookies: list[str],
    query: str,
) -> None:
    finder = TokenFinder(sources, "lwa_token")
    raw_auth, raw_amz, raw_cookies = _latin1(authorization), _latin1(amz), _latin1(cookies)
    shortcut = finder.warm(raw_auth, raw_amz, raw_cookies, query if "query" in sources else "")
    if shortcut is None or not unchanged_by_the_rules(shortcut.decode("latin-1")):
        return  # the full rules decide: the cache holds no key of an invalid token
    as_text = [[value.decode("latin-1") for value in group] for group in (raw_auth, raw_amz)]
    found = finder.find(
        as_text[0],
        as_text[1],
        [value.decode("latin-1") for value in raw_cookies],
        query if "query" in sources else "",
    )
    assert found == shortcut.decode("latin-1")
