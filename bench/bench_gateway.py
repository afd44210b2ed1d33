"""Section "gateway" of ``bench/run.py``: nginx with the gateway against nginx alone, under wrk.

Self-contained (it needs only ``common``): one nginx (Debian's, in the foreground,
``master_process off``: one process does all of nginx's work) serves three things on
127.0.0.1: the upstream (``return 200``: the cheapest app there is, so what the gateway
adds shows whole), a site proxying to it directly, and a site that asks the gateway first
(the example's ``auth_request`` configuration, ``examples/gateway/nginx/``). The gateway is
``lwa-middleware gateway --proxy nginx`` in its own process (one uvicorn worker); the LWA
emulator plays Amazon in this process. One token, verified once before the runs, so every
check is on the gateway's warm path.

wrk (2 threads, 64 kept-alive connections, ``--latency``) runs each target in turn, the
order rotating every round; the table holds each target's median round. The gateway's CPU
per check is its process's user + system CPU time (``/proc``) over the checks it answered
in its runs. Run alone: ``python bench/bench_gateway.py [--quick]``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from common import Section, print_section, progress

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "gateway" / "nginx"
THREADS = 2
CONNECTIONS = 64
TOKEN_VARIABLE = "BENCH_GATEWAY_AUTH"
PATH = "/api/orders"

_WRK_SCRIPT = """\
local authorization = os.getenv("BENCH_GATEWAY_AUTH")
wrk.headers["Authorization"] = authorization
function done(summary, latency, requests)
  local errors = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests": %d, "duration_us": %d, "p50_us": %d, "p99_us": %d, '
    .. '"non_2xx": %d, "errors": %d}\\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    errors.status, errors.connect + errors.read + errors.write + errors.timeout))
end
"""

_NGINX_MAIN = """\
daemon off;
master_process off;
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    server {{
        listen 127.0.0.1:{upstream};
        location / {{ return 200 "ok\\n"; }}
    }}
    upstream direct_app {{ server 127.0.0.1:{upstream}; keepalive 64; }}
    server {{
        listen 127.0.0.1:{direct};
        location / {{
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_pass http://direct_app;
        }}
    }}
    include {dir}/app.conf;
}}
"""


@dataclass(frozen=True)
class Run:
    """One wrk run."""

    requests: int
    seconds: float
    p50_us: float
    p99_us: float
    bad: int  # non-2xx answers and socket errors

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for(port: int, process: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{what} did not listen on {port}")


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process (``/proc/<pid>/stat``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def nginx_config(folder: Path, gateway: int, upstream: int, site: int, direct: int) -> Path:
    """The example's configuration (its snippet included), pointed at our ports."""
    snippet = folder / "lwa-protect.conf"
    snippet.write_text((EXAMPLE / "lwa-protect.conf").read_text())
    text = (EXAMPLE / "app.conf").read_text()
    for old, new in {
        "server 127.0.0.1:9090;": f"server 127.0.0.1:{gateway};",
        "server 127.0.0.1:8080;": f"server 127.0.0.1:{upstream};",
        "listen 80;": f"listen 127.0.0.1:{site};",
        "include snippets/lwa-protect.conf;": f"include {snippet};",
    }.items():
        if old not in text:
            raise RuntimeError(f"the nginx example changed: {old!r} is gone")
        text = text.replace(old, new)
    (folder / "app.conf").write_text(text)
    main = folder / "nginx.conf"
    main.write_text(_NGINX_MAIN.format(dir=folder, upstream=upstream, direct=direct))
    return main


