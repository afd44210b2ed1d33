"""The access policy's core (no server): rules, how sources and patterns combine, the route
memo, the policy file's watch, the options and the environment, the error."""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import os
import threading
from pathlib import Path
from typing import Any

import pytest

from lwa_middleware import (
    AccessDenied,
    ConfigurationError,
    Identity,
    LWAMiddleware,
    LWASettings,
    LWAWSGIMiddleware,
    Profile,
    TokenInfo,
)
from lwa_middleware.core.errors import render_error
from lwa_middleware.core.gate import Gate
from lwa_middleware.core.policy import (
    DENIED,
    REFUSALS,
    AccessPolicy,
    PolicySource,
    callable_failed,
    callable_verdict,
    email_keys,
    is_async_callable,
    parse_document,
    parse_rules,
)
from lwa_middleware.core.rules import PathRules, path_forms
from lwa_middleware.upstream.policy_watch import PolicyFile, PolicyWatch, build_policy
from lwa_middleware.upstream.steps import arun

CLIENT = "amzn1.application-oa2-client.policy"


async def asgi_app(scope: Any, receive: Any, send: Any) -> None:
    """An ASGI app never reached: these tests build middlewares, they send no request."""


def wsgi_app(environ: Any, start_response: Any) -> list[bytes]:
    return []


def person(user_id: str, email: str | None = None) -> Identity:
    info = TokenInfo(user_id, CLIENT, None, None, 4e9, None)
    return Identity.build(info, Profile(user_id, "Someone" if email else None, email))


ADA = person("amzn1.account.ADA", "ada@example.com")
BOB = person("amzn1.account.BOB", "Bob@Partner.Example")
EVE = person("amzn1.account.EVE", "eve@evil.example")
NOMAIL = person("amzn1.account.NOMAIL")


def policy(allow: Any = None, deny: Any = None, *more: PolicySource) -> AccessPolicy:
    return AccessPolicy([PolicySource.of("options", allow, deny), *more])


def admits(policy_: AccessPolicy, identity: Identity, path: str) -> bool:
    access = policy_.access(path_forms(path))
    verdict = access is None or access.admits(identity)
    refusal = None if access is None else access.refusal(identity)
    assert verdict is (refusal is None), (path, refusal)  # both readings agree
    return verdict


