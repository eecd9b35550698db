"""ACL tokens and key_prefix rules."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests

from breaker.testing._server import ANONYMOUS_ACCESSOR_ID, ACLRule, ConsulServer

from .. import helpers

TOKENS = {
    "writer": [ACLRule("app/", "write")],
    "reader": [ACLRule("app/", "read"), ACLRule("app/secret/", "deny")],
}


@pytest.fixture
def acl_server() -> Iterator[ConsulServer]:
    keys = dict.fromkeys(("app/a", "app/b", "app/secret/s", "other"), "v")
    with helpers.acl_server(TOKENS, keys=keys) as server:
        yield server


def test_token_from_header_bearer_or_query(
    http: requests.Session, acl_server: ConsulServer
) -> None:
    url = acl_server.url + "/v1/kv/app/a"

    assert http.get(url).status_code == 403
    assert http.get(url, headers={"X-Consul-Token": "reader"}).status_code == 200
    assert http.get(url, headers={"Authorization": "Bearer reader"}).status_code == 200
    assert http.get(url, params={"token": "reader"}).status_code == 200


def test_an_unknown_token_is_403_acl_not_found(
    http: requests.Session, acl_server: ConsulServer
) -> None:
    response = http.get(acl_server.url + "/v1/kv/app/a", headers={"X-Consul-Token": "bogus"})

    assert response.status_code == 403
    assert response.text == "ACL not found"


def test_reading_without_permission_is_403(
    http: requests.Session, acl_server: ConsulServer
) -> None:
    denied = http.get(acl_server.url + "/v1/kv/app/secret/s", headers={"X-Consul-Token": "reader"})
    anonymous = http.get(acl_server.url + "/v1/kv/other")

    assert denied.status_code == 403
    accessor = acl_server.accessor_id("reader")
    assert denied.text == (
        f"Permission denied: token with AccessorID '{accessor}' "
        "lacks permission 'key:read' on \"app/secret/s\""
    )
    assert anonymous.status_code == 403
    assert anonymous.text.startswith("Permission denied: anonymous token lacks permission")
    assert ANONYMOUS_ACCESSOR_ID not in anonymous.text


def test_writing_without_permission_is_403(
    http: requests.Session, acl_server: ConsulServer
) -> None:
    url = acl_server.url + "/v1/kv/app/new"

    assert http.put(url, data=b"v", headers={"X-Consul-Token": "reader"}).status_code == 403
    assert http.put(url, data=b"v", headers={"X-Consul-Token": "writer"}).json() is True
    assert http.delete(url, headers={"X-Consul-Token": "reader"}).status_code == 403
    recurse = http.delete(
        acl_server.url + "/v1/kv/", params={"recurse": ""}, headers={"X-Consul-Token": "writer"}
    )
    assert recurse.status_code == 403
    assert acl_server.get("app/new") == b"v"


def test_listings_filter_out_what_the_token_cannot_read(
    http: requests.Session, acl_server: ConsulServer
) -> None:
    token = {"X-Consul-Token": "reader"}

    listing = http.get(acl_server.url + "/v1/kv/app/?recurse", headers=token)
    keys = http.get(acl_server.url + "/v1/kv/?keys", headers=token)
    unfiltered = http.get(acl_server.url + "/v1/kv/app/a/?recurse", headers=token)

    assert [e["Key"] for e in listing.json()] == ["app/a", "app/b"]
    assert listing.headers["X-Consul-Results-Filtered-By-ACLs"] == "true"
    assert keys.json() == ["app/a", "app/b"]
    assert keys.headers["X-Consul-Results-Filtered-By-ACLs"] == "true"
    assert "X-Consul-Results-Filtered-By-ACLs" not in unfiltered.headers


def test_anonymous_listings_do_not_reveal_filtering(
    http: requests.Session, acl_server: ConsulServer
) -> None:
    response = http.get(acl_server.url + "/v1/kv/app/?recurse")

    assert response.status_code == 404
    assert "X-Consul-Results-Filtered-By-ACLs" not in response.headers


def test_anonymous_rules_and_default_allow(http: requests.Session) -> None:
    with ConsulServer(
        acl_tokens={}, acl_default_policy="allow", anonymous_rules=[ACLRule("locked/", "deny")]
    ) as server:
        server.put("open", "1")
        server.put("locked/x", "2")

        assert http.get(server.url + "/v1/kv/open").status_code == 200
        assert http.get(server.url + "/v1/kv/locked/x").status_code == 403
        assert http.get(server.url + "/v1/kv/?keys").json() == ["open"]


def test_a_recursive_delete_needs_write_on_the_whole_tree(http: requests.Session) -> None:
    """Consul's KeyWritePrefix: write on the prefix, and no rule under it granting less."""
    tokens = {
        "writer": [ACLRule("app/", "write")],
        "reader": [ACLRule("app/", "read")],
        "mostly": [ACLRule("app/", "write"), ACLRule("app/secret/", "deny")],
    }
    keys = dict.fromkeys(("app/a", "app/secret/s", "other"), "v")
    with helpers.acl_server(tokens, keys=keys) as server:

        def delete_tree(prefix: str, token: str) -> requests.Response:
            return http.delete(
                f"{server.url}/v1/kv/{prefix}",
                params={"recurse": ""},
                headers={"X-Consul-Token": token},
            )

        reader = delete_tree("app/", "reader")
        assert reader.status_code == 403
        assert reader.text.endswith("lacks permission 'key:write' on \"app/\"")
        assert delete_tree("app/", "mostly").status_code == 403  # app/secret/ is denied
        assert delete_tree("app/secret/", "mostly").status_code == 403
        assert server.keys() == ["app/a", "app/secret/s", "other"]

        assert delete_tree("app/", "writer").json() is True
        assert server.keys() == ["other"]


def test_rules_and_policies_are_checked_when_given() -> None:
    with pytest.raises(ValueError, match="access must be 'read', 'write' or 'deny', not 'admin'"):
        ACLRule("app/", "admin")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="acl_default_policy must be 'allow' or 'deny'"):
        ConsulServer(acl_tokens={}, acl_default_policy="block")  # type: ignore[arg-type]
