"""The pure pieces behind the hardening: slots and their queue, the rejection cache, the
echo filter, the query read by decoded keys, duplicate cookies, the prefix check, the
rate-limited outage warning. No I/O: ``now`` is passed in."""

from __future__ import annotations

import logging

import pytest

from lwa_middleware import LWASettings
from lwa_middleware.core.admission import Admission
from lwa_middleware.core.cache import Rejected, RejectionCache
from lwa_middleware.core.errors import (
    InvalidRequest,
    InvalidToken,
    LWAUnavailable,
    Overloaded,
    render_error,
)
from lwa_middleware.core.protocol import (
    HTTPResponse,
    echoes,
    exchange,
    parse_tokeninfo,
    tokeninfo_request,
)
from lwa_middleware.core.tokens import TokenFinder, query_tokens
from lwa_middleware.core.verification import OUTAGE_LOG_INTERVAL, Authority

TOKEN = "Atza|" + "t" * 400


class TestAdmission:
    def test_slots_then_queue_newest_first(self) -> None:
        admission: Admission[str] = Admission(limit=2, queue_limit=3)
        assert admission.acquire() and admission.acquire()
        assert not admission.acquire()
        assert admission.enqueue("a") is None
        assert admission.enqueue("b") is None
        assert admission.enqueue("c") is None
        assert admission.enqueue("d") == "a"  # full: the oldest is pushed out
        assert admission.waiting == 3
        assert admission.release() == "d"  # newest first; the slot passes to it
        assert admission.active == 2
        assert admission.withdraw("c")
        assert not admission.withdraw("c")
        assert admission.release() == "b"
        assert admission.release() is None
        assert admission.release() is None
        assert admission.active == 0

    def test_no_acquire_while_others_wait(self) -> None:
        admission: Admission[str] = Admission(limit=1, queue_limit=1)
        assert admission.acquire()
        admission.enqueue("a")
        admission.active = 0  # a slot frees without a release (cannot happen, but be safe)
        assert not admission.acquire()  # the waiter goes first

    def test_no_queue(self) -> None:
        admission: Admission[str] = Admission(limit=1, queue_limit=0)
        assert admission.acquire()
        with pytest.raises(Overloaded):
            admission.enqueue("a")

    def test_overloaded_renders_retry_after(self) -> None:
        status, headers, _ = render_error(Overloaded(), "lwa", "lwa", "rid")
        assert status == 500
        assert ("retry-after", "1") in headers
        assert all(name != "www-authenticate" for name, _ in headers)
        _, plain, _ = render_error(LWAUnavailable(), "lwa", "lwa", "rid")
        assert all(name != "retry-after" for name, _ in plain)


class TestRejectionCache:
    def test_fixed_ttl_and_bound(self) -> None:
        cache = RejectionCache(maxsize=3, ttl=30)
        cache.set(b"a", Rejected("x"), now=100)
        assert cache.get(b"a", 129.9) == Rejected("x")
        assert cache.get(b"a", 130.1) is None
        for i in range(10):
            cache.set(bytes([i]), Rejected(str(i)), now=200)
        assert len(cache) == 3

    def test_zero_ttl_caches_nothing(self) -> None:
        cache = RejectionCache(maxsize=3, ttl=0)
        cache.set(b"a", Rejected("x"), now=100)
        assert cache.get(b"a", 100) is None

    def test_rejections_never_evict_identities(self) -> None:
        authority = Authority(LWASettings(client_ids=["c"], cache_maxsize=2, negative_maxsize=2))
        authority.cache.set(b"ada", object(), 1e12, 0)  # type: ignore[arg-type]
        for i in range(100):
            authority.fail(bytes([i]) * 32, InvalidToken(), now=10)
        assert authority.cache.peek(b"ada") is not None
        assert len(authority.rejections) == 2


