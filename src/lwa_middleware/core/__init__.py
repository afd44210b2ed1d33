"""Layer ``core``: the rules, without I/O.

Layer: ``core`` (no I/O, no clock reads, no asyncio; see ``ARCHITECTURE.md``).

Everything here decides and does nothing else: no network, no files, no asyncio, no clock
reads (``now`` is passed in). Finding the token (:mod:`.tokens`), path rules
(:mod:`.rules`), the request gate (:mod:`.gate`), the access policy (:mod:`.policy`),
cross-site checks (:mod:`.csrf`), LWA's requests and answers (:mod:`.protocol`), turning
LWA's answers into an identity (:mod:`.verification`), the caches' policies (:mod:`.cache`,
:mod:`.l2`, :mod:`.stale`, :mod:`.revocation`), admission and the circuit breaker, the
token grants and the device flow's decisions (:mod:`.grants`, :mod:`.device`), metrics,
errors, options and models. It imports nothing of the package above it (see
``ARCHITECTURE.md``); importing this package loads none of its modules.

"""
