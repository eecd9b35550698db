"""``breaker fleet [NAME]``: every instance's breakers, as the services publish them in Consul.

The records are those of `breaker._fleet` (``Config.fleet_path``); the view is
`breaker._fleet.fleet_view`, what ``Provider.fleet()`` returns.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

from breaker._cli._app import EXIT_INVALID, EXIT_OK, EXIT_USAGE, CLIError, Commands, Context
from breaker._cli._client import Client
from breaker._cli._output import dump
from breaker._fleet import fleet_prefix, fleet_view, parse_records
from breaker._names import check_name

FLEET_VARIABLE = "BREAKER_FLEET_PATH"
"""The environment variable ``--fleet-path`` defaults to."""
SERVICE_VARIABLE = "BREAKER_SERVICE"
"""The environment variable ``--service`` defaults to."""
STATES = ("closed", "open", "half-open")


def fleet_parent() -> argparse.ArgumentParser:
    """Return the options that find the fleet records: ``--fleet-path`` and ``--service``."""
    parent = argparse.ArgumentParser(add_help=False)
    group = parent.add_argument_group("the fleet (as the services publish it)")
    path = os.environ.get(FLEET_VARIABLE) or None
    group.add_argument(
        "--fleet-path",
        required=path is None,
        default=path,
        metavar="PREFIX",
        help=f"the services' fleet_path, e.g. /config/dev/fleet/ ({FLEET_VARIABLE})",
    )
    group.add_argument(
        "--service",
        default=os.environ.get(SERVICE_VARIABLE) or None,
        metavar="SERVICE",
        help=f"the services' service_name ({SERVICE_VARIABLE}; default: the one service that "
        "publishes there)",
    )
    return parent


def register(commands: Commands) -> None:
    """Add this group's commands."""
    sub = commands.add(
        "fleet",
        cmd_fleet,
        "show how many instances have each breaker closed, open and half-open, and in which mode",
        path=False,
        parents=[fleet_parent()],
    )
    sub.add_argument("name", nargs="?", metavar="NAME", help="only this breaker")


def fleet_records(client: Client, args: argparse.Namespace) -> tuple[str, list[dict[str, Any]]]:
    """Return the prefix of the service's records and the valid records under it.

    Without ``--service``, the service is the one whose records are under ``--fleet-path``.
    """
    root = args.fleet_path.strip("/")
    if not root or "//" in root or any(p in (".", "..") for p in root.split("/")):
        raise CLIError(f"--fleet-path: {args.fleet_path!r} is not a usable key prefix", EXIT_USAGE)
    service = args.service
    if service is not None and (not service.strip("/") or "/" in service.strip("/")):
        raise CLIError(f"--service: {service!r} is not a service name", EXIT_USAGE)
    if service is None:
        keys = client.coord.load(root + "/")
        services = sorted(
            {k[len(root) + 1 :].split("/")[0] for k in keys if k.count("/") > root.count("/") + 1}
        )
        if len(services) != 1:
            found = ", ".join(services) if services else "none"
            raise CLIError(
                f"which service? --service names it (services publishing under {root}/: {found})",
                EXIT_USAGE if services else EXIT_INVALID,
            )
        service = services[0]
    prefix = fleet_prefix(args.fleet_path, service)
    records = parse_records(client.coord.load(prefix), prefix)
    return prefix, records


def cmd_fleet(args: argparse.Namespace, ctx: Context) -> int:
    """Show the fleet view: per breaker, its instances by state and by mode."""
    name = None if args.name is None else _checked(args.name)
    with Client(args, ctx) as client:
        prefix, records = fleet_records(client, args)
    view = fleet_view(records, name)
    missing = name is not None and name not in view["breakers"]
    if args.json:
        ctx.out(dump(view))
        return EXIT_INVALID if missing else EXIT_OK
    instances = view["instances"]
    count = f"{len(instances)} instance" + ("" if len(instances) == 1 else "s")
    ctx.out(f"{prefix}: {count}" + (f" ({', '.join(instances)})" if instances else ""))
    if missing:
        raise CLIError(f"no instance has a breaker {name!r}", EXIT_INVALID)
    rows = [("NAME", "CLOSED", "OPEN", "HALF-OPEN", "MODES")]
    named: list[list[str]] = []
    for brk_name, entry in view["breakers"].items():
        modes = ", ".join(f"{mode} {len(ids)}" for mode, ids in entry["modes"].items())
        rows.append((brk_name, *(str(len(entry[s])) for s in STATES), modes))
        named.append([f"  {s}: {', '.join(entry[s])}" for s in STATES[1:] if entry[s]])
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    for n, row in enumerate(rows):
        cells = [
            row[0].ljust(widths[0]),
            *(c.rjust(w) for c, w in zip(row[1:4], widths[1:], strict=True)),
        ]
        ctx.out("  ".join([*cells, row[4]]).rstrip())
        if n:
            for line in named[n - 1]:
                ctx.out(line)
    return EXIT_OK


def _checked(name: str) -> str:
    try:
        return check_name(name, "NAME")
    except ValueError as exc:
        raise CLIError(str(exc), EXIT_USAGE) from None