class TestRules:
    def test_each_kind(self) -> None:
        rules = parse_rules(
            "allow",
            ["user:amzn1.account.X", "email:Ada@Example.COM", "domain:Partner.Example.", "*"],
        )
        assert rules.anyone
        assert rules.users == {"amzn1.account.X"}
        assert rules.emails == {"ada@example.com"}
        assert rules.domains == {"partner.example"}

    def test_one_string_of_rules(self) -> None:
        rules = parse_rules("x", "user:a, domain:example.com  email:b@c.d")
        assert rules.users == {"a"} and rules.domains == {"example.com"}
        assert rules.emails == {"b@c.d"}

    def test_international_domains_are_one_domain(self) -> None:
        rules = parse_rules("x", ["domain:bücher.example"])
        assert rules.domains == {"xn--bcher-kva.example"}
        assert email_keys("Hans@BÜCHER.example") == (
            "hans@xn--bcher-kva.example",
            "hans@xn--bcher-kva.example",
            "xn--bcher-kva.example",
        )
        assert email_keys("ada@example.com. ") == ("ada@example.com",) * 2 + ("example.com",)
        assert email_keys(None) == email_keys("") == (None, None, None)
        assert email_keys("nodomain")[2] is None

    def test_a_local_part_that_is_not_ascii(self) -> None:
        """Lower-casing ``\u212a`` (the Kelvin sign) gives ``k``: an allow rule must not
        admit another mailbox that lower-cases alike; a deny rule refuses every case."""
        kelvin = person("amzn1.account.KELVIN", "\u212aim@example.com")
        assert not admits(policy({"/*": ["email:kim@example.com"]}), kelvin, "/x")
        assert admits(policy({"/*": ["email:\u212aim@example.com"]}), kelvin, "/x")
        assert not admits(policy(None, ["email:kim@example.com"]), kelvin, "/x")
        umlaut = person("amzn1.account.UMLAUT", "ÄDA@example.com")
        assert not admits(policy({"/*": ["email:äda@example.com"]}), umlaut, "/x")
        assert not admits(policy(None, ["email:äda@example.com"]), umlaut, "/x")
        assert admits(policy({"/*": ["domain:EXAMPLE.com"]}), kelvin, "/x")

    @pytest.mark.parametrize(
        "rule",
        [
            "users:x",
            "User:x",
            "user:",
            "user: x",
            "user:a b",
            "email:ada",
            "email:@example.com",
            "email:a@b@c",
            "domain:@example.com",
            "domain:*.example.com",
            "domain:.example.com",
            "domain:",
            "anyone",
            "**",
            "",
            "user:x\ny",
        ],
    )
    def test_a_malformed_rule_is_refused(self, rule: str) -> None:
        with pytest.raises(ConfigurationError, match="is not a rule"):
            parse_rules("allow['/*']", [rule] if rule.strip() else [rule, 3])

    @pytest.mark.parametrize(
        "options",
        [
            {"allow": ["user:x"]},
            {"allow": {"admin/*": ["*"]}},
            {"allow": {"/a b": ["*"]}},
            {"allow": {"/*": 3}},
            {"deny": {"/*": ["domain:"]}},
            {"deny": ["email:x"]},
            {"policy_file": 3},
            {"authorize": "yes"},
        ],
    )
    def test_options_are_checked_at_construction(self, options: dict[str, Any]) -> None:
        with pytest.raises(ConfigurationError):
            LWASettings(client_ids=[CLIENT], **options)

    def test_options_are_kept_normalized(self) -> None:
        settings = LWASettings(
            client_ids=[CLIENT], allow={"/*": "domain:a.example user:x"}, deny=["user:y"]
        )
        assert dict(settings.allow or {}) == {"/*": ("domain:a.example", "user:x")}
        assert settings.deny == ("user:y",)
        assert "domain" not in repr(settings)  # lists of people stay out of repr


