"""The soak's server process: ``asgi_echo`` behind ``LWAMiddleware`` inside ``Monitor``,
served by uvicorn (one worker, one process) on a listening socket inherited from the test.

    python soak_server.py <fd> <api_base_url> <client_id> '<middleware options as JSON>'

The test runs it as a subprocess so the server's memory (``/proc/<pid>/status`` VmRSS) is
its own; ``GET /_soak/stats`` answers once it serves (see ``echo_apps.Monitor``).
"""

from __future__ import annotations

import json
import socket
import sys

import uvicorn
from echo_apps import BreakerLog, Monitor, asgi_echo

from lwa_middleware import LWAMiddleware


def main(argv: list[str]) -> None:
    fd, api_base_url, client_id, options = int(argv[1]), argv[2], argv[3], json.loads(argv[4])
    breaker = BreakerLog()
    middleware = LWAMiddleware(
        asgi_echo, client_ids=[client_id], api_base_url=api_base_url, recorder=breaker, **options
    )
    app = Monitor(middleware, middleware, breaker)
    sock = socket.socket(fileno=fd)
    config = uvicorn.Config(
        app, lifespan="on", log_level="warning", access_log=False, log_config=None
    )
    uvicorn.Server(config).run(sockets=[sock])


if __name__ == "__main__":
    main(sys.argv)
