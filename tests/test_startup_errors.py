"""A bad option stops the server before it serves, for every documented app pattern.

Each ASGI ``app.py`` the docs ask a reader to save (``<!-- run: file=app.py -->`` blocks
that ``uvicorn app:app`` serves) is run by a real ``uvicorn app:app``, as a user runs it
(default lifespan mode), with a bad ``LWA_*`` value: the process must exit non-zero without
ever listening, with the ``ConfigurationError`` on the last line of its output. The lazy
form the docs warn about (options passed to ``add_middleware``) is shown to serve 500s
instead, so the warning stays true.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from test_docs_snippets import PAGES, Block, free_port, stop, wait_for_port

ASGI_APPS = [
    block
    for page in PAGES
    for block in page.blocks
    if block.file == "app.py" and "flask" not in block.code.lower()
]
assert ASGI_APPS, "the docs show no ASGI app.py"
CLIENT = "amzn1.application-oa2-client.startup"
TIMEOUT = 30


def run_uvicorn(directory: Path, env: dict[str, str], *, block_redis: bool = False) -> str:
    """``uvicorn app:app`` in ``directory``; its combined output once it exits (it must)."""
    code = "import sys; from uvicorn.main import main; sys.argv[0] = 'uvicorn'; main()"
    if block_redis:  # the redis extra "not installed"
        code = "import sys; sys.modules['redis'] = None; " + code
    done = subprocess.run(
        [sys.executable, "-c", code, "app:app", "--port", "0", "--host", "127.0.0.1"],
        cwd=directory,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert done.returncode != 0, "uvicorn served an app whose options are bad"
    output = (done.stdout + done.stderr).strip()
    assert "Uvicorn running" not in output and "startup complete" not in output.lower()
    return output


def environment(**variables: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LWA_")}
    return {**env, "LWA_CLIENT_IDS": CLIENT, **variables}


@pytest.mark.parametrize("block", ASGI_APPS, ids=lambda block: block.where())
def test_a_bad_region_stops_uvicorn(block: Block, tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text(block.code)
    output = run_uvicorn(tmp_path, environment(LWA_REGION="US"))
    last = output.splitlines()[-1]
    assert "ConfigurationError" in last and "LWA_REGION" in last, output


def test_a_redis_url_without_redis_stops_uvicorn(tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text(ASGI_APPS[0].code)
    env = environment(
        LWA_REDIS_URL="redis://127.0.0.1:1/0", LWA_SECRET_KEY="startup-secret-0123456789"
    )
    output = run_uvicorn(tmp_path, env, block_redis=True)
    last = output.splitlines()[-1]
    assert "ConfigurationError" in last and "lwa-middleware[redis]" in last, output


def test_no_client_ids_names_the_variable(tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text(ASGI_APPS[0].code)
    env = {k: v for k, v in os.environ.items() if not k.startswith("LWA_")}
    last = run_uvicorn(tmp_path, env).splitlines()[-1]
    assert "LWA_CLIENT_IDS is not set" in last


LAZY_APP = f"""
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from lwa_middleware import LWAMiddleware


async def health(request):
    return PlainTextResponse("ok")


app = Starlette(routes=[Route("/health", health)])
app.add_middleware(LWAMiddleware, client_ids=["{CLIENT}"], region="US", exclude=["/health"])
"""


def test_the_lazy_form_fails_per_request_as_the_docs_warn(tmp_path: Path) -> None:
    """What docs/options.md says of ``add_middleware(..., region="US")``: uvicorn starts
    and answers 500; with ``--lifespan on`` it stops instead."""
    (tmp_path / "app.py").write_text(LAZY_APP)
    port = free_port()
    command = [sys.executable, "-m", "uvicorn", "app:app", "--port", str(port)]
    process = subprocess.Popen(
        command,
        cwd=tmp_path,
        env=environment(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # stop() ends its process group
    )
    try:
        wait_for_port(port, process, "the lazy app")
        assert httpx.get(f"http://127.0.0.1:{port}/health").status_code == 500
    finally:
        stop(process)
    done = subprocess.run(
        [*command, "--lifespan", "on"],
        cwd=tmp_path,
        env=environment(),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert done.returncode != 0 and "ConfigurationError" in done.stdout + done.stderr


def test_the_django_quickstart_stops_on_a_bad_option(tmp_path: Path) -> None:
    """docs/django.md's project (startproject plus the documented files) under uvicorn
    and under manage.py: a bad ``LWA_REGION`` stops both before they serve."""
    blocks = next(page.blocks for page in PAGES if page.name == "django.md")
    env = environment(LWA_REGION="US")
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    for block in blocks:
        if block.background or "migrate" in block.code or "curl" in block.code:
            continue
        if block.file is None:  # django-admin startproject
            subprocess.run(["bash", "-c", block.code], cwd=tmp_path, env=env, check=True)
        elif block.append:
            with (tmp_path / block.file).open("a") as file:
                file.write("\n" + block.code)
        else:
            (tmp_path / block.file).write_text(block.code)
    code = "import sys; from uvicorn.main import main; sys.argv[0] = 'uvicorn'; main()"
    for command in (
        [sys.executable, "-c", code, "mysite.asgi:application", "--port", "0", "--lifespan", "off"],
        [sys.executable, "manage.py", "check"],
    ):
        done = subprocess.run(
            command,
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            check=False,
        )
        output = (done.stdout + done.stderr).strip()
        assert done.returncode != 0, output
        assert "ConfigurationError" in output.splitlines()[-1], output