class TestCombination:
    def test_a_path_no_allow_pattern_matches_admits_any_customer(self) -> None:
        rules = policy({"/admin/*": ["user:amzn1.account.ADA"]})
        assert admits(rules, EVE, "/shop")
        assert rules.access(["/shop"]) is None  # nothing to check there at all

    def test_every_matching_allow_must_admit(self) -> None:
        rules = policy(
            {
                "/*": ["domain:example.com", "domain:partner.example"],
                "/admin/*": ["email:ada@example.com", "email:bob@partner.example"],
                "/admin/audit/*": ["domain:partner.example"],
            }
        )
        assert admits(rules, ADA, "/admin/x") and admits(rules, BOB, "/admin/x")
        assert not admits(rules, ADA, "/admin/audit/x")  # nested: narrowed
        assert admits(rules, BOB, "/admin/audit/x")
        assert not admits(rules, EVE, "/x")

    def test_the_bare_prefix(self) -> None:
        rules = policy({"/admin/*": ["user:amzn1.account.ADA"]}, {"/old/**": ["*"]})
        for path in ("/admin", "/admin/", "/admin/x"):
            assert not admits(rules, EVE, path)
            assert admits(rules, ADA, path)
        assert admits(rules, EVE, "/administrator")
        assert not admits(rules, ADA, "/old")
        assert admits(rules, ADA, "/older")

    @pytest.mark.parametrize(
        "path",
        [
            "/admin/../me",
            "/me/../admin",
            "//admin",
            "/admin;x",
            "/admin/%2e%2e/me",
            "/x\\..\\admin",
        ],
    )
    def test_every_form_of_a_path(self, path: str) -> None:
        rules = policy(
            {"/admin/*": ["user:amzn1.account.ADA"]}, {"/me/*": ["user:amzn1.account.X"]}
        )
        assert not admits(rules, EVE, path)
        assert admits(rules, ADA, path)
        deny = policy(None, {"/admin/*": ["domain:example.com"]})
        assert not admits(deny, ADA, path)
        assert admits(deny, EVE, path)

    def test_deny_wins(self) -> None:
        rules = policy({"/*": ["*", "user:amzn1.account.ADA"]}, ["email:ADA@example.com"])
        assert not admits(rules, ADA, "/x")
        assert admits(rules, BOB, "/x")
        denied = rules.access(["/x"])
        assert denied is not None and denied.refusal(ADA) == "deny:email"

    def test_customers_without_an_email(self) -> None:
        by_user = policy({"/*": ["user:amzn1.account.NOMAIL", "domain:example.com"]})
        assert admits(by_user, NOMAIL, "/x")
        by_mail = policy({"/*": ["domain:example.com", "email:x@y.z"]})
        assert not admits(by_mail, NOMAIL, "/x")
        access = by_mail.access(["/x"])
        assert access is not None and access.refusal(NOMAIL) == "allow:no-email"
        for deny in (["email:x@y.z"], ["domain:y.z"]):
            refused = policy(None, deny)
            assert not admits(refused, NOMAIL, "/x")
            assert admits(refused, ADA, "/x")
            access = refused.access(["/x"])
            assert access is not None and access.refusal(NOMAIL) == "deny:no-email"
        assert admits(policy(None, ["user:someone"]), NOMAIL, "/x")

    def test_sources_combined_none_widens_another(self) -> None:
        file = PolicySource.of(
            "file",
            {"/*": ["domain:evil.example", "domain:example.com"]},
            ["user:amzn1.account.BOB"],
        )
        env = PolicySource.of("LWA_ALLOW", {"/*": ["domain:example.com", "domain:partner.example"]})
        rules = policy({"/*": ["domain:example.com", "domain:partner.example"]}, None, file, env)
        assert admits(rules, ADA, "/x")
        assert not admits(rules, EVE, "/x")  # the file admits evil.example; the options do not
        assert not admits(rules, BOB, "/x")  # the file's deny
        assert not admits(policy(None, None, env), EVE, "/x")

    def test_refusals_are_named_by_kind(self) -> None:
        rules = policy(
            {"/*": ["domain:example.com", "domain:partner.example"]},
            {"/a/*": ["user:amzn1.account.ADA"], "/b/*": ["domain:partner.example"], "/c/*": ["*"]},
        )
        seen = {
            (path, identity.user_id): access.refusal(identity)
            for path in ("/a/x", "/b/x", "/c/x", "/x")
            for identity in (ADA, BOB, EVE)
            if (access := rules.access([path])) is not None
        }
        assert seen[("/a/x", ADA.user_id)] == "deny:user"
        assert seen[("/b/x", BOB.user_id)] == "deny:domain"
        assert seen[("/c/x", ADA.user_id)] == "deny:*"
        assert seen[("/x", EVE.user_id)] == "allow"
        assert seen[("/x", ADA.user_id)] is None
        assert set(seen.values()) - {None} <= set(REFUSALS)

    def test_an_empty_allow_list_admits_no_one(self) -> None:
        assert not admits(policy({"/locked/*": []}), ADA, "/locked/x")

    def test_a_thousand_rules_are_sets(self) -> None:
        users = [f"user:amzn1.account.U{i}" for i in range(1000)]
        rules = policy({"/*": [*users, "domain:example.com"]})
        access = rules.access(["/x"])
        assert access is not None and len(access.required[0].users) == 1000
        assert admits(rules, person("amzn1.account.U999"), "/x")
        assert admits(rules, ADA, "/x") and not admits(rules, EVE, "/x")


