"""``LWAAuth`` over real HTTP: a protected app (``LWAMiddleware`` under uvicorn) in front of
the emulator. The bearer header, the refresh before a token expires, the retry (once) after
a 400/401 ``invalid_token`` (either error style, the header or the JSON body), one refresh
for 20 concurrent requests (threads, and asyncio), the stored login written back (and
another process's refresh adopted), a revoked refresh token, plain http refused, and no
token in a ``repr`` or a log record."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from lwa_middleware import DeviceFlow, InvalidGrant, LWAAuth, TokenGrant
from lwa_middleware.callers.token_store import (
    NotLoggedIn,
    StoredTokens,
    TokenStore,
    TokenStoreError,
)
from lwa_middleware.core.errors import ConfigurationError
from lwa_middleware.core.grants import GrantError, InvalidClient, InvalidScope
from lwa_middleware.emulator import Emulator, serve
from lwa_middleware.emulator.oauth import DEFAULT_CLIENT_SECRET

from conftest import FakeClock, ServeProtected

CONCURRENCY = 20


def device_tokens(emu: Emulator, emu_url: str, clock: FakeClock) -> TokenGrant:
    """Tokens of the emulator's client for a new user, through the code-pair flow."""
    emu.device_interval = 0
    with DeviceFlow(emu.client_id, api_base_url=emu_url, clock=clock, sleep=clock.advance) as flow:
        pair = flow.start()
        emu.approve_code_pair(pair.user_code, emu.add_user())
        return flow.wait(pair)


def refresh_calls(emu: Emulator) -> int:
    return emu.token_calls["refresh_token"]


@pytest.fixture
def grant(emu: Emulator, emu_url: str, clock: FakeClock) -> TokenGrant:
    return device_tokens(emu, emu_url, clock)


@pytest.fixture
def store(tmp_path: Path) -> TokenStore:
    return TokenStore(tmp_path / "lwa-middleware" / "tokens.json", keyring=False)


def service_auth(
    grant: TokenGrant, emu: Emulator, emu_url: str, clock: FakeClock, *, access: bool = True
) -> LWAAuth:
    assert grant.refresh_token is not None
    return LWAAuth(
        refresh_token=grant.refresh_token,
        client_id=emu.client_id,
        api_base_url=emu_url,
        access_token=grant.access_token if access else None,
        expires_at=clock() + grant.expires_in if access else None,
        clock=clock,
    )


# A small app for the answers LWAMiddleware does not give --------------------------------


@pytest.fixture
def answering() -> Iterator[Callable[[Callable[[Request], Response]], tuple[str, list[str]]]]:
    """``answering(answer) -> (url, authorization headers seen)``: an app under uvicorn
    whose every request is answered by ``answer(request)``."""
    stops: list[Callable[[], None]] = []

    def start(answer: Callable[[Request], Response]) -> tuple[str, list[str]]:
        seen: list[str] = []

        async def endpoint(request: Request) -> Response:
            seen.append(request.headers.get("authorization", ""))
            return answer(request)

        routes = [Route("/{path:path}", endpoint, methods=["GET", "POST"])]
        handle = serve(Starlette(routes=routes))
        stops.append(handle.stop)
        return handle.url, seen

    yield start
    for stop in stops:
        stop()


# The header and when to refresh ---------------------------------------------------------


def test_bearer_and_refresh_before_expiry(
    emu: Emulator, emu_url: str, clock: FakeClock, grant: TokenGrant, protected: ServeProtected
) -> None:
    url = protected()
    auth = service_auth(grant, emu, emu_url, clock, access=False)
    with httpx.Client(auth=auth) as http:
        first = http.get(f"{url}/whoami")  # no access token yet: refresh first
        assert first.status_code == 200, first.text
        assert refresh_calls(emu) == 1
        assert http.get(f"{url}/whoami").status_code == 200
        assert refresh_calls(emu) == 1  # still fresh
        clock.advance(3600 - 30)  # expires within the 60 s margin
        assert http.get(f"{url}/whoami").status_code == 200
        assert refresh_calls(emu) == 2
    assert auth.refreshes == 2
    assert first.json()["user"] is not None
    auth.close()


