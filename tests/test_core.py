"""The sans-IO core with a fake clock: settings, token finding, path rules, error rendering,
the memory cache and the verification verdicts."""

from __future__ import annotations

import json

import pytest

from lwa_middleware import (
    ConfigurationError,
    Identity,
    InsufficientScope,
    InvalidRequest,
    InvalidToken,
    LWASettings,
    LWAUnavailable,
    MemoryCache,
    MissingToken,
    Profile,
    TokenInfo,
)
from lwa_middleware.core.cache import Rejected, cache_key
from lwa_middleware.core.errors import render_error
from lwa_middleware.core.gate import Gate, request_id
from lwa_middleware.core.rules import Mode, PathRules, normalize_path
from lwa_middleware.core.tokens import TokenFinder, cookie_signer, unchanged_by_the_rules
from lwa_middleware.core.verification import Authority, authorize

CLIENT = "amzn1.application-oa2-client.ours"
TOKEN = "Atza|" + "A1b2-_" * 60


def info(
    aud: str = CLIENT, expires_at: float = 1_000_060.0, app_id: str | None = None
) -> TokenInfo:
    return TokenInfo("amzn1.account.U", aud, app_id, "https://www.amazon.com", expires_at, 1.0)


def profile(**fields: str) -> Profile:
    return Profile(
        user_id="amzn1.account.U", raw={"user_id": "amzn1.account.U", **fields}, **fields
    )


class TestSettings:
    def test_defaults(self) -> None:
        s = LWASettings(client_ids=(CLIENT,))
        assert s.api_base_url == "https://api.amazon.com"
        assert s.token_sources == ("header", "cookie")
        assert s.protect == ("/*",) and s.error_style == "lwa"
        assert (s.cache_ttl, s.cache_maxsize, s.negative_ttl, s.expiry_leeway, s.timeout) == (
            300,
            10_000,
            30,
            10,
            5.0,
        )

    def test_client_ids_required(self) -> None:
        with pytest.raises(ConfigurationError, match="client_ids is required"):
            LWASettings()

    def test_lone_string_is_one_client_id(self) -> None:
        assert LWASettings(client_ids=CLIENT).client_ids == (CLIENT,)

    def test_unknown_option_suggests(self) -> None:
        with pytest.raises(ConfigurationError, match="did you mean 'cache_ttl'"):
            LWASettings.build(None, {"client_ids": [CLIENT], "cache_tll": 5})

    @pytest.mark.parametrize(
        ("options", "message"),
        [
            ({"region": "XX"}, "region must be one of"),
            ({"region": "EU", "api_base_url": "https://example.org"}, "not both"),
            ({"api_base_url": "ftp://x"}, "http"),
            ({"token_sources": ["header", "body"]}, "token_sources"),
            ({"token_sources": []}, "token_sources"),
            ({"protect": ["admin/*"]}, "must start with '/'"),
            ({"require_scopes": {"/a": "profile profle"}}, "unknown scope"),
            ({"require_scopes": {"/a": ""}}, "names no scope"),
            ({"cache_ttl": -1}, "cache_ttl"),
            ({"cache_maxsize": 0}, "cache_maxsize"),
            ({"timeout": 0}, "timeout"),
            ({"error_style": "json"}, "error_style"),
            ({"redis_url": "http://localhost"}, "redis_url"),
            ({"redis_timeout": 1.0}, "redis_timeout"),
            ({"csrf_trusted_origins": ["example.com"]}, "csrf_trusted_origins"),
            ({"secret_key": ""}, "secret_key"),
        ],
    )
    def test_bad_options(self, options: dict[str, object], message: str) -> None:
        with pytest.raises(ConfigurationError, match=message):
            LWASettings.build(None, {"client_ids": [CLIENT], **options})

    def test_regions(self) -> None:
        assert LWASettings(client_ids=(CLIENT,), region="EU").api_base_url == (
            "https://api.amazon.co.uk"
        )
        fe = LWASettings(client_ids=(CLIENT,), region="FE")
        assert fe.api_base_url == "https://api.amazon.co.jp"
        assert LWASettings.build(fe, {"cache_ttl": 5}).api_base_url == fe.api_base_url

    def test_from_env(self) -> None:
        s = LWASettings.from_env(
            {
                "LWA_CLIENT_IDS": "a.b, c.d",
                "LWA_API_BASE_URL": "http://127.0.0.1:8765/",
                "LWA_TOKEN_SOURCES": "header query",
                "LWA_CACHE_TTL": "60",
                "LWA_CACHE_MAXSIZE": "10",
                "LWA_REQUIRE_SCOPES": "/admin/*=profile;/zip/*=postal_code profile",
                "LWA_ERROR_STYLE": "rfc6750",
            }
        )
        assert s.client_ids == ("a.b", "c.d")
        assert s.api_base_url == "http://127.0.0.1:8765"
        assert s.token_sources == ("header", "query")
        assert s.cache_ttl == 60.0 and s.cache_maxsize == 10
        assert dict(s.require_scopes) == {
            "/admin/*": frozenset({"profile"}),
            "/zip/*": frozenset({"postal_code", "profile"}),
        }
        assert s.error_style == "rfc6750"

    def test_from_env_bad_number(self) -> None:
        with pytest.raises(ConfigurationError, match="LWA_CACHE_TTL must be a number"):
            LWASettings.from_env({"LWA_CLIENT_IDS": "a", "LWA_CACHE_TTL": "soon"})

    def test_frozen_and_secret_not_in_repr(self) -> None:
        s = LWASettings(client_ids=(CLIENT,), secret_key="hunter2-hunter2-hunter2")
        assert "hunter2" not in repr(s)
        with pytest.raises(AttributeError):
            s.cache_ttl = 1  # type: ignore[misc]


