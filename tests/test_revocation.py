"""Sign-out's revocations without I/O: the revoked set (bounds, expiry, eviction, the outbox),
how the verification core consults it (never on the warm path; a racing verification never
leaves a revoked identity in L1), the fleet feed's entries (MAC, rotation, tampering), and
the session's lifetime sealed in the refresh cookie (carried across refreshes, legacy
cookies, sign-out revoking the session)."""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import pytest

from lwa_middleware import LWASettings
from lwa_middleware.core.cache import KeyMaker
from lwa_middleware.core.errors import InvalidToken, LWAUnavailable, MissingToken
from lwa_middleware.core.grants import TokenGrant
from lwa_middleware.core.models import Identity, Profile, TokenInfo
from lwa_middleware.core.revocation import (
    ACCESS,
    ACCESS_TOKEN_MAX_LIFETIME,
    SESSION,
    Call,
    Revocation,
    RevocationFeed,
    Revocations,
    session_key,
)
from lwa_middleware.core.verification import REVOKED, Authority
from lwa_middleware.login import LoginConfig, LoginCore, RefreshPlan, SignedOut
from lwa_middleware.login.cookies import Sealer
from lwa_middleware.login.session import SESSION_EXPIRED, SESSION_REVOKED, legacy_session_id

NOW = 1_700_000_000.0
API = "https://api.amazon.com"
CLIENT = "amzn1.application-oa2-client.revocation"
SECRET = b"revocation-secret-0123456789abcdef"
OTHER = b"another-secret-0123456789abcdefgh"
TOKEN = "Atza|" + "t" * 300
REFRESH = "Atzr|" + "r" * 300


def identity(expires_at: float = NOW + 3600) -> Identity:
    info = TokenInfo("amzn1.account.A", CLIENT, None, None, expires_at, NOW)
    return Identity.build(info, Profile(user_id="amzn1.account.A", name="Ada", email=None))


def authority(revocations: Revocations | None = None) -> Authority:
    settings = LWASettings(client_ids=[CLIENT], api_base_url=API)
    made = Authority(settings, revocations=revocations)
    made.revocations.attach(made.cache, made.key)
    return made


def key(n: int) -> bytes:
    return n.to_bytes(32, "big")


# The revoked set ------------------------------------------------------------------------


def test_a_revocation_holds_until_it_ends() -> None:
    revocations = Revocations()
    assert revocations.learn([Revocation(SESSION, key(1), NOW + 10)], NOW) == 1
    assert revocations.holds(key(1), NOW) and revocations.holds(key(1), NOW + 9.9)
    assert not revocations.holds(key(1), NOW + 10) and not revocations.holds(key(2), NOW)
    assert revocations.learn([Revocation(SESSION, key(2), NOW - 1)], NOW) == 0  # ended
    assert revocations.learn([Revocation(SESSION, key(1), NOW + 5)], NOW) == 0  # not longer
    assert revocations.learn([Revocation(SESSION, key(1), NOW + 20)], NOW) == 1  # longer
    assert revocations.holds(key(1), NOW + 15)
    revocations.learn([], NOW + 21)  # every change purges what ended
    assert len(revocations) == 0


def test_the_set_is_bounded_dropping_the_soonest_to_end(caplog: pytest.LogCaptureFixture) -> None:
    revocations = Revocations(maxsize=3)
    revocations.learn([Revocation(SESSION, key(n), NOW + 100 - n) for n in range(5)], NOW)
    assert len(revocations) == 3 and revocations.stats.dropped == 2
    assert [revocations.holds(key(n), NOW) for n in range(5)] == [True, True, True, False, False]
    assert "dropped" in caplog.text  # one WARNING
    revocations.learn([Revocation(SESSION, key(9), NOW + 1)], NOW)
    assert len(revocations) == 3 and caplog.text.count("dropped") == 1  # once a minute