@pytest.mark.parametrize("error_style", ["lwa", "rfc6750"])
def test_retry_once_after_invalid_token(
    emu: Emulator,
    emu_url: str,
    clock: FakeClock,
    grant: TokenGrant,
    protected: ServeProtected,
    error_style: str,
) -> None:
    url = protected(error_style=error_style)
    emu.expire(grant.access_token)  # LWA says invalid_token; the auth still thinks it fresh
    auth = service_auth(grant, emu, emu_url, clock)
    with httpx.Client(auth=auth) as http:
        response = http.get(f"{url}/whoami")
    assert response.status_code == 200, response.text
    assert refresh_calls(emu) == 1
    assert response.request.headers["authorization"] != f"Bearer {grant.access_token}"


@pytest.mark.parametrize("status", [400, 401])
def test_only_one_retry(
    emu: Emulator,
    emu_url: str,
    clock: FakeClock,
    grant: TokenGrant,
    answering: Callable[[Callable[[Request], Response]], tuple[str, list[str]]],
    status: int,
) -> None:
    challenge = {"www-authenticate": 'Bearer realm="api", error="invalid_token"'}
    url, seen = answering(lambda request: Response(status_code=status, headers=challenge))
    with httpx.Client(auth=service_auth(grant, emu, emu_url, clock)) as http:
        response = http.get(f"{url}/x")
    assert response.status_code == status
    assert len(seen) == 2  # the request, then once more with the new token
    assert seen[0] != seen[1]
    assert refresh_calls(emu) == 1


@pytest.mark.parametrize(
    ("status", "body", "retried"),
    [
        (400, {"error": "invalid_token", "error_description": "expired"}, True),
        (401, {"error": "invalid_token"}, True),
        (400, {"error": "invalid_request"}, False),
        (403, {"error": "invalid_token"}, False),
        (401, {"error": "insufficient_scope"}, False),
    ],
)
def test_the_json_body_decides_without_a_challenge(
    emu: Emulator,
    emu_url: str,
    clock: FakeClock,
    grant: TokenGrant,
    answering: Callable[[Callable[[Request], Response]], tuple[str, list[str]]],
    status: int,
    body: dict[str, str],
    retried: bool,
) -> None:
    url, seen = answering(lambda request: JSONResponse(body, status_code=status))
    with httpx.Client(auth=service_auth(grant, emu, emu_url, clock)) as http:
        assert http.get(f"{url}/x").status_code == status
    assert len(seen) == (2 if retried else 1)
    assert refresh_calls(emu) == (1 if retried else 0)


def test_a_streamed_request_body_is_sent_again(
    emu: Emulator,
    emu_url: str,
    clock: FakeClock,
    grant: TokenGrant,
    answering: Callable[[Callable[[Request], Response]], tuple[str, list[str]]],
) -> None:
    first = [True]

    def answer(request: Request) -> Response:
        if first.pop() if first else False:
            return JSONResponse({"error": "invalid_token"}, status_code=401)
        return Response(status_code=200)

    url, seen = answering(answer)

    def chunks() -> Iterator[bytes]:
        yield b"part one, "
        yield b"part two"

    with httpx.Client(auth=service_auth(grant, emu, emu_url, clock)) as http:
        response = http.post(f"{url}/upload", content=chunks())
    assert response.status_code == 200
    assert len(seen) == 2
    assert response.request.content == b"part one, part two"  # read once, sent twice


# One refresh for many requests ----------------------------------------------------------


def from_threads(auth: LWAAuth, url: str) -> list[httpx.Response]:
    with httpx.Client(auth=auth) as http, ThreadPoolExecutor(CONCURRENCY) as pool:
        return list(pool.map(lambda _: http.get(url), range(CONCURRENCY)))


