"""The one Consul client every command shares: its options, the keys it reads, what it writes.

The connection options come from one table derived from `ConsulOptions`: a setting added
there becomes an option here (``token_file`` -> ``--token-file``), and its help is one
line of `_HELP`.
"""

from __future__ import annotations

import argparse
import difflib
import getpass
import os
import socket
import typing
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from breaker._cli._app import EXIT_INVALID, EXIT_USAGE, CLIError, Context, duration
from breaker._cli._journal import (
    DEFAULT_KEEP,
    Journal,
    Lost,
    derived_history_prefix,
    history_problem,
)
from breaker._layers import Layers
from breaker._names import DEFAULT_DOCUMENT, check_name, key_of, name_of, policy_name
from breaker._policy import Policy, format_timestamp
from breaker.coord.consul._settings import ConsulOptions

if TYPE_CHECKING:
    from breaker.coord._base import Snapshot, Watch
    from breaker.coord.consul import ConsulCoord

PATH_VARIABLE = "BREAKER_POLICIES_PATH"
"""The environment variable ``--path`` defaults to."""
HISTORY_VARIABLE = "BREAKER_HISTORY_PATH"
"""The environment variable ``--history-path`` defaults to."""
BY_VARIABLE = "BREAKER_BY"
"""The environment variable ``--by`` defaults to (else ``user@host``)."""

_HELP = {
    "token": "ACL token (CONSUL_HTTP_TOKEN); --token-file hides it",
    "token_file": "file holding the ACL token (CONSUL_HTTP_TOKEN_FILE)",
    "ssl": "use https (CONSUL_HTTP_SSL)",
    "verify": "check Consul's certificate (CONSUL_HTTP_SSL_VERIFY)",
    "ca_file": "CA file to verify Consul with (CONSUL_CACERT)",
    "ca_path": "folder of CA files (CONSUL_CAPATH)",
    "client_cert": "client certificate (CONSUL_CLIENT_CERT)",
    "client_key": "client key (CONSUL_CLIENT_KEY)",
    "datacenter": "datacenter to use (default: the agent's)",
}
"""One line of help per Consul setting; a setting without one still gets its option."""


def consul_settings() -> list[tuple[str, Any]]:
    """Return each `ConsulOptions` setting and its type, without None: the options' table."""
    found = []
    for name, hint in typing.get_type_hints(ConsulOptions).items():
        kinds = [k for k in typing.get_args(hint) if k is not type(None)] or [hint]
        found.append((name, kinds[0] if len(kinds) == 1 else hint))
    return found


def _option(group: argparse._ArgumentGroup, name: str, kind: Any) -> None:
    flag = "--" + name.replace("_", "-")
    help = _HELP.get(name, f"the Consul setting {name} (see ConsulCoord)")
    if kind is bool:
        group.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=help)
    elif typing.get_origin(kind) is typing.Literal:
        choices = [str(c) for c in typing.get_args(kind)]
        group.add_argument(flag, choices=choices, help=help)
    elif kind in (int, float):
        group.add_argument(flag, type=kind, help=help)
    else:
        group.add_argument(flag, metavar=name.upper(), help=help)


def consul_parent() -> argparse.ArgumentParser:
    """Return the options every Consul command takes: the connection."""
    parent = argparse.ArgumentParser(add_help=False)
    group = parent.add_argument_group(
        "Consul (each option defaults to the consul CLI's environment variable)"
    )
    group.add_argument("--addr", help="host:port or http(s)://host:port (CONSUL_HTTP_ADDR)")
    for name, kind in consul_settings():
        _option(group, name, kind)
    group.add_argument(
        "--timeout",
        type=duration,
        default=None,
        metavar="DURATION",
        help="give up on a request after this long (default 5s; a slow link wants more)",
    )
    return parent


