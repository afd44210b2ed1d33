"""The fleet's one secret: a list rotates (sign with the first, accept any) for every
purpose, and each purpose's key is its own (HKDF)."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from itsdangerous import BadSignature

from lwa_middleware import ConfigurationError
from lwa_middleware.core.keys import LOGIN_SALT, KeyRing, hkdf, secret_keys
from lwa_middleware.core.tokens import cookie_signer
from lwa_middleware.login.cookies import Sealer

NEW, OLD = "new-secret-0123456789", "old-secret-0123456789"


def test_hkdf_is_rfc_5869() -> None:
    for info, length in (("refresh-cookie", 32), ("shared-cache", 80)):
        theirs = HKDF(
            algorithm=hashes.SHA256(), length=length, salt=LOGIN_SALT, info=info.encode()
        ).derive(b"x" * 20)
        assert hkdf(b"x" * 20, info, salt=LOGIN_SALT, length=length) == theirs


@pytest.mark.parametrize(
    "bad", ["short", b"", [], ["a" * 16, "short"], [b"a" * 16] * 9, 42, None, bytearray(20)]
)
def test_secret_keys_refuses(bad: object) -> None:
    with pytest.raises(ConfigurationError, match="at least 16 bytes") as caught:
        secret_keys(bad)
    assert "short" not in str(caught.value)  # never the value


def test_the_cookie_signer_rotates() -> None:
    signed_old = cookie_signer(OLD).sign("Atza|x").decode()
    rotated = cookie_signer([NEW, OLD])
    assert rotated.unsign(signed_old) == b"Atza|x"  # accepted under the old one
    signed_new = rotated.sign("Atza|x").decode()
    assert cookie_signer(NEW).unsign(signed_new) == b"Atza|x"  # signed with the newest
    with pytest.raises(BadSignature):
        cookie_signer(OLD).unsign(signed_new)


def test_sealed_cookies_rotate_and_purposes_differ() -> None:
    old = Sealer(secret_keys(OLD), "refresh-cookie")
    rotated = Sealer(secret_keys([NEW, OLD]), "refresh-cookie")
    sealed = old.seal(b"refresh", 1000)
    assert rotated.open(sealed, 60, 1000) == b"refresh"
    assert Sealer(secret_keys(NEW), "refresh-cookie").open(rotated.seal(b"r", 1000), 60, 1000)
    assert Sealer(secret_keys(OLD), "login-cookie").open(sealed, 60, 1000) is None


def test_key_rings() -> None:
    ring = KeyRing(secret_keys([NEW, OLD]), "shared-cache")
    assert KeyRing(secret_keys(NEW), "shared-cache").check(ring.mac(b"k", b"v"), b"k", b"v")
    assert not KeyRing(secret_keys(NEW), "revocations").check(ring.mac(b"k"), b"k")
    assert not ring.check(ring.mac(b"kv"), b"k", b"v")  # parts are length-prefixed
    assert NEW not in repr(ring)
    with pytest.raises(ValueError, match="unknown key purpose"):
        KeyRing(secret_keys(NEW), "nothing")
