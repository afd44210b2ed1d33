"""Layer ``integrations``: optional frameworks and exporters, on top of the middlewares.

Layer: ``integrations`` (optional frameworks, on top; see ``ARCHITECTURE.md``).

FastAPI dependencies (:mod:`.fastapi`), Swagger UI's sign-in (:mod:`.swagger`) and the
Prometheus exporter (:mod:`.prometheus`). Each imports its optional dependency; nothing
below this layer imports it. Importing this package loads none of its modules.

"""
