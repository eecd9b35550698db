"""``python -m breaker``: the operators' CLI (see `breaker._cli`)."""

from breaker._cli import main

raise SystemExit(main())