class TestPrefix:
    def test_prefix_checked_unless_off(self) -> None:
        strict = Authority(LWASettings(client_ids=["c"]))
        assert strict.admit(TOKEN) == TOKEN
        for token in ("x" * 400, "Atzr|" + "r" * 400, "atza|abc"):
            with pytest.raises(InvalidToken):
                strict.admit(token)
        lenient = Authority(LWASettings(client_ids=["c"], check_token_prefix=False))
        assert lenient.admit("x" * 400) == "x" * 400


class TestEcho:
    def test_runs_of_eight(self) -> None:
        secret = "Atza|" + "abcdefghijklmnopqrstuvwxyz" * 10
        assert echoes("bad token cdefghij here", secret)
        assert not echoes("bad token cdefghi_ here", secret)
        assert not echoes("The access token provided is expired.", secret)
        assert echoes("xAtza|abcx", "Atza|abc")  # shorter than a run: all of it
        assert not echoes("anything", "")

    def test_echoed_description_never_relayed(self) -> None:
        token = "Atza|" + "Q7w" * 140
        body = b'{"error":"invalid_token","error_description":"token Q7wQ7wQ7wQ7w is bad"}'
        steps = exchange(
            tokeninfo_request("https://api.amazon.com", token),
            lambda r: parse_tokeninfo(r, 0),
            secret=token,
        )
        next(steps)
        with pytest.raises(InvalidToken) as caught:
            steps.send(HTTPResponse(400, {}, body))
        assert "Q7wQ7wQ7" not in caught.value.description
        assert "Q7wQ7wQ7" not in str(caught.value)
        assert caught.value.description == InvalidToken.default_description


class TestQuery:
    @pytest.mark.parametrize(
        "query",
        ["access_token=A", "access%5Ftoken=A", "%61ccess_token=A", "x=1&access%5ftoken=A"],
    )
    def test_decoded_keys(self, query: str) -> None:
        assert query_tokens(query) == ["A"]

    def test_other_keys(self) -> None:
        assert query_tokens("access+token=A&x=%41") == []

    def test_shortcut_never_skips_an_encoded_query_key(self) -> None:
        finder = TokenFinder(("header", "query"), "lwa_token")
        header = [b"Bearer " + TOKEN.encode()]
        assert finder.warm(header, [], [], "") == TOKEN.encode()
        assert finder.warm(header, [], [], "page=2") == TOKEN.encode()
        assert finder.warm(header, [], [], "access%5Ftoken=B") is None
        with pytest.raises(InvalidRequest):
            finder.find([f"Bearer {TOKEN}"], [], [], "access%5Ftoken=Atza%7Cb")


class TestCookies:
    def test_two_cookies_of_the_name(self) -> None:
        finder = TokenFinder(("header", "cookie"), "lwa_token")
        assert finder.find(cookies=[f"a=1; lwa_token={TOKEN}"]) == TOKEN
        for cookies in (
            [f"lwa_token={TOKEN}; lwa_token={TOKEN}"],
            [f"lwa_token={TOKEN}", "lwa_token=other"],
        ):
            with pytest.raises(InvalidRequest, match="more than one lwa_token cookie"):
                finder.find(cookies=cookies)
        # A header token wins: the cookies are not read at all.
        assert finder.find([f"Bearer {TOKEN}"], cookies=["lwa_token=a; lwa_token=b"]) == TOKEN


class TestOutageWarning:
    def test_rate_limited(self, caplog: pytest.LogCaptureFixture) -> None:
        authority = Authority(LWASettings(client_ids=["c"]))
        with caplog.at_level(logging.WARNING, logger="lwa_middleware"):
            for second in range(10):
                authority.fail(b"k" * 32, LWAUnavailable("Login with Amazon timed out."), second)
            authority.fail(b"k" * 32, LWAUnavailable("Login with Amazon answered 503."), 100)
        lines = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert len(lines) == 2
        assert "timed out" in lines[0]
        assert "503" in lines[1] and "9 more failure(s)" in lines[1]
        assert OUTAGE_LOG_INTERVAL <= 100
