"""What the web helpers' status endpoints serve: the provider's status, and the fleet's."""

from __future__ import annotations

from typing import Any

from breaker._exceptions import CoordError
from breaker._provider import Provider


def check_fleet(provider: Provider | None, fleet: bool, what: str) -> None:
    """Refuse ``fleet=True`` for a provider that publishes no fleet (no ``fleet_path``)."""
    if fleet and provider is not None and provider.config.fleet_path is None:
        raise ValueError(
            f"{what}: fleet=True needs a provider with Config.fleet_path (it reads the fleet "
            "records the providers publish there)"
        )


def status_with_fleet(provider: Provider, fleet: bool) -> dict[str, Any]:
    """Return ``provider.status()``, with the fleet view under ``"fleet"`` when asked.

    The fleet is read from the coord now (a request to Consul): when that fails, or the
    provider has no ``fleet_path``, ``"fleet"`` says why instead, and the rest is served.
    """
    body = provider.status()
    if fleet:
        try:
            body["fleet"] = provider.fleet()
        except (CoordError, ValueError) as exc:
            body["fleet"] = {"error": str(exc)}
    return body