class TestTokenFinder:
    finder = TokenFinder(("header", "cookie", "query"), "lwa_token")

    def test_sources(self) -> None:
        f = self.finder
        assert f.find(authorization=[f"Bearer {TOKEN}"]) == TOKEN
        assert f.find(authorization=[f"bEaReR   {TOKEN}  "]) == TOKEN
        assert f.find(amz_token=[TOKEN]) == TOKEN
        assert f.find(cookies=[f"a=1; lwa_token={TOKEN}; b=2"]) == TOKEN
        assert f.find(cookies=[f'lwa_token="{TOKEN}"']) == TOKEN
        assert f.find(query_string=f"x=1&access_token={TOKEN.replace('|', '%7C')}") == TOKEN
        assert f.find() is None
        assert f.find(cookies=["other=1"]) is None
        assert f.find(authorization=["Basic abc"]) is None

    def test_decode_once(self) -> None:
        encoded = TOKEN.replace("|", "%7C")
        assert self.finder.find(authorization=[f"Bearer {encoded}"]) == TOKEN
        twice = TOKEN.replace("|", "%257C")
        assert self.finder.find(amz_token=[twice]) == TOKEN.replace("|", "%7C")  # decoded once
        # ... and the character check then refuses the leftover '%' before LWA is asked
        from lwa_middleware.core.tokens import validate_token

        with pytest.raises(InvalidRequest):
            validate_token(TOKEN.replace("|", "%7C"))

    def test_two_methods(self) -> None:
        with pytest.raises(InvalidRequest, match="more than one"):
            self.finder.find(authorization=[f"Bearer {TOKEN}"], amz_token=[TOKEN])
        with pytest.raises(InvalidRequest, match="more than one"):
            self.finder.find(amz_token=[TOKEN], query_string=f"access_token={TOKEN}")
        with pytest.raises(InvalidRequest):
            self.finder.find(query_string=f"access_token={TOKEN}&access_token={TOKEN}")

    def test_cookie_ignored_beside_a_method(self) -> None:
        assert self.finder.find(amz_token=[TOKEN], cookies=["lwa_token=other"]) == TOKEN

    def test_query_only_when_enabled(self) -> None:
        f = TokenFinder(("header",), "lwa_token")
        assert f.find(query_string=f"access_token={TOKEN}") is None
        assert f.find(amz_token=[TOKEN], query_string=f"access_token={TOKEN}") == TOKEN

    @pytest.mark.parametrize("bad", ["", "   ", "Atza|" + "a" * 2100])
    def test_local_rejections(self, bad: str) -> None:
        with pytest.raises(InvalidRequest):
            self.finder.find(amz_token=[bad])

    @pytest.mark.parametrize("bad", ["Atza|a b", "Atza|a\x00b", "Atza|a\nb", "Atza|é", "Atza|a%b"])
    def test_character_check(self, bad: str) -> None:
        from lwa_middleware.core.tokens import validate_token

        with pytest.raises(InvalidRequest):
            validate_token(bad)

    def test_signed_cookie(self) -> None:
        f = TokenFinder(("cookie",), "lwa_token", secret_key="k" * 16)
        signed = cookie_signer("k" * 16).sign(TOKEN).decode()
        assert f.find(cookies=[f"lwa_token={signed}"]) == TOKEN
        with pytest.raises(InvalidToken):
            f.find(cookies=[f"lwa_token={TOKEN}"])


