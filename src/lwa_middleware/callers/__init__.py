"""Layer ``callers``: tools for those who call protected routes.

Layer: ``callers`` (for those who call protected routes; see ``ARCHITECTURE.md``).

The device-flow driver (:mod:`.device_flow`: sign a person in with a code pair), the token
store of ``lwa-middleware login`` (:mod:`.token_store`) and :class:`~.auth.LWAAuth` (an
``httpx.Auth`` that keeps an access token fresh). Their decisions live in
:mod:`lwa_middleware.core` (:mod:`~lwa_middleware.core.grants`,
:mod:`~lwa_middleware.core.device`); their calls to LWA in :mod:`lwa_middleware.upstream`.
Imports only ``core`` and ``upstream``. Importing this package loads none of its modules.

"""
