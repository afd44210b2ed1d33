"""Settings for an app developed against a local ``lwa-middleware emulator``.

Layer: ``emulator`` (stands on ``core`` alone; see ``ARCHITECTURE.md``).

:func:`local_settings` is ``LWASettings.from_env()`` whose defaults point at the emulator
that ``lwa-middleware emulator`` serves (``http://127.0.0.1:8765``, its default client
ID), so an example or a development server runs with no environment at all, and the same
code reads the real values (``LWA_CLIENT_IDS``, ``LWA_API_BASE_URL`` or ``LWA_REGION``, …)
in production.

"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from lwa_middleware.core.settings import LWASettings
from lwa_middleware.emulator.accounts import DEFAULT_CLIENT_ID

#: Where ``lwa-middleware emulator`` listens by default.
LOCAL_EMULATOR_URL = "http://127.0.0.1:8765"


def local_settings(environ: Mapping[str, str] | None = None, **overrides: Any) -> LWASettings:
    """``LWASettings.from_env(environ, **overrides)``, defaulting to the local emulator:
    ``LWA_API_BASE_URL`` (unless ``LWA_REGION`` is set) and ``LWA_CLIENT_IDS``."""
    env = dict(os.environ if environ is None else environ)
    if not env.get("LWA_API_BASE_URL") and not env.get("LWA_REGION"):
        env["LWA_API_BASE_URL"] = LOCAL_EMULATOR_URL
    if not env.get("LWA_CLIENT_IDS"):
        env["LWA_CLIENT_IDS"] = DEFAULT_CLIENT_ID
    return LWASettings.from_env(env, **overrides)