def run_wrk(wrk: str, script: Path, url: str, token: str, seconds: int) -> Run:
    command = [
        wrk,
        f"--threads={THREADS}",
        f"--connections={CONNECTIONS}",
        f"--duration={seconds}s",
        "--timeout=10s",
        "--latency",
        f"--script={script}",
        url,
    ]
    env = {**os.environ, TOKEN_VARIABLE: f"Bearer {token}"}
    done = subprocess.run(
        command, env=env, capture_output=True, text=True, timeout=seconds + 30, check=False
    )
    out = (done.stdout + done.stderr).replace(token, "<token>")
    lines = [line for line in out.splitlines() if line.startswith("BENCH_JSON ")]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"wrk failed (exit {done.returncode}): {out[-2000:]}")
    data = json.loads(lines[-1].removeprefix("BENCH_JSON "))
    return Run(
        requests=int(data["requests"]),
        seconds=int(data["duration_us"]) / 1e6,
        p50_us=float(data["p50_us"]),
        p99_us=float(data["p99_us"]),
        bad=int(data["non_2xx"]) + int(data["errors"]),
    )


def median_run(runs: list[Run]) -> Run:
    return sorted(runs, key=lambda run: run.rps)[len(runs) // 2]


def section(quick: bool) -> Section:
    """nginx → upstream against nginx → gateway → upstream, and the gateway's CPU per check."""
    from lwa_middleware.emulator import Emulator

    wrk = shutil.which("wrk")
    nginx = shutil.which("nginx")
    if nginx is None and Path("/usr/sbin/nginx").exists():
        nginx = "/usr/sbin/nginx"
    if wrk is None or nginx is None:
        raise RuntimeError("the gateway section needs wrk and nginx (scripts/system-deps)")
    seconds, rounds = (1, 1) if quick else (5, 3)
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    emulator = Emulator()
    emulator.start()
    processes: list[subprocess.Popen[bytes]] = []
    try:
        _, token = emulator.mint_for(name="Bench Customer", email="bench@example.com")
        with tempfile.TemporaryDirectory(prefix="bench-gateway-") as name:
            folder = Path(name)
            ports = {key: free_port() for key in ("gateway", "upstream", "site", "direct")}
            env = {
                **os.environ,
                "LWA_CLIENT_IDS": emulator.client_id,
                "LWA_API_BASE_URL": emulator.url,
                "PYTHONPATH": os.pathsep.join(
                    filter(None, [str(ROOT / "src"), os.environ.get("PYTHONPATH")])
                ),
            }
            gateway = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "lwa_middleware",
                    "gateway",
                    "--proxy",
                    "nginx",
                    "--port",
                    str(ports["gateway"]),
                ],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            processes.append(gateway)
            wait_for(ports["gateway"], gateway, "the gateway")
            config = nginx_config(
                folder, ports["gateway"], ports["upstream"], ports["site"], ports["direct"]
            )
            proxy = subprocess.Popen(
                [nginx, "-c", str(config), "-p", str(folder), "-e", str(folder / "error.log")],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            processes.append(proxy)
            for key in ("site", "direct", "upstream"):
                wait_for(ports[key], proxy, "nginx")
            script = folder / "bench.lua"
            script.write_text(_WRK_SCRIPT)
            targets = {
                "nginx → upstream": f"http://127.0.0.1:{ports['direct']}{PATH}",
                "nginx → gateway → upstream": f"http://127.0.0.1:{ports['site']}{PATH}",
                "gateway alone (its /auth)": "",
            }
            # Prime: the token verified once (then every check is a cache hit), connections up.
            run_wrk(wrk, script, targets["nginx → gateway → upstream"], token, 1)
            results: dict[str, list[Run]] = {key: [] for key in targets}
            gateway_cpu = 0.0
            checks = 0
            order = list(targets)
            for number in range(rounds):
                progress(f"gateway: round {number + 1}/{rounds}")
                for key in order[number % len(order) :] + order[: number % len(order)]:
                    if key.startswith("gateway alone"):
                        run = direct_checks(wrk, folder, ports["gateway"], token, seconds)
                    else:
                        before = cpu_seconds(gateway.pid)
                        run = run_wrk(wrk, script, targets[key], token, seconds)
                        if "gateway" in key:
                            gateway_cpu += cpu_seconds(gateway.pid) - before
                            checks += run.requests
                    results[key].append(run)
    finally:
        for process in processes:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
        emulator.stop()
    medians = {key: median_run(runs) for key, runs in results.items()}
    direct = medians["nginx → upstream"]
    through = medians["nginx → gateway → upstream"]
    cpu_us = gateway_cpu / checks * 1e6 if checks else 0.0
    rows = [
        [
            key,
            f"{run.rps:,.0f}",
            f"{run.p50_us / 1000:.2f}",
            f"{run.p99_us / 1000:.2f}",
            str(sum(r.bad for r in results[key])),
        ]
        for key, run in medians.items()
    ]
    ratio = through.rps / direct.rps if direct.rps else 0.0
    added_p99 = (through.p99_us - direct.p99_us) / 1000
    rows.append(["gateway CPU per check (warm tokens)", f"{cpu_us:.0f} µs", "", "", ""])
    method = (
        f"One nginx ({nginx_version(nginx)}, `master_process off`) on 127.0.0.1 serves an "
        "upstream that answers `200 ok` itself, a site proxying to it directly, and a site "
        "configured as `examples/gateway/nginx/` (every request asks the gateway first, "
        "`auth_request`). The gateway is `lwa-middleware gateway --proxy nginx` in its own "
        "process (one uvicorn worker), the LWA emulator in the benchmark's. One token, "
        "verified before the runs: every check hits the gateway's cache (the warm path). "
        f"Load: wrk, {THREADS} threads, {CONNECTIONS} kept-alive connections, `GET {PATH}` "
        f"with `Authorization: Bearer <token>`, `--latency`, {seconds} s per run, {rounds} "
        "round(s), the order rotating; the table holds each target's median round. "
        '"gateway alone" is wrk straight at the gateway\'s `/auth` with the headers nginx '
        "sends. The gateway's CPU is its process's user + system time (`/proc`) over the "
        "checks it answered through nginx. Everything shares the machine's cores "
        f"(load average {load} when the section started)."
    )
    meaning = [
        f"Behind nginx, the gateway answers {through.rps:,.0f} requests/s "
        f"({ratio:.0%} of nginx alone, whose upstream costs nothing); a real app costs "
        "more than `return 200`, so the gateway's share of each request is smaller there.",
        f"It adds {added_p99:.1f} ms at p99 here (the check is one more HTTP round trip "
        "inside the machine, to a Python process).",
        f"Each check costs the gateway about {cpu_us:.0f} µs of CPU on a warm token: one "
        "core checks some "
        f"{1e6 / cpu_us if cpu_us else 0:,.0f} requests/s; add workers "
        "(`uvicorn --factory lwa_middleware.gateway:from_env --workers N`, with Redis) for "
        "more.",
    ]
    return Section(
        key="gateway",
        title="Gateway: nginx auth_request with the gateway, against nginx alone",
        method=method,
        headers=["target", "requests/s", "p50 (ms)", "p99 (ms)", "errors"],
        rows=rows,
        meaning=meaning,
        chart={key: run.rps for key, run in medians.items()},
        chart_unit="requests/s",
    )


def direct_checks(wrk: str, folder: Path, port: int, token: str, seconds: int) -> Run:
    """wrk straight at the gateway's /auth, with the headers nginx sends."""
    script = folder / "direct.lua"
    script.write_text(
        _WRK_SCRIPT.replace(
            'wrk.headers["Authorization"] = authorization',
            'wrk.headers["Authorization"] = authorization\n'
            f'wrk.headers["X-Original-URI"] = "{PATH}"\n'
            'wrk.headers["X-Original-Method"] = "GET"',
        )
    )
    return run_wrk(wrk, script, f"http://127.0.0.1:{port}/auth", token, seconds)


def nginx_version(nginx: str) -> str:
    done = subprocess.run([nginx, "-v"], capture_output=True, text=True, timeout=10)
    found = re.search(r"nginx/(\S+)", done.stderr + done.stdout)
    return f"nginx {found.group(1)}" if found else "nginx"


if __name__ == "__main__":
    print_section(section("--quick" in sys.argv))