class TestRules:
    def test_order_and_scopes(self) -> None:
        rules = PathRules(
            protect=("/*",),
            exclude=("/health", "/static/*"),
            optional=("/", "/blog/*"),
            require_scopes={
                "/admin/*": frozenset({"profile"}),
                "/admin/zip*": frozenset({"postal_code"}),
            },
        )
        assert rules.route("/health").mode is Mode.EXCLUDE
        assert rules.route("/static/a/b.css").mode is Mode.EXCLUDE
        assert rules.route("/").mode is Mode.OPTIONAL
        assert rules.route("/blog/x").mode is Mode.OPTIONAL
        assert rules.route("/api").mode is Mode.PROTECT
        assert rules.route("/admin/zipcodes").required_scopes == {"profile", "postal_code"}
        assert rules.route("/admin/x").required_scopes == {"profile"}
        assert PathRules(protect=("/api/*",)).route("/other").mode is Mode.PASS

    @pytest.mark.parametrize(
        ("path", "normal"),
        [
            ("/a/b", "/a/b"),
            ("/a/../b", "/b"),
            ("//a//b/", "/a/b/"),
            ("/a/./b", "/a/b"),
            ("/../../etc", "/etc"),
            ("", "/"),
        ],
    )
    def test_normalize(self, path: str, normal: str) -> None:
        assert normalize_path(path) == normal

    def test_memo_is_bounded(self) -> None:
        rules = PathRules(protect=("/*",))
        for i in range(10_000):
            rules.route(f"/u/{i}")
        assert len(rules._memo) <= 4096


class TestErrors:
    @pytest.mark.parametrize(
        ("error", "lwa", "rfc"),
        [
            (MissingToken(), 400, 401),
            (InvalidRequest(), 400, 400),
            (InvalidToken(), 400, 401),
            (InsufficientScope(), 401, 403),
            (LWAUnavailable(), 500, 500),
        ],
    )
    def test_statuses(self, error: InvalidRequest, lwa: int, rfc: int) -> None:
        assert error.status("lwa") == lwa and error.status("rfc6750") == rfc

    def test_render(self) -> None:
        status, headers, body = render_error(InvalidToken(), "rfc6750", "lwa", "rid-1")
        assert status == 401
        h = dict(headers)
        assert h["content-type"] == "application/json;charset=UTF-8"
        assert h["cache-control"] == "no-store"
        assert h["www-authenticate"] == 'Bearer realm="lwa", error="invalid_token"'
        assert h["content-length"] == str(len(body))
        assert json.loads(body) == {
            "error": "invalid_token",
            "error_description": InvalidToken.default_description,
            "request_id": "rid-1",
        }
        _, headers500, _ = render_error(LWAUnavailable(), "lwa", "lwa", "r")
        assert "www-authenticate" not in dict(headers500)
        _, missing, _ = render_error(MissingToken(), "rfc6750", "lwa", "r")
        assert dict(missing)["www-authenticate"] == 'Bearer realm="lwa"'

    def test_request_id(self) -> None:
        assert request_id("abc-1") == "abc-1"
        assert request_id("bad id") != "bad id"
        assert len(request_id(None)) == 36

    def test_gate_missing_vs_optional(self) -> None:
        gate = Gate(LWASettings(client_ids=(CLIENT,), optional=("/o",)))
        with pytest.raises(MissingToken):
            gate.token(gate.route("/p"), (), (), (), "")
        assert gate.token(gate.route("/o"), (), (), (), "") is None


class TestCache:
    def test_deadline_and_bound(self) -> None:
        cache: MemoryCache[Rejected] = MemoryCache(maxsize=10)
        cache.set(b"k", Rejected("x"), deadline=110, now=100)
        assert cache.get(b"k", 109.9) == Rejected("x")
        assert cache.get(b"k", 110) is None
        cache.set(b"past", Rejected("x"), deadline=100, now=100)
        assert cache.get(b"past", 50) is None
        for i in range(25):
            cache.set(bytes([i]), Rejected(str(i)), deadline=1e9, now=0)
        assert len(cache) <= 10
        assert cache.get(bytes([24]), 0) == Rejected("24")  # newest survive

    def test_key_is_a_hash_of_base_and_token(self) -> None:
        key = cache_key("https://api.amazon.com", TOKEN)
        assert len(key) == 32 and TOKEN.encode() not in key
        assert key != cache_key("https://api.amazon.co.uk", TOKEN)


