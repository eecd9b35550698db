"""Where and how to reach Consul: explicit arguments first, then the consul CLI's environment.

This module imports nothing beyond the standard library and attrs, so the pytest plugin and
the examples can resolve the address exactly as `ConsulCoord` does without the Consul extra.
"""

from __future__ import annotations

import os
import sys
import urllib.parse
from collections.abc import Mapping
from typing import TYPE_CHECKING, Literal, TypedDict

import attrs

if TYPE_CHECKING:
    import ssl

    if sys.version_info >= (3, 11):
        from typing import Unpack
    else:
        from typing_extensions import Unpack

__all__ = [
    "CONSISTENCY_MODES",
    "DEFAULT_ADDR",
    "Consistency",
    "ConsulOptions",
    "ConsulSettings",
    "parse_bool",
    "read_token_file",
]

DEFAULT_ADDR = "127.0.0.1:8500"

Consistency = Literal["default", "stale", "consistent"]
CONSISTENCY_MODES: tuple[Consistency, ...] = ("default", "stale", "consistent")

_TRUE = frozenset({"1", "t", "T", "TRUE", "true", "True"})
_FALSE = frozenset({"0", "f", "F", "FALSE", "false", "False"})


class ConsulOptions(TypedDict, total=False):
    """Name the connection options `ConsulCoord` and `ConsulSettings.resolve` take as keywords.

    Each one left out (or None) falls back to its environment variable:

    ``token`` (``CONSUL_HTTP_TOKEN``) the ACL token; ``token_file``
    (``CONSUL_HTTP_TOKEN_FILE``) a file holding it, preferred to the variable; ``ssl``
    (``CONSUL_HTTP_SSL``) use https; ``verify`` (``CONSUL_HTTP_SSL_VERIFY``) check Consul's
    certificate; ``ca_file``/``ca_path`` (``CONSUL_CACERT``/``CONSUL_CAPATH``) what to check
    it against; ``client_cert``/``client_key`` (``CONSUL_CLIENT_CERT``/``CONSUL_CLIENT_KEY``)
    for mutual TLS; ``tls_server_name`` (``CONSUL_TLS_SERVER_NAME``) the name to ask for
    (SNI) and to check Consul's certificate against, instead of the address's host;
    ``namespace``/``partition`` (``CONSUL_NAMESPACE``/``CONSUL_PARTITION``) the Consul
    Enterprise namespace and admin partition of every key; ``http_auth``
    (``CONSUL_HTTP_AUTH``) ``user[:password]`` for HTTP basic auth, as a proxy in front of
    Consul may ask; ``datacenter`` the datacenter to query (the agent's own by default);
    ``consistency`` how reads and watches are served (no variable): ``"default"`` (the
    leader, without checking it still leads), ``"stale"`` (any server, possibly a little
    behind the leader; reads go on during an election and spread over the servers) or
    ``"consistent"`` (the leader, after it confirmed its leadership: one more round trip).
    """

    token: str | None
    token_file: str | None
    ssl: bool | None
    verify: bool | None
    ca_file: str | None
    ca_path: str | None
    client_cert: str | None
    client_key: str | None
    tls_server_name: str | None
    namespace: str | None
    partition: str | None
    http_auth: str | None
    datacenter: str | None
    consistency: Consistency | None


def parse_bool(name: str, value: str) -> bool:
    """Return ``value`` read as Go's strconv.ParseBool reads it; raise ValueError if it can't."""
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError(f"{name}={value!r} is not a boolean (use true/false, 1/0, t/f)")


