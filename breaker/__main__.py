"""``python -m breaker``: the operators' CLI (see `breaker._cli`)."""

from breaker._cli import main

if __name__ == "__main__":  # importing this module (pydoc, autodoc) must not run the CLI
    raise SystemExit(main())