def from_tasks(auth: LWAAuth, url: str) -> list[httpx.Response]:
    async def main() -> list[httpx.Response]:
        async with httpx.AsyncClient(auth=auth, timeout=10) as http:
            return await asyncio.gather(*(http.get(url) for _ in range(CONCURRENCY)))

    return asyncio.run(main())


@pytest.mark.parametrize("stale", ["expired at LWA", "expired locally"])
@pytest.mark.parametrize("send", [from_threads, from_tasks], ids=["threads", "tasks"])
def test_one_refresh_for_concurrent_requests(
    emu: Emulator,
    emu_url: str,
    clock: FakeClock,
    grant: TokenGrant,
    protected: ServeProtected,
    stale: str,
    send: Callable[[LWAAuth, str], list[httpx.Response]],
) -> None:
    url = f"{protected()}/whoami"
    auth = service_auth(grant, emu, emu_url, clock)
    if stale == "expired at LWA":
        emu.expire(grant.access_token)  # every request is answered 400, then retried
    else:
        clock.advance(grant.expires_in)  # every request needs a new token first
    emu.latency(0.3, "oauth_token")  # a slow refresh: the others queue behind it
    responses = send(auth, url)
    assert [r.status_code for r in responses] == [200] * CONCURRENCY
    assert refresh_calls(emu) == 1
    assert auth.refreshes == 1
    sent = {r.request.headers["authorization"] for r in responses}  # the last one sent
    assert len(sent) == 1
    assert sent != {f"Bearer {grant.access_token}"}
    # Again (for tasks: on a second event loop, which gets its own lock): the same token.
    assert send(auth, url)[0].status_code == 200
    assert refresh_calls(emu) == 1


# The stored login ---------------------------------------------------------------------------


def stored(grant: TokenGrant, emu: Emulator, emu_url: str, clock: FakeClock) -> StoredTokens:
    return StoredTokens.from_grant(
        grant, api_base_url=emu_url, client_id=emu.client_id, now=clock()
    )


def test_from_store_writes_refreshed_tokens_back(
    emu: Emulator,
    emu_url: str,
    clock: FakeClock,
    grant: TokenGrant,
    protected: ServeProtected,
    store: TokenStore,
) -> None:
    url = protected()
    store.save(stored(grant, emu, emu_url, clock))
    auth = LWAAuth.from_store(store=store, clock=clock)
    assert repr(auth).endswith("store)")
    with httpx.Client(auth=auth) as http:
        assert http.get(f"{url}/whoami").status_code == 200
        assert refresh_calls(emu) == 0
        clock.advance(3600)
        assert http.get(f"{url}/whoami").status_code == 200
    assert refresh_calls(emu) == 1
    after = store.find()
    assert after.access_token != grant.access_token
    assert after.refresh_token == grant.refresh_token  # none came back: the old one kept
    assert after.expires_at == pytest.approx(clock() + 3600, abs=5)


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_token_another_process_refreshed_is_used(
    emu: Emulator,
    emu_url: str,
    clock: FakeClock,
    grant: TokenGrant,
    protected: ServeProtected,
    store: TokenStore,
    mode: str,
) -> None:
    url = protected()
    store.save(stored(grant, emu, emu_url, clock))
    auth = LWAAuth.from_store(emu.client_id, emu_url, store=store, clock=clock)
    # another process (lwa-middleware token) refreshes and stores a new token
    other = LWAAuth.from_store(store=store, clock=clock, refresh_margin=4000)
    with httpx.Client(auth=other) as http:
        assert http.get(f"{url}/whoami").status_code == 200
    assert refresh_calls(emu) == 1
    emu.expire(grant.access_token)  # our in-memory token is now refused
    if mode == "sync":
        with httpx.Client(auth=auth) as http:
            assert http.get(f"{url}/whoami").status_code == 200
    else:

        async def main() -> int:
            async with httpx.AsyncClient(auth=auth) as http:
                return (await http.get(f"{url}/whoami")).status_code

        assert asyncio.run(main()) == 200
    assert refresh_calls(emu) == 1  # taken from the store, not refreshed again