class TestRoutes:
    def test_the_route_carries_its_rules_and_is_memoised(self) -> None:
        rules = PathRules(("/*",), ("/health",), policy=policy({"/admin/*": ["*"], "/a/*": []}))
        route = rules.route("/a/x")
        assert route.access is not None and rules.memo["/a/x"] is route
        assert rules.route("/admin/x").access is None  # '*' checks nothing
        assert rules.route("/health").access is None  # not verified: not judged
        assert rules.route("/a/%2e%2e/b").access is not None
        assert rules.route("/a/" + "%2e" * 2000).access is not None  # too long: strictest

    def test_a_new_policy_empties_the_memo(self) -> None:
        rules = PathRules(("/*",), policy=policy({"/*": ["user:a"]}))
        assert rules.route("/x").access is not None
        rules.set_policy(policy())
        assert not rules.memo
        assert rules.route("/x").access is None

    def test_a_route_judged_during_a_swap_is_not_memoised(self) -> None:
        old = policy({"/*": ["user:a"]})
        rules = PathRules(("/*",), policy=old)

        class Swapping(AccessPolicy):
            def access(self, forms: Any) -> Any:
                rules.set_policy(policy())  # the file changed while this route was judged
                return old.access(forms)

        rules.set_policy(Swapping([PolicySource.of("x", {"/*": ["user:a"]})]))
        assert rules.route("/x").access is not None  # answered ...
        assert "/x" not in rules.memo  # ... never memoised
        assert rules.route("/x").access is None

    def test_gate_admit_and_the_error(self) -> None:
        gate = Gate(LWASettings(client_ids=[CLIENT], allow={"/*": ["domain:example.com"]}))
        gate.admit(gate.route("/x"), ADA)
        with pytest.raises(AccessDenied):
            gate.admit(gate.route("/x"), EVE)
        with pytest.raises(ConfigurationError, match="policy_file"):
            Gate(LWASettings(client_ids=[CLIENT], policy_file="/nowhere.json"))

    @pytest.mark.parametrize("style", ["lwa", "rfc6750"])
    def test_the_error_in_both_styles(self, style: Any) -> None:
        status, headers, body = render_error(AccessDenied(DENIED), style, "lwa", "rid")
        assert status == 403
        assert dict(headers)["content-type"] == "application/json;charset=UTF-8"
        assert "www-authenticate" not in dict(headers)
        assert json.loads(body) == {
            "error": "access_denied",
            "error_description": DENIED,
            "request_id": "rid",
        }


class TestCallable:
    def test_verdicts(self, caplog: Any) -> None:
        callable_verdict(True)
        with pytest.raises(AccessDenied):
            callable_verdict(False)
        with caplog.at_level(logging.ERROR, logger="lwa_middleware"):
            for odd in (None, 1, "yes"):
                with pytest.raises(Exception, match="could not decide") as caught:
                    callable_verdict(odd)
                assert caught.value.error == "ServerError"  # type: ignore[attr-defined]
            error = callable_failed(RuntimeError("boom"))
        assert error.error == "ServerError" and error.status("lwa") == 500
        assert any(r.exc_info for r in caplog.records)

    def test_async_callables_are_recognized(self) -> None:
        async def judge(identity: Identity, method: str, path: str) -> bool:
            return True

        class Judge:
            async def __call__(self, identity: Identity, method: str, path: str) -> bool:
                return True

        class Method:
            async def check(self, identity: Identity, method: str, path: str) -> bool:
                return True

        for candidate in (judge, functools.partial(judge), Judge(), Method().check):
            assert is_async_callable(candidate)
        for other in (lambda i, m, p: True, functools.partial(print), len, object()):
            assert not is_async_callable(other)

    def test_wsgi_refuses_an_async_callable(self) -> None:
        async def judge(identity: Identity, method: str, path: str) -> bool:
            return True

        with pytest.raises(ConfigurationError, match="async"):
            LWAWSGIMiddleware(wsgi_app, client_ids=[CLIENT], authorize=judge)
        LWAMiddleware(asgi_app, client_ids=[CLIENT], authorize=judge)


