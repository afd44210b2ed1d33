"""``LWASettings`` hardening: finite numbers, environment parsing (errors name the variable,
did-you-mean, quotes, JSON lists, booleans), one list-splitting rule for keywords and the
environment, and plain http refused beyond loopback."""

from __future__ import annotations

import difflib
from typing import Any

import pytest

from lwa_middleware import ConfigurationError, LWASettings
from lwa_middleware.core.settings import RESERVED_VARIABLES, is_insecure_http, split_items

CLIENT = "amzn1.application-oa2-client.ours"
EMULATOR = "http://127.0.0.1:8765"
NUMBERS = ("cache_ttl", "negative_ttl", "expiry_leeway", "timeout")
INTEGERS = (
    "cache_maxsize",
    "negative_maxsize",
    "max_concurrent_verifications",
    "max_queued_verifications",
)
BOOLEANS = ("check_token_prefix", "verify_preflight", "allow_insecure_http")


def env(**variables: str) -> dict[str, str]:
    """``LWA_<NAME>`` variables, with a client ID unless one is given."""
    return {"LWA_CLIENT_IDS": CLIENT, **{f"LWA_{k.upper()}": v for k, v in variables.items()}}


def settings(**options: Any) -> LWASettings:
    return LWASettings.build(None, {"client_ids": [CLIENT], **options})


class TestDefaults:
    def test_new_options(self) -> None:
        s = LWASettings(client_ids=(CLIENT,))
        assert s.negative_maxsize == 10_000
        assert (s.max_concurrent_verifications, s.max_queued_verifications) == (32, 256)
        assert s.check_token_prefix is True
        assert s.verify_preflight is False
        assert s.allow_insecure_http is False


class TestFiniteNumbers:
    @pytest.mark.parametrize("name", NUMBERS + INTEGERS)
    @pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
    def test_keyword_refused(self, name: str, value: float) -> None:
        with pytest.raises(ConfigurationError, match=f"{name} must be a finite number"):
            settings(**{name: value})

    @pytest.mark.parametrize("name", NUMBERS)
    @pytest.mark.parametrize("text", ["nan", "NaN", "inf", "-inf", "Infinity", " nan "])
    def test_environment_refused(self, name: str, text: str) -> None:
        variable = f"LWA_{name.upper()}"
        with pytest.raises(ConfigurationError, match=f"^{variable} must be a finite number"):
            LWASettings.from_env(env(**{name: text}))

    def test_revoked_token_cannot_be_cached_forever(self) -> None:
        # LWA_CACHE_TTL=nan made every "age < ttl" comparison false: a revoked token lived on.
        with pytest.raises(ConfigurationError, match="LWA_CACHE_TTL"):
            LWASettings.from_env(env(cache_ttl="nan"))

    @pytest.mark.parametrize("name", INTEGERS)
    def test_integers_refuse_nan_text(self, name: str) -> None:
        with pytest.raises(ConfigurationError, match=f"LWA_{name.upper()} must be a whole"):
            LWASettings.from_env(env(**{name: "nan"}))


