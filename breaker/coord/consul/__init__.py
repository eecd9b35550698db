"""ConsulCoord and its settings.

Importing this package loads no HTTP or Consul module: `ConsulCoord` is loaded on first
use, and without python-consul (or py-consul) and requests that use raises an ImportError
naming the extra to install. `ConsulSettings` resolves the address, token and TLS from
arguments and the consul CLI's environment, as `ConsulCoord` does.
"""

from __future__ import annotations

import typing

from breaker.coord.consul._settings import ConsulOptions, ConsulSettings

if typing.TYPE_CHECKING:
    from breaker.coord.consul._coord import ConsulCoord

__all__ = ["EXTRA_HINT", "ConsulCoord", "ConsulOptions", "ConsulSettings"]

EXTRA_HINT = "pip install 'consul-breaker[consul]'"
"""How to install what `ConsulCoord` needs."""

_NEEDS = ("consul", "requests", "urllib3")


def __getattr__(name: str) -> typing.Any:
    if name != "ConsulCoord":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    try:
        from breaker.coord.consul._coord import ConsulCoord
    except ImportError as exc:
        missing = (exc.name or "").partition(".")[0]
        if missing not in _NEEDS:
            raise
        raise ImportError(
            f"ConsulCoord needs python-consul (or py-consul) and requests, and {missing!r} "
            f"cannot be imported: {EXTRA_HINT}",
            name=exc.name,
        ) from exc
    globals()["ConsulCoord"] = ConsulCoord
    return ConsulCoord