class TestFiles:
    def test_json_and_toml(self, tmp_path: Path) -> None:
        source = parse_document("f", '{"allow": {"/*": ["user:a"]}, "deny": ["user:b"]}')
        assert source.allow[0][0] == "/*" and source.deny[0][1].users == {"b"}
        toml = parse_document("f", 'deny = ["user:b"]\n[allow]\n"/*" = ["user:a"]\n', "toml")
        assert toml.allow[0][1].users == {"a"} and toml.deny[0][1].users == {"b"}
        assert parse_document("f", "{}").empty

    @pytest.mark.parametrize(
        ("text", "problem"),
        [
            ("", "not valid JSON"),
            ("[]", "must be an object"),
            ('{"alow": {}}', "unknown key"),
            ('{"allow": {"/*": ["domian:x"]}}', "is not a rule"),
            ('{"allow": ["user:a"]}', "must map path patterns"),
            ('{"deny": ["user:a"], "deny": []}', "given twice"),
            ('{"allow": {"/*": ["user:a"], "/*": ["*"]}}', "given twice"),
        ],
    )
    def test_broken_at_start_is_a_configuration_error(
        self, tmp_path: Path, text: str, problem: str
    ) -> None:
        path = tmp_path / "policy.json"
        path.write_text(text)
        with pytest.raises(ConfigurationError, match=problem) as caught:
            LWAMiddleware(asgi_app, client_ids=[CLIENT], policy_file=path)
        assert str(path) in str(caught.value)
        with pytest.raises(ConfigurationError, match=problem):
            LWAWSGIMiddleware(wsgi_app, client_ids=[CLIENT], policy_file=path)

    def test_missing_at_start_is_a_configuration_error(self, tmp_path: Path) -> None:
        with pytest.raises(ConfigurationError, match="cannot be read"):
            LWAMiddleware(asgi_app, client_ids=[CLIENT], policy_file=tmp_path / "none")

    def test_the_watch(self, tmp_path: Path, caplog: Any) -> None:
        path = tmp_path / "p.json"
        path.write_text(json.dumps({"allow": {"/*": ["user:a"]}}))
        watch = PolicyWatch([], [PolicyFile(path)], interval=1.0)
        seen: list[AccessPolicy] = []
        watch.on_change = seen.append
        first = watch.policy
        watch.tick(100.0)  # the first look: unchanged
        assert watch.policy is first and not seen

        def write(text: str) -> None:
            path.write_text(text)
            os.utime(path, ns=(0, os.stat(path).st_mtime_ns + 1_000_000))

        write(json.dumps({"allow": {"/*": ["user:b"]}}))
        watch.tick(100.5)  # not due yet
        assert not seen
        watch.tick(101.0)
        assert len(seen) == 1 and seen[0] is watch.policy
        with caplog.at_level(logging.ERROR, logger="lwa_middleware"):
            write("{broken")
            watch.tick(102.0)
            watch.tick(103.0)  # logged once per change
            path.unlink()
            watch.tick(104.0)
            watch.tick(105.0)
        assert len(seen) == 1  # the last good policy stays
        messages = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
        assert len(messages) == 2, messages
        assert all(str(path) in m for m in messages)
        assert "not valid JSON" in messages[0]
        write(json.dumps({"deny": ["user:a"]}))
        watch.tick(50.0)  # the clock went back: looks at once
        assert len(seen) == 2
        access = seen[-1].access(["/x"])
        assert access is not None and access.deny is not None

    def test_one_thread_looks_at_a_time(self, tmp_path: Path) -> None:
        path = tmp_path / "p.json"
        path.write_text("{}")
        looks = []
        gate = threading.Event()

        class Slow(PolicyFile):
            def check(self) -> bool:
                looks.append(1)
                gate.wait(2)
                return super().check()

        watch = PolicyWatch([], [Slow(path)])
        worker = threading.Thread(target=watch.tick, args=(10.0,))
        worker.start()
        while not looks:
            pass
        watch.tick(10.0)
        watch.tick(20.0)  # due, but another thread is looking
        gate.set()
        worker.join()
        assert len(looks) == 1


