"""ACL tokens and ``key_prefix`` / ``session_prefix`` rules, as Consul applies them.

A token is a secret mapped to rules; a request without one is the anonymous token. Key
rules judge KV keys; session rules judge sessions by the node they belong to. Within one
resource the longest matching prefix decides; among rules with the same prefix ``deny``
beats ``write`` beats ``read``; a name no rule matches follows the default policy.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

from breaker.testing._server import _go as go
from breaker.testing._server._http import HTTPError

Access = Literal["read", "write", "deny"]
DefaultPolicy = Literal["allow", "deny"]
Resource = Literal["key", "session"]

ANONYMOUS_ACCESSOR_ID = "00000000-0000-0000-0000-000000000002"
"""The AccessorID Consul gives the anonymous token (used when a request carries none)."""

_RANK = {"read": 0, "write": 1, "deny": 2}


@dataclass(frozen=True)
class ACLRule:
    """Grant ``access`` to every name starting with ``prefix``, like Consul's prefix rules.

    ``resource="key"`` (the default) is a ``key_prefix`` rule on KV keys;
    ``resource="session"`` a ``session_prefix`` rule on the node names sessions belong to
    (creating, renewing and destroying a session needs ``write`` on its node, seeing it
    ``read``). The longest matching prefix decides; among rules with the same prefix
    ``deny`` beats ``write`` beats ``read``. A name no rule matches falls back to the
    server's default policy.
    """

    prefix: str
    access: Access
    resource: Resource = "key"

    def __post_init__(self) -> None:
        if self.access not in ("read", "write", "deny"):
            raise ValueError(f"access must be 'read', 'write' or 'deny', not {self.access!r}")
        if self.resource not in ("key", "session"):
            raise ValueError(f"resource must be 'key' or 'session', not {self.resource!r}")


def accessor_id(secret: str) -> str:
    """Return the AccessorID reported for the token ``secret`` in denials."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"consul-token:{secret}"))


@dataclass(frozen=True)
class Authorizer:
    """What one resolved token may do with keys."""

    accessor_id: str
    rules: tuple[ACLRule, ...]
    default_allow: bool
    authenticated: bool

    def _access(self, name: str, resource: Resource = "key") -> Access | None:
        matching = (
            rule
            for rule in self.rules
            if rule.resource == resource and name.startswith(rule.prefix)
        )
        best = max(matching, key=lambda rule: (len(rule.prefix), _RANK[rule.access]), default=None)
        return None if best is None else best.access

    def can_read(self, key: str) -> bool:
        """Say whether the token may read ``key``."""
        access = self._access(key)
        return self.default_allow if access is None else access in ("read", "write")

    def can_write(self, key: str) -> bool:
        """Say whether the token may write ``key``."""
        access = self._access(key)
        return self.default_allow if access is None else access == "write"

    def can_write_prefix(self, prefix: str) -> bool:
        """Say whether the token may delete the tree ``prefix`` (Consul's KeyWritePrefix)."""
        access = self._access(prefix)
        if access is not None and access != "write":
            return False
        # No rule under the prefix may grant less than write.
        if any(
            rule.resource == "key" and rule.prefix.startswith(prefix) and rule.access != "write"
            for rule in self.rules
        ):
            return False
        return True if access == "write" else self.default_allow

    def can_read_session(self, node: str) -> bool:
        """Say whether the token may see the sessions of ``node`` (Consul's SessionRead)."""
        access = self._access(node, "session")
        return self.default_allow if access is None else access in ("read", "write")

    def can_write_session(self, node: str) -> bool:
        """Say whether the token may create, renew or destroy sessions of ``node``."""
        access = self._access(node, "session")
        return self.default_allow if access is None else access == "write"

    def denied(self, level: str, name: str, resource: Resource = "key") -> HTTPError:
        """Return the 403 Consul answers when this token lacks ``<resource>:<level>``."""
        return HTTPError(403, self.denial(level, name, resource))

    def denial(self, level: str, name: str, resource: Resource = "key") -> str:
        """Return Consul's text for a permission this token lacks (also a txn error's text)."""
        anonymous = self.accessor_id == ANONYMOUS_ACCESSOR_ID
        who = "anonymous token" if anonymous else f"token with AccessorID '{self.accessor_id}'"
        message = f"Permission denied: {who} lacks permission '{resource}:{level}'"
        if name:
            message += f" on {go.quote(name)}"
        if anonymous:
            message += (
                ". The anonymous token is used implicitly when a request does not specify a token."
            )
        return message


class ACLs:
    """The ACL system of a server: off (``tokens`` None), or tokens and a default policy."""

    def __init__(
        self,
        tokens: Mapping[str, Iterable[ACLRule]] | None,
        default_policy: DefaultPolicy,
        anonymous_rules: Iterable[ACLRule],
    ) -> None:
        if default_policy not in ("allow", "deny"):
            raise ValueError(
                f"acl_default_policy must be 'allow' or 'deny', not {default_policy!r}"
            )
        self.tokens = (
            None if tokens is None else {secret: tuple(rules) for secret, rules in tokens.items()}
        )
        self.default_policy: DefaultPolicy = default_policy
        self.anonymous_rules = tuple(anonymous_rules)

    def set_token(self, secret: str, rules: tuple[ACLRule, ...] | None) -> None:
        """Create, replace or (``rules`` None) revoke a token; ACLs must be on."""
        if self.tokens is None:
            raise ValueError("ACLs are off: start the server with acl_tokens to manage tokens")
        if rules is None:
            self.tokens.pop(secret, None)
        else:
            self.tokens[secret] = rules

    @staticmethod
    def token_of(params: go.Values, headers: Mapping[str, str]) -> str:
        """Pick the token as Consul does: ``?token=``, then X-Consul-Token, then Bearer."""
        if params.get("token"):
            return params.get("token")
        if headers.get("x-consul-token"):
            return headers["x-consul-token"]
        parts = headers.get("authorization", "").split(" ")
        if len(parts) > 1 and parts[0].lower() == "bearer":
            value = " ".join(parts[1:]).strip()
            return value.split(" ")[0].strip()
        return ""

    def resolve(self, token: str) -> Authorizer | None:
        """Resolve ``token`` as the servers do (None when ACLs are off); 403 if unknown."""
        if self.tokens is None:
            return None
        default_allow = self.default_policy == "allow"
        if not token:
            return Authorizer(ANONYMOUS_ACCESSOR_ID, self.anonymous_rules, default_allow, False)
        rules = self.tokens.get(token)
        if rules is None:
            raise HTTPError(403, "ACL not found")
        return Authorizer(accessor_id(token), rules, default_allow, True)