def test_revoking_evicts_every_attached_cache_and_waits_for_a_sync() -> None:
    revocations = Revocations()
    first, second = authority(revocations), authority(revocations)
    maker = KeyMaker(API)
    for made in (first, second):
        made.cache.set(maker(TOKEN), identity(), NOW + 60, NOW)
    added = revocations.revoke(NOW, access_token=TOKEN, session=(session_key("s"), NOW + 99))
    assert [(entry.kind, entry.until) for entry in added] == [
        (ACCESS, NOW + 3600),  # the token's expiry, as the cache knew it
        (SESSION, NOW + 99),
    ]
    assert first.cache.peek(maker(TOKEN)) is None and second.cache.peek(maker(TOKEN)) is None
    assert revocations.take_outbox() == []  # no sync attached: nothing to publish
    kicks: list[int] = []
    revocations.attach(first.cache, first.key, kick=lambda: kicks.append(1))
    again = revocations.revoke(NOW, access_token="Atza|other")
    assert kicks == [1] and again[0].until == NOW + ACCESS_TOKEN_MAX_LIFETIME  # unknown expiry
    taken = revocations.take_outbox()
    assert taken == again and revocations.take_outbox() == []
    later = revocations.revoke(NOW, access_token="Atza|later")
    revocations.requeue(taken)  # publishing failed: back before the newer one
    assert revocations.take_outbox() == [*taken, *later]
    assert "Atza" not in repr(taken) and "Atza" not in repr(revocations)


# The verification core ------------------------------------------------------------------


def test_a_revoked_token_is_refused_on_a_miss_and_never_cached() -> None:
    core = authority()
    k = core.key(TOKEN)
    core.cache.set(k, identity(), NOW + 60, NOW)
    assert core.lookup(TOKEN, NOW) is not None
    core.revocations.revoke(NOW, access_token=TOKEN)
    with pytest.raises(InvalidToken, match="revoked"):  # evicted: a miss, then refused
        core.lookup(TOKEN, NOW)
    with pytest.raises(InvalidToken, match="revoked"):
        core.lookup_raw(TOKEN.encode(), NOW)
    with pytest.raises(InvalidToken, match="revoked"):  # LWA said yes meanwhile: refused
        core.settle(k, identity().token_info, identity().profile, NOW)
    assert core.cache.peek(k) is None
    assert core.fallback(k, LWAUnavailable(), NOW) is None  # never answered stale
    assert REVOKED.startswith("The access token was revoked")


def test_a_revocation_racing_a_verification_leaves_nothing_in_l1() -> None:
    """Revoking holds the key, then evicts: an identity stored just before the hold is
    evicted; one stored just after is seen by the check that follows every store."""
    core = authority()
    k = core.key(TOKEN)
    core.cache.set(k, identity(), NOW + 60, NOW)  # the verification stored it first...
    core.revocations.revoke(NOW, access_token=TOKEN)  # ...then the sign-out came
    assert core.cache.peek(k) is None
    core.cache.set(k, identity(), NOW + 60, NOW)  # stored after the hold...
    with pytest.raises(InvalidToken):
        core.refuse_revoked(k, NOW)  # ...the check after the store refuses it
    assert core.cache.peek(k) is None


# The fleet's feed -----------------------------------------------------------------------


def feed(*secrets: bytes, prefix: str = "lwa") -> RevocationFeed:
    return RevocationFeed(prefix, secrets or (SECRET,), Revocations())


def test_entries_round_trip_and_bad_ones_are_ignored_and_counted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    mine = feed()
    entry = Revocation(SESSION, key(7), NOW + 100)
    raw = mine.encode(entry)
    assert mine.decode(raw, NOW) == entry and mine.decode(raw.decode(), NOW) == entry
    assert raw.count(b".") == 3 and len(raw) < 160
    forged = feed(OTHER).encode(entry)
    assert mine.decode(forged, NOW) is None and mine.stats.bad_mac == 1
    assert "failed their MAC" in caplog.text
    kind, hexkey, until, tag = raw.decode().split(".")
    for changed in (
        f"a.{hexkey}.{until}.{tag}",  # another kind
        f"{kind}.{key(8).hex()}.{until}.{tag}",  # another key
        f"{kind}.{hexkey}.{int(until) + 1000}.{tag}",  # a longer revocation
    ):
        assert mine.decode(changed, NOW) is None
    assert mine.stats.bad_mac == 4
    assert feed(prefix="other").decode(raw, NOW) is None  # another prefix's entry
    for junk in (b"", b"x", b"s.zz.1.x", b"\xff" * 10, None, 12, b"s." + b"a" * 500):
        assert mine.decode(junk, NOW) is None
    assert mine.stats.malformed >= 7
    assert mine.decode(raw, NOW + 100) is None  # ended: skipped, not counted
    far = mine.encode(Revocation(SESSION, key(7), NOW + 10**9))
    assert mine.decode(far, NOW) is None  # longer than any session