class TestEnvironmentErrorsNameTheVariable:
    def test_bad_number(self) -> None:
        with pytest.raises(ConfigurationError) as caught:
            LWASettings.from_env(env(cache_ttl="five"))
        assert str(caught.value) == "LWA_CACHE_TTL must be a number, got 'five'"

    def test_the_prefix_is_part_of_the_name(self) -> None:
        with pytest.raises(ConfigurationError, match=r"^MYAPP_TIMEOUT must be a number"):
            LWASettings.from_env({"MYAPP_CLIENT_IDS": CLIENT, "MYAPP_TIMEOUT": "soon"}, "MYAPP_")

    @pytest.mark.parametrize("name", INTEGERS)
    def test_integers_parse(self, name: str) -> None:
        assert getattr(LWASettings.from_env(env(**{name: "7"})), name) == 7

    @pytest.mark.parametrize("name", INTEGERS)
    def test_bad_integer(self, name: str) -> None:
        with pytest.raises(ConfigurationError, match=f"^LWA_{name.upper()} must be a whole"):
            LWASettings.from_env(env(**{name: "1.5"}))

    @pytest.mark.parametrize("name", BOOLEANS)
    @pytest.mark.parametrize(
        ("text", "value"),
        [
            ("true", True),
            ("TRUE", True),
            ("1", True),
            ("yes", True),
            ("On", True),
            ("false", False),
            ("False", False),
            ("0", False),
            ("no", False),
            ("OFF", False),
        ],
    )
    def test_booleans_parse(self, name: str, text: str, value: bool) -> None:
        # allow_insecure_http has no effect with the default https URL
        assert getattr(LWASettings.from_env(env(**{name: text})), name) is value

    @pytest.mark.parametrize("name", BOOLEANS)
    @pytest.mark.parametrize("text", ["maybe", "2", "y", "enabled"])
    def test_bad_boolean(self, name: str, text: str) -> None:
        with pytest.raises(ConfigurationError, match=f"^LWA_{name.upper()} must be true or false"):
            LWASettings.from_env(env(**{name: text}))

    @pytest.mark.parametrize(
        ("variables", "variable"),
        [
            ({"cache_ttl": "-1"}, "LWA_CACHE_TTL"),
            ({"max_concurrent_verifications": "0"}, "LWA_MAX_CONCURRENT_VERIFICATIONS"),
            ({"max_queued_verifications": "-1"}, "LWA_MAX_QUEUED_VERIFICATIONS"),
            ({"negative_maxsize": "0"}, "LWA_NEGATIVE_MAXSIZE"),
            ({"region": "XX"}, "LWA_REGION"),
            ({"error_style": "json"}, "LWA_ERROR_STYLE"),
            ({"exclude": "health"}, "LWA_EXCLUDE"),
            ({"token_sources": "header body"}, "LWA_TOKEN_SOURCES"),
            ({"require_scopes": "/a=profle"}, "LWA_REQUIRE_SCOPES"),
            ({"api_base_url": "http://lwa.example.com"}, "LWA_API_BASE_URL"),
        ],
    )
    def test_validation_errors_name_the_variable(
        self, variables: dict[str, str], variable: str
    ) -> None:
        with pytest.raises(ConfigurationError, match=f"^{variable}: "):
            LWASettings.from_env(env(**variables))

    def test_an_override_is_not_blamed_on_the_environment(self) -> None:
        with pytest.raises(ConfigurationError, match=r"^cache_ttl must be at least 0"):
            LWASettings.from_env(env(cache_ttl="60"), cache_ttl=-1)

    def test_secret_key_never_shown(self) -> None:
        s = LWASettings.from_env(env(secret_key="'it''s-a-long-secret'"))
        assert s.secret_key == "it''s-a-long-secret"  # a key may hold quotes
        with pytest.raises(ConfigurationError) as caught:
            LWASettings.from_env(env(secret_key="s3cr3t-value-s3cr3t", cache_ttl="x"))
        assert "s3cr3t-value-s3cr3t" not in str(caught.value)


class TestDidYouMean:
    def test_client_id(self) -> None:
        with pytest.raises(ConfigurationError) as caught:
            LWASettings.from_env({"LWA_CLIENT_ID": CLIENT})
        assert str(caught.value) == (
            "unknown environment variable LWA_CLIENT_ID; did you mean LWA_CLIENT_IDS?"
        )

    @pytest.mark.parametrize(
        ("variable", "meant"),
        [
            ("LWA_CACHE_TL", "LWA_CACHE_TTL"),
            ("LWA_TIMEOUTS", "LWA_TIMEOUT"),
            ("LWA_EXCLUDES", "LWA_EXCLUDE"),
            ("LWA_APP_ID", "LWA_APP_IDS"),
            ("LWA_VERIFY_PREFLIGHTS", "LWA_VERIFY_PREFLIGHT"),
            ("lwa_cache_ttl", "LWA_CACHE_TTL"),
        ],
    )
    def test_close_matches(self, variable: str, meant: str) -> None:
        with pytest.raises(ConfigurationError, match=f"did you mean {meant}\\?"):
            LWASettings.from_env({**env(), variable: "1"})

    def test_with_a_prefix(self) -> None:
        with pytest.raises(ConfigurationError, match="did you mean APP_CLIENT_IDS"):
            LWASettings.from_env({"APP_CLIENT_ID": CLIENT}, prefix="APP_")

    @pytest.mark.parametrize(
        "variable",
        ["LWA_LIVE_TOKEN", "LWA_CLIENT_SECRET", "LWA_REDIRECT_URI", "LWA_DEMO_DB", "LWA_X"],
    )
    def test_other_variables_are_ignored(self, variable: str) -> None:
        assert LWASettings.from_env({**env(), variable: "value"}).client_ids == (CLIENT,)

    def test_client_secret_is_reserved_whatever_difflib_says(self) -> None:
        # At difflib's default cutoff LWA_CLIENT_SECRET is "close" to LWA_CLIENT_IDS.
        names = ["LWA_" + name.upper() for name in LWASettings.option_names()]
        assert difflib.get_close_matches("LWA_CLIENT_SECRET", names, n=1) == ["LWA_CLIENT_IDS"]
        assert {"CLIENT_SECRET", "REDIRECT_URI", "LIVE_TOKEN"} <= RESERVED_VARIABLES
        assert "CLIENT_ID" not in RESERVED_VARIABLES

    def test_an_empty_unknown_variable_is_ignored(self) -> None:
        assert LWASettings.from_env({**env(), "LWA_CLIENT_ID": ""}).client_ids == (CLIENT,)


