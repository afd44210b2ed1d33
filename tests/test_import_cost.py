"""What an import loads: ``import lwa_middleware`` and the pytest plugin load none of the
package (each public name is imported on first use, PEP 562), and nothing heavy is imported
before something uses it: aiohttp by the async client, which a middleware builds at lifespan
startup (so the first request does not pay for the import), never by WSGI; never uvicorn,
redis, prometheus_client, opentelemetry, cryptography, django or the emulator for the
middlewares or any public name.

Each scenario runs in a fresh interpreter (``sys.modules`` as Python starts) and reports the
modules each step added; the three interpreters run side by side.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

SRC = str(Path(__file__).resolve().parent.parent / "src")

#: Never imported by the package, a middleware or a public name: only by what needs them.
NEVER = {"aiohttp", "uvicorn", "redis", "prometheus_client", "opentelemetry", "cryptography",
         "django", "lwa_middleware.emulator", "lwa_middleware.integrations.prometheus",
         "lwa_middleware.integrations.fastapi", "lwa_middleware.integrations.swagger"}  # fmt: skip

PRELUDE = """
import json, sys
_seen = set(sys.modules)
steps = {}

def step(name):
    global _seen
    now = set(sys.modules)
    steps[name] = sorted(now - _seen)
    _seen = now
"""

SCENARIOS = {
    "asgi": """
import lwa_middleware
step("import lwa_middleware")
from lwa_middleware import LWAMiddleware
step("from lwa_middleware import LWAMiddleware")

async def app(scope, receive, send):
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        else:
            await send({"type": "lifespan.shutdown.complete"})
            return

middleware = LWAMiddleware(
    app, client_ids=["amzn1.application-oa2-client.test"], api_base_url="http://127.0.0.1:9"
)
step("LWAMiddleware built")

import asyncio

async def lifespan():
    inbox = asyncio.Queue()
    inbox.put_nowait({"type": "lifespan.startup"})

    async def send(message):
        if message["type"] == "lifespan.startup.complete":
            step("lifespan startup")
            inbox.put_nowait({"type": "lifespan.shutdown"})

    await middleware({"type": "lifespan", "asgi": {"version": "3.0"}}, inbox.get, send)

asyncio.run(lifespan())
""",
    "names": """
import lwa_middleware
for name in lwa_middleware.__all__:
    getattr(lwa_middleware, name)
step("every public name")
""",
    "wsgi": """
from lwa_middleware import LWAWSGIMiddleware

def app(environ, start_response):
    start_response("200 OK", [])
    return [b"ok"]

middleware = LWAWSGIMiddleware(
    app, client_ids=["amzn1.application-oa2-client.test"], api_base_url="http://127.0.0.1:9"
)
answer = []
body = middleware(
    {"REQUEST_METHOD": "GET", "PATH_INFO": "/", "SERVER_NAME": "t", "SERVER_PORT": "80",
     "wsgi.url_scheme": "http", "HTTP_AUTHORIZATION": "Bearer x"},
    lambda status, headers, exc_info=None: answer.append(status),
)
b"".join(body)
assert answer, "no answer"
step("LWAWSGIMiddleware answered")
middleware.close()
""",
    "plugin": """
import pytest
step("import pytest")
import lwa_middleware.testing as plugin
assert callable(plugin.lwa_emulator) and callable(plugin.lwa_emulator_session)
step("import lwa_middleware.testing")
""",
}


@pytest.fixture(scope="module")
def loaded() -> dict[str, dict[str, list[str]]]:
    """Per scenario, per step: the modules that step added to ``sys.modules``."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [SRC, os.environ.get(
        "PYTHONPATH")]))}  # fmt: skip
    env.pop("PYTHONSTARTUP", None)
    processes = {
        name: subprocess.Popen(
            [sys.executable, "-c", PRELUDE + code + "\nprint(json.dumps(steps))"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name, code in SCENARIOS.items()
    }
    result = {}
    for name, process in processes.items():
        out, err = process.communicate(timeout=60)
        assert process.returncode == 0, f"{name}:\n{err}"
        result[name] = json.loads(out)
    return result


def third_party(modules: list[str]) -> set[str]:
    return {name.split(".")[0] for name in modules} - set(sys.stdlib_module_names)


def hits(modules: list[str]) -> set[str]:
    return {m for m in modules for never in NEVER if m == never or m.startswith(never + ".")}


def test_importing_the_package_loads_none_of_it(loaded: dict[str, Any]) -> None:
    modules = loaded["asgi"]["import lwa_middleware"]
    assert [m for m in modules if m.startswith("lwa_middleware")] == [
        "lwa_middleware",
        "lwa_middleware._version",
    ]
    assert third_party(modules) == {"lwa_middleware"}  # the standard library's only


def test_the_pytest_plugin_loads_nothing_but_itself(loaded: dict[str, Any]) -> None:
    modules = loaded["plugin"]["import lwa_middleware.testing"]
    assert modules == ["lwa_middleware", "lwa_middleware._version", "lwa_middleware.testing"]


def test_no_public_name_imports_the_heavy_ones(loaded: dict[str, Any]) -> None:
    every = loaded["names"]["every public name"]
    assert "httpx" in every and "starlette" in every
    assert not hits(every), hits(every)
    assert not hits(loaded["asgi"]["from lwa_middleware import LWAMiddleware"])


def test_aiohttp_is_imported_at_lifespan_startup(loaded: dict[str, Any]) -> None:
    steps = loaded["asgi"]
    # Tracing is on by default when opentelemetry-api is installed (the test extra has it).
    assert hits(steps["LWAMiddleware built"]) <= {
        m for m in steps["LWAMiddleware built"] if m.split(".")[0] == "opentelemetry"
    }
    # Startup builds the client: aiohttp, and nothing else of the list.
    startup = hits(steps["lifespan startup"])
    assert "aiohttp" in startup
    assert {m.split(".")[0] for m in startup} == {"aiohttp"}, startup


def test_the_wsgi_middleware_never_imports_aiohttp(loaded: dict[str, Any]) -> None:
    modules = loaded["wsgi"]["LWAWSGIMiddleware answered"]
    assert "httpx" in modules  # it did import what it uses
    assert not hits(modules) - {m for m in modules if m.split(".")[0] == "opentelemetry"}


def test_public_names() -> None:
    import lwa_middleware

    names = lwa_middleware.__all__
    assert names == sorted(names)
    assert set(names) == {"__version__", *lwa_middleware._EXPORTS}
    assert set(names) <= set(dir(lwa_middleware))
    for name in names:
        value = getattr(lwa_middleware, name)
        if name != "__version__":
            module = sys.modules[lwa_middleware._EXPORTS[name]]
            assert value is getattr(module, name), name
            assert value.__module__.startswith("lwa_middleware."), name
    with pytest.raises(AttributeError, match="no attribute 'NoSuchName'"):
        _ = lwa_middleware.NoSuchName  # type: ignore[attr-defined]
    namespace: dict[str, Any] = {}
    exec("from lwa_middleware import *", namespace)
    assert set(namespace) - {"__builtins__"} == set(names)
