"""The WSGI app gunicorn serves in the "wsgi" section of ``bench/run.py`` (``bench_http.py``).

``gunicorn --pythonpath bench gunicorn_app:app``, configured by environment variables:

* ``BENCH_WSGI_KIND=bare``: ``bench_apps.wsgi_app`` alone (the baseline);
* ``BENCH_WSGI_KIND=lwa``: ``LWAWSGIMiddleware`` over it, every option from ``LWA_*``
  variables (``LWASettings.from_env()``: ``LWA_CLIENT_IDS``, ``LWA_API_BASE_URL``,
  ``LWA_CACHE_TTL``, ...);
* ``BENCH_WSGI_EXIT_WITH_STDIN=1``: the worker stops gunicorn (SIGTERM to its arbiter) when
  its stdin closes, so no server outlives a benchmark that was killed.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from typing import TYPE_CHECKING

from bench_apps import wsgi_app

from lwa_middleware import LWASettings, LWAWSGIMiddleware

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIApplication


def build(kind: str) -> WSGIApplication:
    """The app of ``kind`` (``"bare"`` or ``"lwa"``)."""
    if kind == "bare":
        return wsgi_app
    if kind == "lwa":
        return LWAWSGIMiddleware(wsgi_app, settings=LWASettings.from_env())
    raise SystemExit(f"BENCH_WSGI_KIND must be bare or lwa, not {kind!r}")


def _stop_gunicorn_on_eof() -> None:
    sys.stdin.read()  # EOF: the benchmark closed the pipe or died
    os.kill(os.getppid(), signal.SIGTERM)


if os.environ.get("BENCH_WSGI_EXIT_WITH_STDIN") == "1":
    threading.Thread(target=_stop_gunicorn_on_eof, daemon=True).start()

app = build(os.environ.get("BENCH_WSGI_KIND", "bare"))