class TestQuotesAndJSON:
    @pytest.mark.parametrize(
        "text",
        [
            '["a", "b"]',
            '"a", "b"',
            "'a' 'b'",
            '"a b"',
            "a, b",
            ' [ "a" , "b" ] ',
        ],
    )
    def test_client_ids(self, text: str) -> None:
        assert LWASettings.from_env({"LWA_CLIENT_IDS": text}).client_ids == ("a", "b")

    @pytest.mark.parametrize(
        "text", ['["a", 1]', '["a", ""]', '["a", "  "]', '["a"', "[a, b]", "[]x"]
    )
    def test_bad_json_list(self, text: str) -> None:
        with pytest.raises(ConfigurationError, match=r"^LWA_CLIENT_IDS .*JSON list"):
            LWASettings.from_env({"LWA_CLIENT_IDS": text})

    @pytest.mark.parametrize("text", ['"https://x.example"', "'https://x.example'"])
    def test_a_quoted_value(self, text: str) -> None:
        assert LWASettings.from_env(env(api_base_url=text)).api_base_url == "https://x.example"

    @pytest.mark.parametrize(
        ("variables", "variable"),
        [
            ({"client_ids": '"a'}, "LWA_CLIENT_IDS"),
            ({"client_ids": "a'b"}, "LWA_CLIENT_IDS"),
            ({"client_ids": "\"a'"}, "LWA_CLIENT_IDS"),
            ({"api_base_url": '"https://x.example'}, "LWA_API_BASE_URL"),
            ({"region": "'EU\""}, "LWA_REGION"),
            ({"cookie_name": 'my"cookie'}, "LWA_COOKIE_NAME"),
            ({"require_scopes": '/a="profile"'}, "LWA_REQUIRE_SCOPES"),
        ],
    )
    def test_stray_quotes_refused(self, variables: dict[str, str], variable: str) -> None:
        with pytest.raises(ConfigurationError, match=f"^{variable} has a stray quote"):
            LWASettings.from_env(env(**variables))

    def test_quoted_numbers_booleans_and_rules(self) -> None:
        s = LWASettings.from_env(
            env(
                cache_ttl='"60"',
                cache_maxsize="'10'",
                verify_preflight='"yes"',
                require_scopes='"/admin/*=profile;/zip/*=postal_code"',
            )
        )
        assert (s.cache_ttl, s.cache_maxsize, s.verify_preflight) == (60.0, 10, True)
        assert set(s.require_scopes) == {"/admin/*", "/zip/*"}

    @pytest.mark.parametrize("text", ['""', "''", "  ", ""])
    def test_empty_and_quoted_empty_are_unset(self, text: str) -> None:
        assert LWASettings.from_env(env(exclude=text, cache_ttl=text)).cache_ttl == 300

    def test_quoted_pattern_list(self) -> None:
        s = LWASettings.from_env(env(exclude='"/health /static/*"', optional='["/hello"]'))
        assert s.exclude == ("/health", "/static/*")
        assert s.optional == ("/hello",)


class TestOneSplittingRule:
    @pytest.mark.parametrize("name", ["exclude", "protect", "optional"])
    def test_one_string_of_patterns(self, name: str) -> None:
        assert getattr(settings(**{name: "/health /static/*"}), name) == ("/health", "/static/*")
        assert getattr(settings(**{name: "/a,/b, /c"}), name) == ("/a", "/b", "/c")

    def test_one_string_of_ids_and_sources(self) -> None:
        s = LWASettings(client_ids="a b", app_ids="x,y", token_sources="header query")  # type: ignore[arg-type]
        assert (s.client_ids, s.app_ids, s.token_sources) == (
            ("a", "b"),
            ("x", "y"),
            ("header", "query"),
        )

    @pytest.mark.parametrize("name", ["exclude", "protect", "optional"])
    def test_keyword_and_environment_agree(self, name: str) -> None:
        text = ' /a, "/b"  /c,/d '
        from_env = LWASettings.from_env(env(**{name: text}))
        assert getattr(from_env, name) == getattr(settings(**{name: text}), name)
        assert split_items("x", text) == ("/a", "/b", "/c", "/d")

    @pytest.mark.parametrize("name", ["exclude", "protect", "optional"])
    @pytest.mark.parametrize("pattern", ["/my files/*", "/a\tb", "/a\nb"])
    def test_whitespace_in_a_listed_pattern(self, name: str, pattern: str) -> None:
        with pytest.raises(ConfigurationError, match="path patterns cannot contain whitespace"):
            settings(**{name: [pattern]})

    def test_whitespace_in_a_require_scopes_pattern(self) -> None:
        with pytest.raises(ConfigurationError, match="cannot contain whitespace"):
            settings(require_scopes={"/my files/*": "profile"})

    def test_the_hint_names_question_mark(self) -> None:
        with pytest.raises(ConfigurationError, match=r"'\?'"):
            settings(exclude=("/my files/*",))
        assert settings(exclude=("/my?files/*",)).exclude == ("/my?files/*",)