def path_parent() -> argparse.ArgumentParser:
    """Return ``--path``, the option of every command on the policy documents."""
    parent = argparse.ArgumentParser(add_help=False)
    path = os.environ.get(PATH_VARIABLE) or None
    parent.add_argument(
        "--path",
        required=path is None,
        default=path,
        metavar="PREFIX",
        help=f"the services' policies_path, e.g. /config/dev/checkout/breakers/ ({PATH_VARIABLE})",
    )
    return parent


def history_parent(*, write: bool) -> argparse.ArgumentParser:
    """Return the options of the history: where it is, and what a write records in it."""
    parent = argparse.ArgumentParser(add_help=False)
    group = parent.add_argument_group(
        "history (every write is recorded with it, in one transaction)"
    )
    group.add_argument(
        "--history-path",
        metavar="PREFIX",
        default=None,
        help=f"where the history is kept ({HISTORY_VARIABLE}; default: beside --path, "
        "config/dev/checkout/breakers/ -> config/dev/checkout/breakers-history/)",
    )
    if write:
        group.add_argument(
            "--by", metavar="WHO", help=f"who makes the change ({BY_VARIABLE}; default user@host)"
        )
        group.add_argument("--reason", metavar="TEXT", help="why: a ticket, an incident")
        group.add_argument(
            "--history-keep",
            type=_keep,
            default=DEFAULT_KEEP,
            metavar="N",
            help=f"entries kept per name, older ones deleted (default {DEFAULT_KEEP})",
        )
    return parent