class TestEnvironment:
    def test_variables(self, tmp_path: Path) -> None:
        path = tmp_path / "p.json"
        path.write_text('{"deny": ["user:c"]}')
        settings = LWASettings(client_ids=[CLIENT], allow={"/*": ["user:a", "user:b"]})
        environ = {
            "LWA_ALLOW": '{"/*": ["user:a"]}',
            "LWA_DENY": '["user:x"]',
            "LWA_POLICY_FILE": str(path),
        }
        watch = build_policy(settings, environ)
        assert [s.name for s in watch.policy.sources] == [
            "options",
            "LWA_ALLOW",
            "LWA_DENY",
            "LWA_POLICY_FILE " + repr(str(path)),
        ]
        assert admits(watch.policy, person("a"), "/x")
        assert not admits(watch.policy, person("b"), "/x")  # LWA_ALLOW narrows the options
        assert not admits(watch.policy, person("c"), "/x")

    @pytest.mark.parametrize(
        ("variable", "value", "problem"),
        [
            ("LWA_ALLOW", "[]", "JSON object"),
            ("LWA_ALLOW", "{", "not valid JSON"),
            ("LWA_DENY", '"user:a"', "JSON list"),
            ("LWA_DENY", '["nope"]', "is not a rule"),
            ("LWA_POLICY_FILE", "/nowhere/policy.json", "cannot be read"),
        ],
    )
    def test_a_bad_variable_is_refused_at_construction(
        self, monkeypatch: pytest.MonkeyPatch, variable: str, value: str, problem: str
    ) -> None:
        monkeypatch.setenv(variable, value)
        with pytest.raises(ConfigurationError, match=problem) as caught:
            LWAMiddleware(asgi_app, client_ids=[CLIENT])
        assert variable in str(caught.value)

    def test_from_env_leaves_them_to_the_middleware(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("LWA_ALLOW", '{"/*": ["user:a"]}')
        settings = LWASettings.from_env({"LWA_CLIENT_IDS": CLIENT, **os.environ})
        assert settings.allow is None  # not an option: the middleware reads it itself
        middleware = LWAMiddleware(asgi_app, settings=settings, allow={"/*": ["*"]})
        assert not middleware.policy.policy.empty  # `allow=` does not replace LWA_ALLOW
        monkeypatch.delenv("LWA_ALLOW")
        with pytest.raises(ConfigurationError, match="process environment"):
            LWASettings.from_env({"LWA_CLIENT_IDS": CLIENT, "LWA_DENY": '["user:a"]'})
        with pytest.raises(ConfigurationError, match="callable"):
            LWASettings.from_env({"LWA_CLIENT_IDS": CLIENT, "LWA_AUTHORIZE": "x"})


def test_async_callable_through_asyncio() -> None:
    """The ASGI shell's call of an async ``authorize`` (no server: the method alone)."""
    seen = []

    async def judge(identity: Identity, method: str, path: str) -> bool:
        seen.append((method, path))
        return path != "/no"

    middleware = LWAMiddleware(asgi_app, client_ids=[CLIENT], authorize=judge)
    asyncio.run(arun(middleware._authorized(ADA, "GET", "/yes")))
    with pytest.raises(AccessDenied):
        asyncio.run(arun(middleware._authorized(ADA, "GET", "/no")))
    assert seen == [("GET", "/yes"), ("GET", "/no")]
