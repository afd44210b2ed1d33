"""``python -m lwa_middleware.cli``: the ``lwa-middleware`` command."""

from lwa_middleware.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