class TestAuthority:
    def make(self, **options: object) -> Authority:
        return Authority(LWASettings.build(None, {"client_ids": [CLIENT], **options}))

    def test_settle_caches_with_expiry_bound_ttl(self) -> None:
        a = self.make(cache_ttl=300, expiry_leeway=10)
        key = a.key(TOKEN)
        identity = a.settle(key, info(expires_at=1_000_060), profile(name="Ada"), 1_000_000)
        assert identity.scopes == {"profile", "profile:user_id"}
        assert a.cached(key, 1_000_049) is identity
        assert a.cached(key, 1_000_050) is None  # 60 s to expiry - 10 s leeway

    def test_cache_ttl_bounds_a_long_token(self) -> None:
        a = self.make(cache_ttl=30)
        key = a.key(TOKEN)
        a.settle(key, info(expires_at=5000), profile(), 1000)
        assert a.cached(key, 1029) is not None and a.cached(key, 1030) is None

    def test_hit_rechecks_expiry(self) -> None:
        a = self.make()
        key = a.key(TOKEN)
        identity = Identity.build(info(expires_at=100), profile())
        a.cache.set(key, identity, deadline=1000, now=0)  # a stale entry outliving its token
        assert a.cached(key, 99) is identity
        with pytest.raises(InvalidToken, match="expired"):
            a.cached(key, 100)
        assert a.cached(key, 100) is None

    def test_audience(self) -> None:
        a = self.make(app_ids=["amzn1.application.app"])
        key = a.key(TOKEN)
        with pytest.raises(InvalidToken, match="not issued to this application"):
            a.settle(key, info(aud="someone-else"), profile(), 0)
        with pytest.raises(InvalidToken):  # and the rejection is cached
            a.cached(key, 1)
        ok = a.settle(
            a.key(TOKEN + "x"), info(aud="mobile", app_id="amzn1.application.app"), profile(), 0
        )
        assert ok.token_info.app_id == "amzn1.application.app"

    def test_negative_cache_only_for_invalid_token(self) -> None:
        a = self.make(negative_ttl=30)
        key = a.key(TOKEN)
        with pytest.raises(LWAUnavailable):
            a.settle(key, LWAUnavailable(), profile(), 0)
        assert a.cached(key, 1) is None
        with pytest.raises(InvalidToken):
            a.settle(key, InvalidToken(), profile(), 0)
        with pytest.raises(InvalidToken):
            a.cached(key, 29)
        assert a.cached(key, 30) is None

    def test_answers_must_name_one_customer(self) -> None:
        a = self.make()
        other = Profile(user_id="amzn1.account.OTHER")
        with pytest.raises(LWAUnavailable, match="disagree"):
            a.settle(a.key(TOKEN), info(), other, 0)

    def test_unexpected_exception_fails_closed(self) -> None:
        a = self.make()
        with pytest.raises(LWAUnavailable):
            a.settle(a.key(TOKEN), info(), RuntimeError("boom"), 0)

    def test_authorize(self) -> None:
        identity = Identity.build(info(), profile(name="Ada"))
        assert authorize(identity, frozenset({"profile:user_id"})) is identity
        with pytest.raises(InsufficientScope) as denied:
            authorize(identity, frozenset({"postal_code"}))
        assert denied.value.required == {"postal_code"}


class TestStarletteCredentials:
    def test_built_once_per_identity_and_read_only(self) -> None:
        from lwa_middleware.core.credentials import CredentialsMemo, LWAUser

        memo = CredentialsMemo(limit=2)
        identity = Identity.build(info(), profile(name="Ada"))
        user, auth = memo(identity)
        assert isinstance(user, LWAUser)
        assert user.identity == "amzn1.account.U"
        assert user.display_name == "Ada"
        assert list(auth.scopes) == ["profile", "profile:user_id"]
        assert memo(identity) == (user, auth)  # the same objects on every request
        with pytest.raises(AttributeError):
            auth.scopes.append("postal_code")  # shared, so it cannot be changed
        anonymous, nothing = memo(None)
        assert not anonymous.is_authenticated
        assert nothing.scopes == []
        other = Identity.build(info(), profile())
        assert memo(other)[0] is not user  # each identity its own user ...
        assert memo(other)[0] is memo(other)[0]  # ... kept with it: bounded by the cache