def test_a_revoked_refresh_token_says_login_again(
    emu: Emulator,
    emu_url: str,
    clock: FakeClock,
    grant: TokenGrant,
    protected: ServeProtected,
    store: TokenStore,
) -> None:
    url = protected()
    store.save(stored(grant, emu, emu_url, clock))
    assert grant.refresh_token is not None
    emu.revoke_refresh_token(grant.refresh_token)
    clock.advance(3600)
    auth = LWAAuth.from_store(store=store, clock=clock)
    with (
        httpx.Client(auth=auth) as http,
        pytest.raises(InvalidGrant, match="lwa-middleware login") as caught,
    ):
        http.get(f"{url}/whoami")
    assert grant.refresh_token not in str(caught.value)
    service = service_auth(grant, emu, emu_url, clock)
    with httpx.Client(auth=service) as http, pytest.raises(InvalidGrant):
        http.get(f"{url}/whoami")


def test_a_store_that_cannot_be_written_is_logged(
    emu: Emulator,
    emu_url: str,
    clock: FakeClock,
    grant: TokenGrant,
    protected: ServeProtected,
    store: TokenStore,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    url = protected()
    store.save(stored(grant, emu, emu_url, clock))
    auth = LWAAuth.from_store(store=store, clock=clock)

    def full(tokens: StoredTokens) -> str:
        raise TokenStoreError("cannot write tokens.json: No space left on device")

    monkeypatch.setattr(store, "save", full)
    clock.advance(3600)
    with httpx.Client(auth=auth) as http:
        assert http.get(f"{url}/whoami").status_code == 200
        assert http.get(f"{url}/whoami").status_code == 200
    assert refresh_calls(emu) == 1  # the new token is used from memory
    assert "could not save the refreshed LWA credentials" in caplog.text


def test_logged_out_meanwhile(
    emu: Emulator,
    emu_url: str,
    clock: FakeClock,
    grant: TokenGrant,
    protected: ServeProtected,
    store: TokenStore,
) -> None:
    url = protected()
    store.save(stored(grant, emu, emu_url, clock))
    auth = LWAAuth.from_store(store=store, clock=clock)
    store.delete(emu_url, emu.client_id)
    clock.advance(3600)
    with httpx.Client(auth=auth) as http, pytest.raises(NotLoggedIn, match="login"):
        http.get(f"{url}/whoami")
    with pytest.raises(NotLoggedIn):
        LWAAuth.from_store(store=store)


# Safety ---------------------------------------------------------------------------------------


def test_plain_http_beyond_loopback_is_refused(
    emu: Emulator, emu_url: str, clock: FakeClock, grant: TokenGrant
) -> None:
    auth = service_auth(grant, emu, emu_url, clock)
    never = httpx.MockTransport(lambda request: pytest.fail("sent"))
    with httpx.Client(auth=auth, transport=never) as http, pytest.raises(ConfigurationError):
        http.get("http://internal.example.com/reports")
    with pytest.raises(ConfigurationError, match="plain http"):
        LWAAuth(refresh_token="Atzr|x", client_id="c", api_base_url="http://lwa.example.com")
    LWAAuth(
        refresh_token="Atzr|x",
        client_id="c",
        api_base_url="http://lwa.example.com",
        allow_insecure_http=True,
    )
    with pytest.raises(ConfigurationError):
        LWAAuth(refresh_token=" ", client_id="c")
    with pytest.raises(ConfigurationError):
        LWAAuth(refresh_token="Atzr|x", client_id="c", refresh_margin=-1)


def test_no_token_in_repr_or_logs(
    emu: Emulator,
    emu_url: str,
    clock: FakeClock,
    grant: TokenGrant,
    protected: ServeProtected,
    caplog: pytest.LogCaptureFixture,
) -> None:
    url = protected()
    caplog.set_level(logging.DEBUG)
    for name in ("httpx", "httpcore", "lwa_middleware", "uvicorn", "uvicorn.access"):
        caplog.set_level(logging.DEBUG, logger=name)
    auth = service_auth(grant, emu, emu_url, clock, access=False)
    with httpx.Client(auth=auth) as http:
        assert http.get(f"{url}/whoami").status_code == 200
        new_token = http.get(f"{url}/whoami").request.headers["authorization"].split()[1]
        clock.advance(3600)
        assert http.get(f"{url}/whoami").status_code == 200
    assert refresh_calls(emu) == 2
    assert any("refreshed the LWA credentials" in r.getMessage() for r in caplog.records)
    assert any(r.name.startswith("httpx") for r in caplog.records)
    logged = caplog.text + " ".join(repr(r.args) for r in caplog.records)
    assert grant.refresh_token is not None
    for token in (grant.access_token, grant.refresh_token, new_token):
        for piece in (token, token[5:21], token[-16:]):
            assert piece not in logged
            assert piece not in repr(auth)


# A service's own token: the client_credentials grant ------------------------------------------

MESSAGING = "alexa:skill_messaging"


def service_calls(emu: Emulator) -> int:
    return emu.token_calls["client_credentials"]


def credentials_auth(emu: Emulator, emu_url: str, clock: FakeClock, **options: object) -> LWAAuth:
    settings: dict[str, object] = {
        "client_id": emu.client_id,
        "client_secret": DEFAULT_CLIENT_SECRET,
        "scope": MESSAGING,
        "api_base_url": emu_url,
        "clock": clock,
    }
    settings.update(options)
    return LWAAuth(**settings)  # type: ignore[arg-type]


@pytest.fixture
def amazon_api(
    emu: Emulator,
    answering: Callable[[Callable[[Request], Response]], tuple[str, list[str]]],
) -> tuple[str, list[str]]:
    """An API standing in for Amazon's (skill messaging): it takes a live service token of
    the messaging scope, else answers 401 ``invalid_token`` with a challenge."""

    def answer(request: Request) -> Response:
        token = request.headers.get("authorization", "").removeprefix("Bearer ")
        grant = emu.service_token(token)
        if grant is None or MESSAGING not in grant.scopes:
            challenge = {"www-authenticate": 'Bearer error="invalid_token"'}
            return JSONResponse({"message": "Invalid token"}, 401, headers=challenge)
        return JSONResponse({"client_id": grant.client_id})

    return answering(answer)


def test_client_credentials_one_grant_per_expiry(
    emu: Emulator, emu_url: str, clock: FakeClock, amazon_api: tuple[str, list[str]]
) -> None:
    url, seen = amazon_api
    auth = credentials_auth(emu, emu_url, clock)
    with httpx.Client(auth=auth) as http:
        for _ in range(3):
            answer = http.get(f"{url}/v1/skillmessages")
            assert answer.status_code == 200, answer.text
        assert answer.json() == {"client_id": emu.client_id}
        assert service_calls(emu) == 1
        first = seen[-1]
        assert first.startswith("Bearer Atc|")
        clock.advance(3600 - 30)  # within the 60 s margin: a new token before the request
        assert http.get(f"{url}/v1/skillmessages").status_code == 200
        assert service_calls(emu) == 2
        second = seen[-1]
        assert second != first
        emu.revoke(second.split()[1])  # refused by the API: a new grant, the request again
        assert http.get(f"{url}/v1/skillmessages").status_code == 200
        assert service_calls(emu) == 3
        assert seen[-2] == second
        assert seen[-1] not in (first, second)
    assert auth.refreshes == 3
    assert emu.token_calls["refresh_token"] == 0


def test_client_credentials_one_grant_for_concurrent_tasks(
    emu: Emulator, emu_url: str, clock: FakeClock, amazon_api: tuple[str, list[str]]
) -> None:
    url, _ = amazon_api
    auth = credentials_auth(emu, emu_url, clock)
    emu.latency(0.3, "oauth_token")

    async def main() -> list[httpx.Response]:
        async with httpx.AsyncClient(auth=auth, timeout=10) as http:
            return await asyncio.gather(*(http.get(f"{url}/messages") for _ in range(CONCURRENCY)))

    responses = asyncio.run(main())
    assert [r.status_code for r in responses] == [200] * CONCURRENCY
    assert service_calls(emu) == 1


def test_client_credentials_refusals(
    emu: Emulator, emu_url: str, clock: FakeClock, amazon_api: tuple[str, list[str]]
) -> None:
    url, seen = amazon_api
    wrong_secret = credentials_auth(emu, emu_url, clock, client_secret="wrong")
    with httpx.Client(auth=wrong_secret) as http, pytest.raises(InvalidClient):
        http.get(f"{url}/messages")
    customer_scope = credentials_auth(emu, emu_url, clock, scope="profile")
    with httpx.Client(auth=customer_scope) as http, pytest.raises(InvalidScope):
        http.get(f"{url}/messages")
    emu.register_client(service_scopes=())
    unauthorized = credentials_auth(emu, emu_url, clock)
    with httpx.Client(auth=unauthorized) as http, pytest.raises(GrantError) as refused:
        http.get(f"{url}/messages")
    assert refused.value.error == "unauthorized_client"
    assert seen == []  # nothing was sent to the API without a token
    for bad in (
        {"scope": None},
        {"scope": " "},
        {"client_secret": None},
        {"refresh_token": "Atzr|x"},  # a refresh token keeps its own scopes
    ):
        with pytest.raises(ConfigurationError):
            credentials_auth(emu, emu_url, clock, **bad)


def test_service_tokens_are_refused_by_the_middleware(
    emu: Emulator, emu_url: str, clock: FakeClock, protected: ServeProtected
) -> None:
    """A service's token is no customer's: ``LWAMiddleware`` refuses it, and ``LWAAuth``
    asks for a new one once, then gives the refusal back (no loop)."""
    url = protected()
    with httpx.Client(auth=credentials_auth(emu, emu_url, clock)) as http:
        refused = http.get(f"{url}/whoami")
    assert refused.status_code == 400
    assert refused.json()["error"] == "invalid_token"
    assert service_calls(emu) == 2
    assert emu.calls["tokeninfo"] == 0  # refused before LWA is asked (no Atza| prefix)


def test_a_refresh_token_in_a_client_credentials_answer_is_ignored() -> None:
    """One of Amazon's pages shows a refresh token in this answer: it is accepted, and the
    next renewal is a client_credentials grant again (never a refresh grant)."""
    forms: list[dict[str, str]] = []
    now = [1_000.0]

    def lwa(request: httpx.Request) -> httpx.Response:
        forms.append(dict(httpx.QueryParams(request.content.decode())))
        body = {
            "access_token": f"Atc|token-{len(forms)}",
            "refresh_token": "Atzr|not-for-this-grant",
            "scope": MESSAGING,
            "token_type": "bearer",
            "expires_in": 3600,
        }
        return httpx.Response(200, json=body)

    auth = LWAAuth(
        client_id="amzn1.application-oa2-client.svc",
        client_secret="s3cret",
        scope=f" {MESSAGING} ",
        clock=lambda: now[0],
        transport=httpx.MockTransport(lwa),
    )
    api = httpx.MockTransport(lambda request: httpx.Response(200, json={}))
    with httpx.Client(auth=auth, transport=api) as http:
        first = http.get("https://api.amazonalexa.com/v1/skillmessages").request
        assert first.headers["authorization"] == "Bearer Atc|token-1"
        now[0] += 3600
        sent = http.get("https://api.amazonalexa.com/v1/skillmessages").request
        assert sent.headers["authorization"] == "Bearer Atc|token-2"
    assert (
        forms
        == [
            {
                "grant_type": "client_credentials",
                "client_id": "amzn1.application-oa2-client.svc",
                "client_secret": "s3cret",
                "scope": MESSAGING,
            }
        ]
        * 2
    )
    assert "s3cret" not in repr(auth) and "Atc|" not in repr(auth)
    assert "client_credentials" in repr(auth)
