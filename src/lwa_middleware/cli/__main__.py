"""``python -m lwa_middleware.cli``: the ``lwa-middleware`` command.

Layer: ``cli`` (the command, on top of everything; see ``ARCHITECTURE.md``).
"""

from lwa_middleware.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