class TestWarmShortcut:
    """The warm path's shortcut may only ever name the token the full rules would find, for
    a token that can be in the cache (one that passed ``validate_token``); anything else
    must miss. The property test in ``test_warm_shortcut.py`` tries random requests."""

    @pytest.mark.parametrize(
        "header",
        [
            f"Bearer {TOKEN}",
            f"bearer {TOKEN}",
            f"BEARER   {TOKEN}  ",
            f"Bearer {TOKEN.replace('|', '%7C')}",
            f"Bearer\t{TOKEN}",
            f"Basic {TOKEN}",
            "Bearer ",
            "Bearer",
            f"Bearer {TOKEN}\x1f",
            f"Bearer é{TOKEN}",
            f"Bearer {'a' * 2100}",
            f"Bearer {TOKEN} extra",
        ],
    )
    def test_agrees_with_the_full_rules(self, header: str) -> None:
        raw = header.encode("utf-8")
        finder = TokenFinder(("header",), "lwa_token")
        shortcut = finder.warm([raw], [], [], "")
        if shortcut is None or not unchanged_by_the_rules(shortcut.decode("latin-1")):
            return  # the full rules decide (an invalid token is never a cache key)
        assert finder.find(authorization=[raw.decode("latin-1")]) == shortcut.decode()

    def test_only_when_one_method_carries_it(self) -> None:
        finder = TokenFinder(("header", "query", "cookie"), "lwa_token")
        header = f"Bearer {TOKEN}".encode()
        token = TOKEN.encode()
        cookie = f"theme=dark; lwa_token={TOKEN}".encode()
        assert finder.warm([header], [], [], "") == token
        assert finder.warm([], [token], [], "") == token
        assert finder.warm([], [], [cookie], "") == token
        assert finder.warm([header], [], [cookie], "") == token  # a method wins over the cookie
        assert finder.warm([header, header], [], [], "") is None
        assert finder.warm([header], [token], [], "") is None
        assert finder.warm([], [token, token], [], "") is None
        assert finder.warm([header], [], [], f"access_token={TOKEN}") is None
        assert finder.warm([], [], [cookie, cookie], "") is None
        assert finder.warm([], [], [cookie + b"; lwa_token=x"], "") is None
        assert finder.warm([], [], [b"xlwa_token=" + token], "") is None
        assert finder.warm([], [], [b"a=b lwa_token=" + token], "") is None
        assert TokenFinder(("cookie",), "c").warm([header], [], [], "") is None
        signed = TokenFinder(("cookie",), "lwa_token", secret_key="s" * 16)
        assert signed.warm([], [], [cookie], "") is None  # a signature to check: full rules

    def test_same_cache_key_as_the_full_path(self) -> None:
        a = Authority(LWASettings(client_ids=(CLIENT,)))
        now = 1000.0
        identity = a.settle(a.key(TOKEN), info(expires_at=5000), profile(), now)
        assert a.lookup_raw(TOKEN.encode(), now) is identity
        assert a.lookup(TOKEN, now) is identity


@pytest.mark.parametrize(
    ("path", "root", "below"),
    [
        ("/x", "", "/x"),
        ("/api/x", "/api", "/x"),
        ("/api", "/api", "/"),
        ("/apiary", "/api", "/apiary"),  # not a segment boundary: not below the mount
        ("/x", "/api", "/x"),  # a server that already removed root_path
    ],
)
def test_asgi_path_below_the_mount_point(path: str, root: str, below: str) -> None:
    from lwa_middleware.asgi import _route_path

    assert _route_path({"type": "http", "path": path, "root_path": root}) == below


def test_public_names() -> None:
    import lwa_middleware

    assert lwa_middleware.__all__ == sorted(lwa_middleware.__all__)
    for name in (
        "LWAMiddleware",
        "LWAWSGIMiddleware",
        "LWASettings",
        "Identity",
        "Profile",
        "TokenInfo",
    ):
        assert name in lwa_middleware.__all__
        assert getattr(lwa_middleware, name).__module__.startswith("lwa_middleware.")