def test_entries_signed_with_an_older_secret_are_accepted() -> None:
    entry = Revocation(ACCESS, key(3), NOW + 100)
    old = feed(OTHER).encode(entry)
    rotated = feed(SECRET, OTHER)
    assert rotated.decode(old, NOW) == entry
    assert feed(SECRET, OTHER).encode(entry) == feed(SECRET).encode(entry)  # newest signs


class FakeRedis:
    """Just enough of a client for a tick's calls (the real ones run in test_signout); its
    pipeline runs each command at once and ``execute`` hands their results back."""

    def __init__(self) -> None:
        self.zset: dict[bytes, float] = {}
        self.sets: dict[bytes, set[bytes]] = {}
        self.stream: list[tuple[bytes, dict[bytes, bytes]]] = []
        self.fail = False
        self._results: list[object] = []

    def pipeline(self, transaction: bool) -> FakeRedis:
        if self.fail:
            raise ConnectionError("down")
        self._results = []
        return self

    def execute(self) -> list[object]:
        return self._results

    def zadd(self, name: bytes, mapping: dict[bytes, float]) -> None:
        self.zset.update(mapping)
        self._results.append(1)

    def xadd(self, name: bytes, fields: dict[bytes, bytes], **_: Any) -> None:
        self.stream.append((f"{len(self.stream) + 1}-0".encode(), fields))
        self._results.append(b"id")

    def sadd(self, name: bytes, member: bytes) -> None:
        self.sets.setdefault(name, set()).add(member)
        self._results.append(1)

    def smembers(self, name: bytes) -> None:
        self._results.append(set(self.sets.get(name, ())))

    def zremrangebyscore(self, name: bytes, low: str, high: float) -> None:
        self.zset = {m: s for m, s in self.zset.items() if s > high}
        self._results.append(0)

    def expire(self, name: bytes, seconds: int) -> None:
        self._results.append(True)

    def xrevrange(self, name: bytes, high: str, low: str, count: int) -> list[Any]:
        return self.stream[-1:]

    def zrevrangebyscore(self, name: bytes, high: str, low: float, start: int, num: int) -> Any:
        live = sorted((m for m, s in self.zset.items() if s >= low), key=self.zset.__getitem__)
        return list(reversed(live))[start : start + num]

    def xread(self, streams: dict[bytes, bytes], count: int) -> list[Any]:
        cursor = int(next(iter(streams.values())).split(b"-")[0])
        after = [entry for entry in self.stream if int(entry[0].split(b"-")[0]) > cursor]
        return [[b"stream", after[:count]]] if after else []


def run(plan: Generator[Call, Any, None], client: Any) -> None:
    result: Any = None
    while True:
        try:
            call = plan.send(result)
        except StopIteration:
            return
        try:
            result = call(client)
        except Exception as error:
            plan.throw(error)


def test_a_tick_publishes_then_reads_and_keeps_the_outbox_when_redis_fails() -> None:
    redis = FakeRedis()
    mine, theirs = feed(), feed()
    mine.revocations.attach(authority().cache, KeyMaker(API), kick=lambda: None)
    revoked = mine.revocations.revoke(NOW, access_token=TOKEN)
    redis.fail = True
    with pytest.raises(ConnectionError):
        run(mine.tick(NOW), redis)
    assert mine.revocations.take_outbox() == revoked  # kept for the next round
    mine.revocations.requeue(revoked)
    redis.fail = False
    run(mine.tick(NOW), redis)
    assert mine.stats.published == 1 and len(redis.zset) == 1 and len(redis.stream) == 1
    run(theirs.tick(NOW), redis)  # a new worker: loads the set
    assert theirs.revocations.holds(revoked[0].key, NOW) and theirs.stats.reloads == 1
    assert theirs.cursor == b"1-0"
    mine.revocations.revoke(NOW, session=(session_key("x"), NOW + 50))
    run(mine.tick(NOW), redis)
    run(theirs.tick(NOW + 1), redis)  # then polls the stream after its cursor
    assert theirs.revocations.holds(session_key("x"), NOW + 1) and theirs.cursor == b"2-0"
    assert theirs.stats.reloads == 1 and theirs.stats.learned == 2
    run(theirs.tick(NOW + 100), redis)  # a minute without reading: a whole reload
    assert theirs.stats.reloads == 2


