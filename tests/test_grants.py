"""The token endpoint's protocol without I/O (``lwa_middleware.core.grants``): requests built,
every documented error, malformed answers refused, no secret in a ``repr`` or a message."""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import parse_qsl

import pytest

from lwa_middleware.core.errors import ConfigurationError
from lwa_middleware.core.grants import (
    GRANT_ERRORS,
    MAX_EXPIRES_IN,
    MAX_GRANT_BODY,
    GrantError,
    GrantRequest,
    GrantUnavailable,
    InvalidClient,
    InvalidGrant,
    InvalidGrantRequest,
    InvalidScope,
    TokenGrant,
    UnauthorizedClient,
    UnsupportedGrantType,
    code_challenge_s256,
    code_grant,
    grant_request,
    new_code_verifier,
    parse_grant,
    refresh_grant,
)

API = "https://api.amazon.com"
CODE = "ANdNAVhyhqirUelHGEHA"
SECRET = "amzn1.oa2-cs.v1.s3cr3t-value"
VERIFIER = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
ACCESS = "Atza|IwEBIA" + "a" * 360
REFRESH = "Atzr|IwEBIB" + "r" * 360
JSON_TYPE = "application/json;charset=UTF-8"
SECRETS = (CODE, SECRET, VERIFIER, ACCESS, REFRESH)


def answer(**fields: Any) -> bytes:
    body: dict[str, Any] = {
        "access_token": ACCESS,
        "token_type": "bearer",
        "expires_in": 3600,
        "refresh_token": REFRESH,
    }
    body.update(fields)
    return json.dumps({key: value for key, value in body.items() if value is not ...}).encode()


def form_of(request: GrantRequest) -> dict[str, str]:
    return dict(parse_qsl(request.body.decode("ascii"), strict_parsing=True))


