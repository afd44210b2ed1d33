"""The clients against Amazon's real Login with Amazon endpoints (opt-in).

Skipped unless ``LWA_LIVE_TOKEN`` (a current ``Atza|…`` access token with the ``profile``
scope) and ``LWA_LIVE_CLIENT_ID`` (the client ID it was issued to) are set;
``LWA_API_BASE_URL`` picks the host (default ``https://api.amazon.com``). Run with
``pytest -m live``. These tests prove the emulator's contract is Amazon's: the
token-info shape, the audience, one customer across both endpoints, and how an
obviously invalid token is refused.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

import pytest

from lwa_middleware.core.errors import InvalidToken
from lwa_middleware.core.models import Profile, TokenInfo
from lwa_middleware.upstream.client import AsyncLWAClient, LWAClient

TOKEN = os.environ.get("LWA_LIVE_TOKEN", "")
CLIENT_ID = os.environ.get("LWA_LIVE_CLIENT_ID", "")
API_BASE_URL = os.environ.get("LWA_API_BASE_URL") or "https://api.amazon.com"
INVALID = "Atza|" + "x" * 400
TIMEOUT = 10.0
MODES = ["sync", "async"]

pytestmark = [
    pytest.mark.live,
    pytest.mark.skipif(
        not (TOKEN and CLIENT_ID), reason="needs LWA_LIVE_TOKEN and LWA_LIVE_CLIENT_ID"
    ),
]


def fetch(mode: str, token: str) -> tuple[TokenInfo, Profile]:
    """Token-info and profile for ``token`` through the ``mode`` client."""
    if mode == "sync":
        with LWAClient(API_BASE_URL, timeout=TIMEOUT) as client:
            return client.tokeninfo(token), client.profile(token)

    async def main() -> tuple[TokenInfo, Profile]:
        async with AsyncLWAClient(API_BASE_URL, timeout=TIMEOUT) as client:
            info, profile = await asyncio.gather(client.tokeninfo(token), client.profile(token))
            return info, profile

    return asyncio.run(main())


def one_call(mode: str, endpoint: str, token: str) -> Any:
    """``tokeninfo`` or ``profile`` alone through the ``mode`` client."""
    if mode == "sync":
        with LWAClient(API_BASE_URL, timeout=TIMEOUT) as client:
            return getattr(client, endpoint)(token)

    async def main() -> Any:
        async with AsyncLWAClient(API_BASE_URL, timeout=TIMEOUT) as client:
            return await getattr(client, endpoint)(token)

    return asyncio.run(main())


def tokeninfo_only(mode: str, token: str) -> TokenInfo:
    """Token-info alone through the ``mode`` client."""
    info = one_call(mode, "tokeninfo", token)
    assert isinstance(info, TokenInfo)
    return info


def profile_only(mode: str, token: str) -> Profile:
    """Profile alone through the ``mode`` client."""
    profile = one_call(mode, "profile", token)
    assert isinstance(profile, Profile)
    return profile


@pytest.mark.parametrize("mode", MODES)
def test_tokeninfo_shape_and_audience(mode: str) -> None:
    before = time.time()
    info = tokeninfo_only(mode, TOKEN)
    assert info.aud == CLIENT_ID
    assert info.user_id.startswith("amzn1.account.")
    assert info.iss is None or info.iss.startswith("https://")
    assert info.app_id is None or info.app_id.startswith("amzn1.application")
    # ``exp`` is seconds remaining: an access token lives at most an hour.
    assert before < info.expires_at <= time.time() + 3600 + 5
    if info.issued_at is not None:
        assert info.issued_at <= time.time() + 60
        assert info.expires_at - info.issued_at <= 3600 + 60


@pytest.mark.parametrize("mode", MODES)
def test_profile_belongs_to_the_token_info_customer(mode: str) -> None:
    info, profile = fetch(mode, TOKEN)
    assert profile.user_id == info.user_id
    assert profile.raw["user_id"] == info.user_id
    assert "profile:user_id" in profile.scopes


@pytest.mark.parametrize("mode", MODES)
def test_obviously_invalid_token_is_invalid(mode: str) -> None:
    with pytest.raises(InvalidToken):
        tokeninfo_only(mode, INVALID)
    with pytest.raises(InvalidToken):
        profile_only(mode, INVALID)