@attrs.frozen
class ConsulSettings:
    """Say where and how to reach Consul, resolved once; build it with `resolve`.

    ``base_url`` is where requests go (``http://localhost`` for a unix socket, which
    ``unix_socket`` names); ``token_file`` is the file the token came from, read again
    when Consul refuses the token (a rotated token is picked up without a restart).
    """

    base_url: str
    token: str | None = attrs.field(repr=lambda t: "<set>" if t else "None")
    verify: bool | str
    cert: tuple[str, str] | None
    datacenter: str | None
    token_file: str | None = None
    tls_server_name: str | None = None
    namespace: str | None = None
    partition: str | None = None
    http_auth: tuple[str, str] | None = attrs.field(
        default=None, repr=lambda a: "None" if a is None else f"({a[0]!r}, <hidden>)"
    )
    consistency: Consistency = "default"
    unix_socket: str | None = None

    @property
    def address(self) -> str:
        """Return the address as an operator wrote it: the URL, or ``unix://<path>``."""
        return self.base_url if self.unix_socket is None else "unix://" + self.unix_socket

    @classmethod
    def resolve(
        cls,
        addr: str | None = None,
        *,
        environ: Mapping[str, str] | None = None,
        **options: Unpack[ConsulOptions],
    ) -> ConsulSettings:
        """Follow the consul CLI's conventions; explicit arguments always win over ``environ``."""
        unknown = set(options) - set(ConsulOptions.__annotations__)
        if unknown:
            raise TypeError(f"unknown Consul option(s): {', '.join(sorted(unknown))}")
        env = os.environ if environ is None else environ

        def from_env(name: str) -> str | None:
            return env.get(name) or None

        ssl = options.get("ssl")
        verify = options.get("verify")
        if ssl is None and from_env("CONSUL_HTTP_SSL"):
            ssl = parse_bool("CONSUL_HTTP_SSL", env["CONSUL_HTTP_SSL"])
        if verify is None and from_env("CONSUL_HTTP_SSL_VERIFY"):
            verify = parse_bool("CONSUL_HTTP_SSL_VERIFY", env["CONSUL_HTTP_SSL_VERIFY"])
        where = addr or from_env("CONSUL_HTTP_ADDR") or DEFAULT_ADDR
        unix_socket = _unix_socket(where)
        if unix_socket is not None:
            if ssl:
                raise ValueError(
                    f"Consul address {where!r}: TLS over a unix socket is not supported"
                )
            base_url = "http://localhost"
        else:
            base_url = _base_url(where, ssl)

        token = options.get("token")
        token_file = None
        if token is None:
            token_file = options.get("token_file") or from_env("CONSUL_HTTP_TOKEN_FILE")
            if token_file:
                # Consul's client reads the token file in preference to CONSUL_HTTP_TOKEN.
                token = read_token_file(token_file)
            token = token or from_env("CONSUL_HTTP_TOKEN")

        ca = options.get("ca_file") or from_env("CONSUL_CACERT")
        ca = ca or options.get("ca_path") or from_env("CONSUL_CAPATH")
        tls_verify: bool | str = True if verify is None else verify
        if tls_verify and ca:
            tls_verify = ca
        client_cert = options.get("client_cert") or from_env("CONSUL_CLIENT_CERT")
        client_key = options.get("client_key") or from_env("CONSUL_CLIENT_KEY")
        if bool(client_cert) != bool(client_key):
            raise ValueError("both a client certificate and a client key must be given")
        server_name = options.get("tls_server_name") or from_env("CONSUL_TLS_SERVER_NAME")
        auth = options.get("http_auth") or from_env("CONSUL_HTTP_AUTH")
        consistency = options.get("consistency") or "default"
        if consistency not in CONSISTENCY_MODES:
            raise ValueError(
                f"consistency must be one of {', '.join(CONSISTENCY_MODES)}, not {consistency!r}"
            )
        return cls(
            base_url=base_url,
            token=token or None,
            verify=tls_verify,
            cert=(client_cert, client_key) if client_cert and client_key else None,
            datacenter=options.get("datacenter") or None,
            token_file=token_file or None,
            tls_server_name=_server_name(server_name) if server_name else None,
            namespace=options.get("namespace") or from_env("CONSUL_NAMESPACE"),
            partition=options.get("partition") or from_env("CONSUL_PARTITION"),
            http_auth=_basic_auth(auth) if auth else None,
            consistency=consistency,
            unix_socket=unix_socket,
        )

    def query(self) -> list[tuple[str, str]]:
        """Return the query parameters every request carries (namespace, partition)."""
        params = []
        if self.namespace:
            params.append(("ns", self.namespace))
        if self.partition:
            params.append(("partition", self.partition))
        return params

    def ssl_context(self) -> ssl.SSLContext | None:
        """Return an SSL context that checks Consul as these settings say; None for plain http.

        For HTTP clients other than requests (urllib, http.client), so that they trust
        and present the same certificates as `ConsulCoord`.
        """
        if not self.base_url.startswith("https://"):
            return None
        import ssl  # only https needs it

        if self.verify is False:
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        elif isinstance(self.verify, str):
            is_dir = os.path.isdir(self.verify)
            context = ssl.create_default_context(
                cafile=None if is_dir else self.verify, capath=self.verify if is_dir else None
            )
        else:
            context = ssl.create_default_context()
        if self.cert is not None:
            context.load_cert_chain(*self.cert)
        return context


def read_token_file(path: str) -> str | None:
    """Return the token in the file at ``path`` (surrounding space removed), None if empty."""
    try:
        with open(path, encoding="utf-8") as f:
            return f.read().strip() or None
    except OSError as exc:
        raise ValueError(f"cannot read the Consul token file {path!r}: {exc.strerror}") from None


def _unix_socket(addr: str) -> str | None:
    scheme, _, rest = addr.partition("://")
    if scheme != "unix":
        return None
    if not rest:
        raise ValueError(f"Consul address {addr!r} names no socket")
    return rest


def _server_name(name: str) -> str:
    # As Consul's SetupTLSConfig: a port, if given, is not part of the name.
    if name.count(":") == 1 or (name.startswith("[") and "]:" in name):
        name = name.rpartition(":")[0]
    return name.strip("[]")


def _basic_auth(auth: str) -> tuple[str, str]:
    # As Consul's client: "user:password", or a user alone with an empty password.
    user, _, password = auth.partition(":")
    return user, password


def _base_url(addr: str, ssl: bool | None) -> str:
    scheme, _, rest = addr.rpartition("://")
    if scheme not in ("", "http", "https"):
        raise ValueError(f"Consul address {addr!r}: unsupported scheme {scheme!r}")
    if not rest:
        raise ValueError(f"Consul address {addr!r} has no host")
    # As Consul's own client: an explicit https:// or CONSUL_HTTP_SSL=true means TLS,
    # and an http:// address never turns TLS off once it was asked for.
    scheme = "https" if scheme == "https" or ssl else "http"
    parts = urllib.parse.urlsplit("//" + rest)
    try:
        port = parts.port or 8500
    except ValueError:
        raise ValueError(f"Consul address {addr!r} has an invalid port") from None
    if not parts.hostname:
        raise ValueError(f"Consul address {addr!r} has no host")
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    # A path is a reverse-proxy prefix, as Consul's client allows.
    return f"{scheme}://{host}:{port}{parts.path.rstrip('/')}"