# The session's lifetime -----------------------------------------------------------------


def make_core(**options: Any) -> LoginCore:
    return LoginCore(
        LoginConfig(CLIENT, "https://shop.example.com/auth/callback", SECRET, **options)
    )


def grant(refresh: str | None = REFRESH, access: str = TOKEN) -> TokenGrant:
    return TokenGrant(access_token=access, expires_in=3600, refresh_token=refresh)


def cookies_of(headers: list[tuple[str, str]]) -> dict[str, str]:
    return {v.partition("=")[0]: v for _, v in headers}


def header(headers: list[tuple[str, str]]) -> list[str]:
    return ["; ".join(v.partition(";")[0] for v in cookies_of(headers).values())]


def max_age(set_cookie: str) -> int:
    return int(set_cookie.split("Max-Age=")[1].partition(";")[0])


def plan_at(core: LoginCore, cookies: list[str], now: float) -> RefreshPlan | SignedOut | None:
    return core.session.plan(MissingToken(), [], [], cookies, False, now)


def test_the_sign_in_time_is_carried_across_refreshes() -> None:
    core = make_core(session_max_age=7200)
    issued = core.session.issue(grant(), NOW)
    assert max_age(cookies_of(issued)["lwa_token_refresh"]) == 7200
    plan = plan_at(core, header(issued), NOW + 3000)
    assert isinstance(plan, RefreshPlan) and plan.session.signed_in_at == int(NOW)
    again = core.session.issue(grant("Atzr|rotated"), NOW + 3000, plan.session)
    assert max_age(cookies_of(again)["lwa_token_refresh"]) == 4200  # what remains
    later = plan_at(core, header(again), NOW + 6000)
    assert isinstance(later, RefreshPlan)
    assert later.refresh_token == "Atzr|rotated"
    assert later.session.session_id == plan.session.session_id  # one session
    last = core.session.issue(grant(), NOW + 6000, later.session)
    assert max_age(cookies_of(last)["lwa_token"]) == 1200  # the access cookie too
    ended = plan_at(core, header(last), NOW + 7200)
    assert isinstance(ended, SignedOut) and ended.description == SESSION_EXPIRED


def test_a_cookie_sealed_before_sign_in_times_counts_from_its_seal() -> None:
    core = make_core(session_max_age=7200)
    legacy = Sealer([SECRET], "refresh-cookie").seal(REFRESH.encode(), NOW - 100)
    cookies = [f"lwa_token_refresh={legacy}"]
    plan = plan_at(core, cookies, NOW)
    assert isinstance(plan, RefreshPlan) and plan.refresh_token == REFRESH
    assert plan.session.signed_in_at == int(NOW - 100)
    assert plan.session.session_id == legacy_session_id(REFRESH)
    assert isinstance(plan_at(core, cookies, NOW + 7100), SignedOut)


def test_a_sign_in_time_from_the_future_is_not_trusted() -> None:
    core = make_core()
    ahead = core.session.issue(grant(), NOW + 3600)
    assert plan_at(core, header(ahead), NOW) is None


