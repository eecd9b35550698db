"""Where and how to reach Consul: explicit arguments first, then the consul CLI's environment.

This module imports nothing beyond the standard library and attrs, so the pytest plugin and
the examples can resolve the address exactly as `ConsulCoord` does without the Consul extra.
"""

from __future__ import annotations

import os
import sys
import urllib.parse
from collections.abc import Mapping
from typing import TYPE_CHECKING, TypedDict

import attrs

if TYPE_CHECKING:
    import ssl

    if sys.version_info >= (3, 11):
        from typing import Unpack
    else:
        from typing_extensions import Unpack

__all__ = ["DEFAULT_ADDR", "ConsulOptions", "ConsulSettings", "parse_bool"]

DEFAULT_ADDR = "127.0.0.1:8500"

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
    for mutual TLS; ``datacenter`` the datacenter to query (the agent's own by default).
    """

    token: str | None
    token_file: str | None
    ssl: bool | None
    verify: bool | None
    ca_file: str | None
    ca_path: str | None
    client_cert: str | None
    client_key: str | None
    datacenter: str | None


def parse_bool(name: str, value: str) -> bool:
    """Return ``value`` read as Go's strconv.ParseBool reads it; raise ValueError if it can't."""
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError(f"{name}={value!r} is not a boolean (use true/false, 1/0, t/f)")


@attrs.frozen
class ConsulSettings:
    """Say where and how to reach Consul, resolved once; build it with `resolve`."""

    base_url: str
    token: str | None = attrs.field(repr=lambda t: "<set>" if t else "None")
    verify: bool | str
    cert: tuple[str, str] | None
    datacenter: str | None

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
        base_url = _base_url(addr or from_env("CONSUL_HTTP_ADDR") or DEFAULT_ADDR, ssl)

        token = options.get("token")
        if token is None:
            token_file = options.get("token_file") or from_env("CONSUL_HTTP_TOKEN_FILE")
            if token_file:
                # Consul's client reads the token file in preference to CONSUL_HTTP_TOKEN.
                try:
                    with open(token_file, encoding="utf-8") as f:
                        token = f.read().strip() or None
                except OSError as exc:
                    raise ValueError(
                        f"cannot read the Consul token file {token_file!r}: {exc.strerror}"
                    ) from None
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
        return cls(
            base_url=base_url,
            token=token or None,
            verify=tls_verify,
            cert=(client_cert, client_key) if client_cert and client_key else None,
            datacenter=options.get("datacenter") or None,
        )

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