class TestInsecureHTTP:
    @pytest.mark.parametrize(
        "url",
        [
            "http://127.0.0.1:8765",
            "http://127.8.9.10",
            "http://localhost:8000",
            "http://LOCALHOST",
            "http://[::1]:8765",
            "http://[::ffff:127.0.0.1]:80",
            "https://lwa.example.com",
            "https://10.0.0.5",
        ],
    )
    def test_allowed(self, url: str) -> None:
        assert not is_insecure_http(url)
        assert settings(api_base_url=url).api_base_url == url.rstrip("/")

    @pytest.mark.parametrize(
        "url",
        [
            "http://lwa.example.com",
            "http://10.0.0.5:8765",
            "http://0.0.0.0:8765",
            "http://[::2]",
            "http://localhost.example.com",
            "http://128.0.0.1",
            "HTTP://api.amazon.com",
        ],
    )
    def test_refused_unless_allowed(self, url: str) -> None:
        assert is_insecure_http(url)
        with pytest.raises(ConfigurationError, match=r"plain http.*allow_insecure_http=True"):
            settings(api_base_url=url)
        assert settings(api_base_url=url, allow_insecure_http=True).allow_insecure_http

    def test_from_the_environment(self) -> None:
        url = "http://emulator.internal:8765"
        with pytest.raises(ConfigurationError, match=r"^LWA_API_BASE_URL: .*plain http"):
            LWASettings.from_env(env(api_base_url=url))
        s = LWASettings.from_env(env(api_base_url=url, allow_insecure_http="true"))
        assert s.api_base_url == url

    def test_credentials_in_the_url_are_not_shown(self) -> None:
        with pytest.raises(ConfigurationError) as caught:
            settings(api_base_url="http://user:hunter2@lwa.example.com")
        assert "hunter2" not in str(caught.value)

    def test_replacing_settings_keeps_the_check(self) -> None:
        base = settings(api_base_url=EMULATOR)
        with pytest.raises(ConfigurationError, match="plain http"):
            LWASettings.build(base, {"api_base_url": "http://lwa.example.com"})


class TestErrorsThatSayWhatWasTried:
    @pytest.mark.parametrize(
        "url",
        [
            "https://api.amazon.com/auth/o2/tokeninfo",
            "https://api.amazon.com/auth/O2/token",
            "https://api.amazon.com/user/profile",
            "http://127.0.0.1:8000/auth/o2/tokeninfo/",
        ],
    )
    def test_an_endpoint_url_is_not_a_base_url(self, url: str) -> None:
        with pytest.raises(ConfigurationError, match="not an endpoint's: drop the path"):
            LWASettings(client_ids=["c"], api_base_url=url)

    def test_a_base_url_under_a_prefix_is_fine(self) -> None:
        url = "http://127.0.0.1:8000/lwa"
        assert LWASettings(client_ids=["c"], api_base_url=url).api_base_url == url

    def test_an_app_id_is_not_a_client_id(self) -> None:
        with pytest.raises(ConfigurationError, match=r"is an app ID.*app_ids"):
            LWASettings(client_ids=["amzn1.application.0123456789abcdef"])
        settings = LWASettings(
            client_ids=["amzn1.application-oa2-client.abc"], app_ids=["amzn1.application.abc"]
        )
        assert settings.app_ids == ("amzn1.application.abc",)

    def test_from_env_with_nothing_set_names_the_variable(self) -> None:
        with pytest.raises(ConfigurationError, match=r"^LWA_CLIENT_IDS is not set"):
            LWASettings.from_env({})
        with pytest.raises(ConfigurationError, match=r"^APP_CLIENT_IDS is not set"):
            LWASettings.from_env({}, prefix="APP_")
        assert LWASettings.from_env({}, client_ids=["c"]).client_ids == ("c",)

    def test_a_short_secret_key_is_refused(self) -> None:
        with pytest.raises(ConfigurationError, match="at least 16 bytes"):
            LWASettings(client_ids=["c"], secret_key="too-short")
        with pytest.raises(ConfigurationError, match="at least 16 bytes"):
            LWASettings(client_ids=["c"], secret_key=["a" * 16, "short"])
        rotated = LWASettings(client_ids=["c"], secret_key=["n" * 16, "o" * 16])
        assert rotated.secret_keys == (b"n" * 16, b"o" * 16)
        listed = LWASettings.from_env(env(secret_key='["' + "n" * 16 + '", "' + "o" * 16 + '"]'))
        assert listed.secret_keys == rotated.secret_keys