def _keep(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= 1000:
        raise argparse.ArgumentTypeError(
            f"expected a number of entries from 1 to 1000, got {text!r}"
        )
    return value


def history_prefix_of(args: argparse.Namespace, prefix: str) -> str:
    """Return the history prefix of a command: ``--history-path``, its variable, or derived."""
    path = getattr(args, "history_path", None) or os.environ.get(HISTORY_VARIABLE) or None
    if path is None:
        return derived_history_prefix(prefix)
    found = path.strip("/") + "/"
    if found == "/" or "//" in found or any(p in (".", "..") for p in found.split("/")[:-1]):
        raise CLIError(f"--history-path: {path!r} is not a usable key prefix", EXIT_USAGE)
    why = history_problem(found, prefix)
    if why is not None:
        raise CLIError(f"--history-path: {path!r} cannot hold the history: {why}", EXIT_USAGE)
    return found


def who(args: argparse.Namespace) -> str:
    """Return who makes a change: ``--by``, ``BREAKER_BY``, else ``user@host``."""
    found = getattr(args, "by", None) or os.environ.get(BY_VARIABLE)
    if found:
        return str(found)
    try:
        user = getpass.getuser()
    except Exception:  # no login name anywhere (a container without one)
        user = f"uid-{os.getuid()}" if hasattr(os, "getuid") else "unknown"
    return f"{user}@{socket.gethostname()}"


def prefix_of(path: str) -> str:
    """Return the key prefix of a ``--path``; a path no provider accepts is a usage error."""
    from breaker._provider import Config

    try:
        return Config(service_name="breaker-cli", policies_path=path).prefix
    except ValueError as exc:
        raise CLIError(str(exc).replace("Config.policies_path", "--path"), EXIT_USAGE) from None


def checked_name(name: str) -> str:
    """Return the document name of NAME (a breaker, or ``_default``); a bad one is a usage error.

    A gRPC method's breaker ("/pkg.Service/Method") has the document "pkg.Service/Method".
    """
    if name == DEFAULT_DOCUMENT:
        return name
    try:
        return policy_name(check_name(name, "NAME"))
    except ValueError as exc:
        raise CLIError(str(exc), EXIT_USAGE) from None


def documents(snapshot: Snapshot, prefix: str) -> dict[str, bytes]:
    """Return the policy documents under ``prefix`` by name, as a provider reads them."""
    found = {}
    for key, value in snapshot.items():
        name = name_of(prefix, key)
        if name is not None:
            found[name] = value
    return found


def layered(
    snapshot: Mapping[str, bytes], prefix: str, ctx: Context, instance: str | None = None
) -> Layers:
    """Return the layers a service that reads ``snapshot`` now would have (built-in: Policy()),
    as instance ``instance`` (None: no canary member)."""
    # One reading of each clock: a command is an instant (modes end against ``now``).
    layers = Layers(
        Policy(), prefix, clock=lambda: 0.0, wall=ctx.wall, log=False, instance=instance
    )
    layers.update(snapshot)
    return layers


class Client:
    """A connection to Consul for one command, and the keys of the policies under ``--path``.

    Its writes (`change`) go with their history entry, in one transaction.
    """

    def __init__(self, args: argparse.Namespace, ctx: Context) -> None:
        path = getattr(args, "path", None)
        self.prefix = prefix_of(path) if path is not None else ""
        self.args = args
        self.ctx = ctx
        self.history = history_prefix_of(args, self.prefix) if path is not None else ""
        self.coord = _connect(args)
        self.journal = Journal(
            self.coord, self.history, keep=getattr(args, "history_keep", DEFAULT_KEEP)
        )

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.coord.close()

    def key(self, name: str) -> str:
        """Return the key of the document of ``name``."""
        return key_of(self.prefix, name)

    def snapshot(self) -> dict[str, bytes]:
        """Return every key under the prefix."""
        return dict(self.coord.load(self.prefix))

    def get(self, name: str) -> tuple[bytes, int] | None:
        """Return the document of ``name`` and its ModifyIndex, or None."""
        return self.coord.get(self.key(name))

    def change(
        self,
        name: str,
        after: bytes | None,
        *,
        before: tuple[bytes, int] | None,
        cas: bool,
        action: str,
        extra: Mapping[str, Any] | None = None,
    ) -> int | None:
        """Write (``after``) or delete (None) ``name``'s document with its history entry.

        With ``cas``, only if it is still as ``before`` (the document and ModifyIndex read,
        None: absent) says. Returns the document's new ModifyIndex, or None when the
        check-and-set lost (nothing written, history included).
        """
        record = {
            "action": action,
            "at": format_timestamp(self.ctx.now().replace(microsecond=0)),
            "by": who(self.args),
            "reason": getattr(self.args, "reason", None),
            **(extra or {}),
        }
        try:
            return self.journal.change(
                name, self.key(name), after, before=before, cas=cas, record=record
            )
        except Lost:
            return None

    def watch(self, on_change: typing.Callable[[Snapshot], None]) -> Watch:
        """Watch the prefix (see `ConsulCoord.watch`)."""
        return self.coord.watch(self.prefix, on_change)

    def missing(self, name: str, snapshot: Snapshot, done: str) -> CLIError:
        """Return the refusal of a command on ``name``, which has no document (a typo?)."""
        names = [n for n in documents(snapshot, self.prefix) if n not in (name, DEFAULT_DOCUMENT)]
        close = difflib.get_close_matches(name, names, n=3, cutoff=0.6)
        hint = f"Did you mean {' or '.join(repr(n) for n in close)}? " if close else ""
        return CLIError(
            f"no document at {self.key(name)}; nothing {done}. {hint}To create it, add --create.",
            EXIT_INVALID,
        )


def _connect(args: argparse.Namespace) -> ConsulCoord:
    try:
        from breaker.coord.consul import ConsulCoord
    except ImportError as exc:
        raise CLIError(str(exc)) from None
    options: dict[str, Any] = {}
    for name, _ in consul_settings():
        value = getattr(args, name, None)
        if value is not None and value != "":
            options[name] = value
    try:
        if args.timeout is not None:
            return ConsulCoord(args.addr, timeout=args.timeout, **options)
        return ConsulCoord(args.addr, **options)
    except ValueError as exc:
        raise CLIError(f"Consul settings: {exc}") from None