def test_sign_out_revokes_the_session_and_its_access_token() -> None:
    core = make_core()
    verifier = authority(core.revocations)
    issued = core.session.issue(grant(), NOW)
    cookies = header(issued)
    plan = plan_at(core, cookies, NOW)
    assert isinstance(plan, RefreshPlan) and core.session.ended(plan, NOW) is None
    core.session.revoke(cookies, NOW)
    ended = core.session.ended(plan, NOW)
    assert isinstance(ended, SignedOut) and ended.description == SESSION_REVOKED
    assert {v.partition("=")[0] for _, v in ended.headers} == {"lwa_token", "lwa_token_refresh"}
    with pytest.raises(InvalidToken, match="revoked"):
        verifier.lookup(TOKEN, NOW)
    # The session's later refresh cookies (another refresh token) are of the same session.
    rotated = core.session.issue(grant("Atzr|rotated"), NOW + 10, plan.session)
    later = plan_at(core, header(rotated), NOW + 10)
    assert isinstance(later, RefreshPlan) and core.session.ended(later, NOW + 10) is not None
    # Until the session would have ended, and no longer.
    assert core.revocations.holds(plan.session.key, NOW + 30 * 86400 - 1)
    assert not core.revocations.holds(plan.session.key, NOW + 30 * 86400)


def test_sign_out_ignores_cookies_it_did_not_make() -> None:
    core = make_core()
    core.session.revoke([f"lwa_token={TOKEN}; lwa_token_refresh=forged"], NOW)
    assert len(core.revocations) == 0 and core.revocations.stats.revoked == 0


def test_every_access_token_of_a_session_is_revoked_with_it() -> None:
    core = make_core()
    verifier = authority(core.revocations)
    issued = core.session.issue(grant(access="Atza|first"), NOW)
    plan = plan_at(core, header(issued), NOW + 10)
    assert isinstance(plan, RefreshPlan)
    # Someone holding a copy of the refresh cookie refreshed it: a token the browser never saw.
    theirs = core.session.issue(grant(access="Atza|theirs"), NOW + 10, plan.session)
    assert "lwa_token" in cookies_of(theirs)
    core.session.revoke(header(issued), NOW + 20)  # the browser signs out
    for token in ("Atza|first", "Atza|theirs"):
        with pytest.raises(InvalidToken, match="revoked"):
            verifier.lookup(token, NOW + 20)
    # A refresh that raced the sign-out: its token is revoked as it is issued.
    core.session.issue(grant(access="Atza|late"), NOW + 30, plan.session)
    with pytest.raises(InvalidToken, match="revoked"):
        verifier.lookup("Atza|late", NOW + 30)
    assert not core.revocations.holds(KeyMaker(API)("Atza|late"), NOW + 30 + 3600)


def test_a_session_signed_out_on_one_worker_revokes_the_tokens_another_issued() -> None:
    redis = FakeRedis()
    workers = [feed(), feed(), feed()]
    for worker in workers:
        worker.revocations.attach(authority().cache, KeyMaker(API), kick=lambda: None)
    issuer, signer, bystander = workers
    session = session_key("the-session")
    issuer.revocations.link(session, "Atza|issued-by-x", NOW + 3600, NOW)
    run(issuer.tick(NOW), redis)
    assert issuer.stats.links == 1 and len(redis.sets) == 1
    run(bystander.tick(NOW), redis)
    signer.revocations.revoke(NOW, session=(session, NOW + 86400))
    run(signer.tick(NOW), redis)  # publishes the session, reads its links, publishes them
    token = KeyMaker(API)("Atza|issued-by-x")
    assert signer.revocations.holds(token, NOW) and signer.stats.published == 2
    run(bystander.tick(NOW + 1), redis)
    assert bystander.revocations.holds(token, NOW + 1)
    assert bystander.revocations.holds(session, NOW + 1)
    # The issuer, learning the session was revoked, revokes its token itself too.
    run(issuer.tick(NOW + 1), redis)
    assert issuer.revocations.holds(token, NOW + 1)
    forged = RevocationFeed("lwa", [OTHER], Revocations())
    name = signer.links_of(session_key("other"))
    redis.sets[name] = {forged.encode(Revocation(ACCESS, key(5), NOW + 60), domain=name)}
    signer.revocations.revoke(NOW, session=(session_key("other"), NOW + 99))
    run(signer.tick(NOW + 1), redis)
    assert not signer.revocations.holds(key(5), NOW + 1) and signer.stats.bad_mac == 1