def assert_no_secret(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text
    assert "Atza" not in text and "Atzr" not in text


# Requests ---------------------------------------------------------------------------------


class TestRequests:
    def test_code_grant(self) -> None:
        request = code_grant(
            API + "/",
            code=CODE,
            redirect_uri="https://app.example.com/auth/callback",
            client_id="amzn1.application-oa2-client.abc",
            client_secret=SECRET,
            code_verifier=VERIFIER,
        )
        assert request.url == "https://api.amazon.com/auth/o2/token"
        assert request.method == "POST"
        assert request.grant_type == "authorization_code"
        assert form_of(request) == {
            "grant_type": "authorization_code",
            "code": CODE,
            "redirect_uri": "https://app.example.com/auth/callback",
            "client_id": "amzn1.application-oa2-client.abc",
            "client_secret": SECRET,
            "code_verifier": VERIFIER,
        }
        assert dict(request.headers) == {
            "content-type": "application/x-www-form-urlencoded;charset=UTF-8",
            "accept": "application/json",
            "user-agent": "lwa-middleware",
        }
        assert set(request.sensitive_values) == {CODE, SECRET, VERIFIER}

    def test_code_grant_with_only_one_of_secret_and_verifier(self) -> None:
        pkce = code_grant(
            API, code=CODE, redirect_uri="https://a/cb", client_id="c", code_verifier=VERIFIER
        )
        assert "client_secret" not in pkce.form
        assert pkce.form["code_verifier"] == VERIFIER
        secret = code_grant(
            API, code=CODE, redirect_uri="https://a/cb", client_id="c", client_secret=SECRET
        )
        assert "code_verifier" not in secret.form
        with pytest.raises(ValueError, match="client_secret and/or code_verifier"):
            code_grant(API, code=CODE, redirect_uri="https://a/cb", client_id="c")

    def test_refresh_grant(self) -> None:
        request = refresh_grant(API, refresh_token=REFRESH, client_id="c", client_secret=SECRET)
        assert form_of(request) == {
            "grant_type": "refresh_token",
            "refresh_token": REFRESH,
            "client_id": "c",
            "client_secret": SECRET,
        }
        public = refresh_grant(API, refresh_token=REFRESH, client_id="c")
        assert form_of(public) == {
            "grant_type": "refresh_token",
            "refresh_token": REFRESH,
            "client_id": "c",
        }

    def test_the_generic_builder(self) -> None:
        request = grant_request(
            "https://api.amazon.co.uk",
            "device_code",
            {"device_code": "d-123", "user_code": "ABCD", "client_id": "c", "skip": None},
        )
        assert request.url == "https://api.amazon.co.uk/auth/o2/token"
        assert form_of(request) == {
            "grant_type": "device_code",
            "device_code": "d-123",
            "user_code": "ABCD",
            "client_id": "c",
        }
        assert set(request.sensitive_values) == {"d-123", "ABCD"}

    def test_the_pipe_is_encoded(self) -> None:
        request = refresh_grant(API, refresh_token="Atzr|a+b/c=", client_id="c")
        assert b"Atzr%7Ca%2Bb%2Fc%3D" in request.body

    def test_the_repr_holds_no_secret(self) -> None:
        request = code_grant(
            API,
            code=CODE,
            redirect_uri="https://a/cb",
            client_id="c",
            client_secret=SECRET,
            code_verifier=VERIFIER,
        )
        text = repr(request)
        assert text.startswith("GrantRequest(POST https://api.amazon.com/auth/o2/token")
        assert "grant_type=authorization_code" in text
        assert "code_verifier" in text  # the field names only
        assert_no_secret(text)
        assert_no_secret(str(request))
        assert_no_secret(repr(refresh_grant(API, refresh_token=REFRESH, client_id="c")))

    @pytest.mark.parametrize("bad", ["", " padded ", "line\nbreak", "tab\tchar", "x" * 5000])
    def test_bad_fields_are_refused_without_their_value(self, bad: str) -> None:
        with pytest.raises(ValueError) as caught:
            code_grant(
                API, code=bad, redirect_uri="https://a/cb", client_id="c", client_secret=SECRET
            )
        assert "code" in str(caught.value)
        if bad.strip():
            assert bad.strip()[:5] not in str(caught.value)

    def test_a_field_that_is_no_string(self) -> None:
        with pytest.raises(TypeError):
            refresh_grant(API, refresh_token=b"Atzr|x", client_id="c")  # type: ignore[arg-type]

    @pytest.mark.parametrize("base", ["ftp://api.amazon.com", "api.amazon.com", "https://a?x=1"])
    def test_a_bad_base_url(self, base: str) -> None:
        with pytest.raises(ConfigurationError):
            refresh_grant(base, refresh_token=REFRESH, client_id="c")

    def test_the_form_cannot_be_changed(self) -> None:
        request = refresh_grant(API, refresh_token=REFRESH, client_id="c")
        with pytest.raises(TypeError):
            request.form["client_id"] = "other"  # type: ignore[index]


# Answers ----------------------------------------------------------------------------------


class TestGrant:
    def test_success(self) -> None:
        grant = parse_grant(200, JSON_TYPE, answer())
        assert grant == TokenGrant(ACCESS, 3600, REFRESH, "bearer", None)
        assert grant.expires_at(1_000.0) == 4_600.0
        assert_no_secret(repr(grant))
        assert repr(grant) == "TokenGrant(expires_in=3600, token_type='bearer', scope=None)"

    def test_optional_fields(self) -> None:
        grant = parse_grant(200, "application/json", answer(refresh_token=..., token_type="Bearer"))
        assert grant.refresh_token is None
        assert grant.token_type == "bearer"
        assert (
            parse_grant(200, "application/json", answer(refresh_token=None)).refresh_token is None
        )
        scoped = parse_grant(200, "application/json", answer(scope="profile postal_code"))
        assert scoped.scope == "profile postal_code"
        assert parse_grant(200, "application/json", answer(scope="")).scope is None
        assert parse_grant(200, "application/vnd.amazon+json", answer()).access_token == ACCESS

    @pytest.mark.parametrize(
        "fields",
        [
            {"access_token": ...},
            {"access_token": ""},
            {"access_token": 42},
            {"access_token": "Atza|with space"},
            {"access_token": "Atza|ctl\x01"},
            {"access_token": "Atza|é"},
            {"access_token": "Atza|" + "a" * 4092},
            {"refresh_token": ""},
            {"refresh_token": 7},
            {"refresh_token": "Atzr|\n"},
            {"token_type": ...},
            {"token_type": "mac"},
            {"token_type": None},
            {"expires_in": ...},
            {"expires_in": 0},
            {"expires_in": -5},
            {"expires_in": "3600"},
            {"expires_in": 3600.0},
            {"expires_in": True},
            {"expires_in": MAX_EXPIRES_IN + 1},
            {"scope": 3},
            {"scope": "a\nb"},
        ],
    )
    def test_malformed_answers(self, fields: dict[str, Any]) -> None:
        with pytest.raises(GrantUnavailable) as caught:
            parse_grant(200, JSON_TYPE, answer(**fields))
        assert caught.value.status == 500
        assert caught.value.error == "ServerError"
        assert_no_secret(str(caught.value) + repr(caught.value))

    def test_the_longest_token_and_lifetime(self) -> None:
        token = "Atza|" + "a" * 4091
        grant = parse_grant(200, JSON_TYPE, answer(access_token=token, expires_in=MAX_EXPIRES_IN))
        assert grant.access_token == token

    @pytest.mark.parametrize(
        ("content_type", "body"),
        [
            ("text/html", answer()),
            (None, answer()),
            (JSON_TYPE, b"<html>hi</html>"),
            (JSON_TYPE, b"[1, 2]"),
            (JSON_TYPE, b"\xff\xfe"),
            (JSON_TYPE, b"[" * 100_000),
            (JSON_TYPE, answer(padding="x" * MAX_GRANT_BODY)),
        ],
    )
    def test_unusable_bodies(self, content_type: str | None, body: bytes) -> None:
        with pytest.raises(GrantUnavailable):
            parse_grant(200, content_type, body)


def error_body(error: str, description: str = "Something about it") -> bytes:
    return json.dumps({"error": error, "error_description": description}).encode()


class TestErrors:
    @pytest.mark.parametrize(
        ("code", "status", "cls"),
        [
            ("invalid_grant", 400, InvalidGrant),
            ("invalid_request", 400, InvalidGrantRequest),
            ("invalid_client", 401, InvalidClient),
            ("invalid_client", 400, InvalidClient),
            ("unauthorized_client", 400, UnauthorizedClient),
            ("unsupported_grant_type", 400, UnsupportedGrantType),
            ("invalid_scope", 400, InvalidScope),
        ],
    )
    def test_every_documented_code(self, code: str, status: int, cls: type[GrantError]) -> None:
        with pytest.raises(cls) as caught:
            parse_grant(status, JSON_TYPE, error_body(code, "The thing is wrong"))
        error = caught.value
        assert type(error) is cls
        assert isinstance(error, GrantError)
        assert (error.error, error.status, error.description) == (
            code,
            status,
            "The thing is wrong",
        )
        assert GRANT_ERRORS[code] is cls

    def test_server_error(self) -> None:
        with pytest.raises(GrantUnavailable) as caught:
            parse_grant(400, JSON_TYPE, error_body("ServerError"))
        assert (caught.value.error, caught.value.status) == ("ServerError", 500)

    @pytest.mark.parametrize("status", [500, 502, 503, 504, 429])
    def test_5xx_and_429(self, status: int) -> None:
        with pytest.raises(GrantUnavailable) as caught:
            parse_grant(status, JSON_TYPE, error_body("invalid_grant"))
        assert caught.value.status == status
        assert str(status) in caught.value.description

    @pytest.mark.parametrize(
        ("status", "body"),
        [
            (400, b"<html>bad</html>"),
            (400, b"{}"),
            (400, b'{"error": 5}'),
            (400, b'{"error": "has space"}'),
            (401, b""),
            (302, error_body("invalid_grant")),
            (201, answer()),
            (204, b""),
            (404, error_body("x" * 100)),
        ],
    )
    def test_answers_without_a_documented_error(self, status: int, body: bytes) -> None:
        with pytest.raises(GrantUnavailable) as caught:
            parse_grant(status, JSON_TYPE, body)
        assert caught.value.status == 500

    def test_an_undocumented_code_is_kept(self) -> None:
        with pytest.raises(GrantError) as caught:
            parse_grant(400, JSON_TYPE, error_body("authorization_pending", "Not yet"))
        assert type(caught.value) is GrantError
        assert (caught.value.error, caught.value.status) == ("authorization_pending", 400)

    def test_more_codes_can_be_mapped(self) -> None:
        class AuthorizationPending(GrantError):
            error = "authorization_pending"

        errors = {**GRANT_ERRORS, "authorization_pending": AuthorizationPending}
        with pytest.raises(AuthorizationPending):
            parse_grant(400, JSON_TYPE, error_body("authorization_pending"), errors=errors)

    @pytest.mark.parametrize(
        "description",
        [
            f"The code {CODE} is invalid",
            f"Bad secret {SECRET[:12]}",
            f"verifier {VERIFIER[5:20]} does not match",
            "Token Atzr|abc was revoked",
            "Atza|xyz",
        ],
    )
    def test_descriptions_that_echo_a_secret_are_dropped(self, description: str) -> None:
        request = code_grant(
            API,
            code=CODE,
            redirect_uri="https://a/cb",
            client_id="c",
            client_secret=SECRET,
            code_verifier=VERIFIER,
        )
        with pytest.raises(InvalidGrant) as caught:
            parse_grant(
                400,
                JSON_TYPE,
                error_body("invalid_grant", description),
                sensitive=request.sensitive_values,
            )
        assert caught.value.description == InvalidGrant.default_description
        assert_no_secret(str(caught.value) + repr(caught.value) + repr(caught.value.args))

    @pytest.mark.parametrize("description", ["", "   ", "a\nb", 5, None])
    def test_unusable_descriptions_fall_back(self, description: object) -> None:
        body = json.dumps({"error": "invalid_client", "error_description": description}).encode()
        with pytest.raises(InvalidClient) as caught:
            parse_grant(401, JSON_TYPE, body)
        assert caught.value.description == InvalidClient.default_description

    def test_long_descriptions_are_cut(self) -> None:
        with pytest.raises(InvalidGrant) as caught:
            parse_grant(400, JSON_TYPE, error_body("invalid_grant", "x" * 1000))
        assert len(caught.value.description) == 300

    def test_defaults(self) -> None:
        assert GrantError().status == 400
        assert InvalidClient().status == 401
        assert GrantUnavailable().status == 500
        assert GrantUnavailable().error == "ServerError"
        assert re.fullmatch(
            r"InvalidGrant\('invalid_grant', '.+', status=400\)", repr(InvalidGrant())
        )


# PKCE -------------------------------------------------------------------------------------


class TestPKCE:
    def test_rfc7636_appendix_b(self) -> None:
        assert code_challenge_s256(VERIFIER) == "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"

    def test_verifiers(self) -> None:
        seen = set()
        for length in (43, 64, 128):
            verifier = new_code_verifier(length)
            assert re.fullmatch(r"[A-Za-z0-9\-._~]+", verifier)
            assert len(verifier) == length
            challenge = code_challenge_s256(verifier)
            assert re.fullmatch(r"[A-Za-z0-9_-]{43}", challenge)
            seen.add(verifier)
        assert len(new_code_verifier()) == 64
        assert new_code_verifier() != new_code_verifier()
        assert len(seen) == 3

    @pytest.mark.parametrize("length", [42, 129, 0, True])
    def test_bad_lengths(self, length: int) -> None:
        with pytest.raises(ValueError):
            new_code_verifier(length)

    @pytest.mark.parametrize("verifier", ["short", "a" * 129, "a" * 42 + "!", "a" * 42 + " "])
    def test_bad_verifiers(self, verifier: str) -> None:
        with pytest.raises(ValueError):
            code_challenge_s256(verifier)
