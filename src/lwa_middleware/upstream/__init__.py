"""Layer ``upstream``: the middleware's I/O toward LWA, Redis and the policy file.

Layer: ``upstream`` (the middleware's I/O; it decides nothing; see ``ARCHITECTURE.md``).

The HTTP transport and its deadlines (:mod:`.transport`, :mod:`.deadlines`,
:mod:`.senders`), the LWA clients (:mod:`.client`: token-info and profile;
:mod:`.token_client`: the token endpoint), the verifiers that put core's decisions and
that I/O together with single flight (:mod:`.verifier`), the Redis stores
(:mod:`.redis_store`, :mod:`.revocation_store`), waiting for a slot (:mod:`.slots`),
re-reading the policy file (:mod:`.policy_watch`) and the OpenTelemetry spans around it all
(:mod:`.tracing`). Decides nothing that :mod:`lwa_middleware.core` can decide; imports only
``core``. Importing this package loads none of its modules.

"""
