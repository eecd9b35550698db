"""The KV endpoint over the store: reads, writes and Consul's index rules."""

from __future__ import annotations

import base64
from typing import TYPE_CHECKING

import pytest
import requests

from breaker.testing._server import MAX_VALUE_SIZE, ConsulServer
from tests.testing_server.helpers import index_of, send

if TYPE_CHECKING:
    # Imported for real by the root conftest's pytest_plugins; importing it here first would
    # stop pytest from rewriting its asserts.
    from breaker.testing.pytest_plugin import ConsulHandle

# -- reads ---------------------------------------------------------------------------------


def test_missing_key_is_404_with_index_headers(http: requests.Session, kv: str) -> None:
    response = http.get(kv + "nope")

    assert response.status_code == 404
    assert response.content == b""
    assert response.headers["X-Consul-Index"] == "1"
    assert response.headers["X-Consul-KnownLeader"] == "true"
    assert response.headers["X-Consul-LastContact"] == "0"


def test_single_key_answers_one_entry(
    http: requests.Session, consul_server: ConsulServer, kv: str
) -> None:
    index = consul_server.put("svc/payments.json", b'{"failureThreshold": 5}', flags=42)

    response = http.get(kv + "svc/payments.json")

    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json"
    assert index_of(response) == index
    assert response.json() == [
        {
            "LockIndex": 0,
            "Key": "svc/payments.json",
            "Flags": 42,
            "Value": base64.b64encode(b'{"failureThreshold": 5}').decode(),
            "CreateIndex": index,
            "ModifyIndex": index,
        }
    ]


def test_empty_value_is_null(http: requests.Session, kv: str) -> None:
    assert http.put(kv + "folder/", data=b"").json() is True

    assert http.get(kv + "folder/").json()[0]["Value"] is None
    assert http.get(kv + "folder/?raw").content == b""


def test_keys_may_hold_colons_dots_dashes_and_escapes(
    http: requests.Session, consul_server: ConsulServer, kv: str
) -> None:
    assert http.put(kv + "grpc:user-service.v1.json", data=b"x").json() is True
    assert http.put(kv + "a%2Fb%20c", data=b"y").json() is True

    assert consul_server.get("grpc:user-service.v1.json") == b"x"
    # Consul takes the key from the decoded path, so %2F is a plain slash.
    assert consul_server.get("a/b c") == b"y"
    assert http.get(kv + "a/b%20c?raw").content == b"y"


def test_recurse_lists_the_prefix_sorted(
    http: requests.Session, consul_server: ConsulServer, kv: str
) -> None:
    for key in ("p/b", "p/a", "p/c/d", "q/x"):
        consul_server.put(key, key)

    response = http.get(kv + "p/?recurse")
    bare = http.get(kv + "p/", params={"recurse": "true"})

    assert [e["Key"] for e in response.json()] == ["p/a", "p/b", "p/c/d"]
    assert bare.json() == response.json()
    assert http.get(kv + "none/?recurse").status_code == 404
    assert [e["Key"] for e in http.get(kv + "?recurse").json()] == ["p/a", "p/b", "p/c/d", "q/x"]


def test_keys_roll_up_at_the_separator(
    http: requests.Session, consul_server: ConsulServer, kv: str
) -> None:
    for key in ("app/a", "app/b/c", "app/b/d", "app/e/f/g", "apple"):
        consul_server.put(key, "v")

    assert http.get(kv + "app/?keys").json() == ["app/a", "app/b/c", "app/b/d", "app/e/f/g"]
    assert http.get(kv + "app/?keys&separator=/").json() == ["app/a", "app/b/", "app/e/"]
    assert http.get(kv + "app?keys&separator=/").json() == ["app/", "apple"]
    assert http.get(kv + "?keys&separator=/").json() == ["app/", "apple"]
    assert http.get(kv + "nothing/?keys").status_code == 404


def test_keys_of_an_empty_root_is_an_empty_list(http: requests.Session, kv: str) -> None:
    response = http.get(kv + "?keys")

    assert response.status_code == 200
    assert response.json() == []


def test_raw_answers_the_bytes(
    http: requests.Session, consul_server: ConsulServer, kv: str
) -> None:
    consul_server.put("r", b"\x00\x01binary")

    response = http.get(kv + "r?raw")

    assert response.content == b"\x00\x01binary"
    assert response.headers["Content-Type"] == "text/plain"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert index_of(response) == consul_server.index


def test_get_without_key_name_is_400(http: requests.Session, kv: str) -> None:
    response = http.get(kv)

    assert response.status_code == 400
    assert response.text == "Missing key name"


def test_other_methods_are_405(http: requests.Session, kv: str) -> None:
    response = http.post(kv + "k", data=b"x")

    assert response.status_code == 405
    assert response.headers["Allow"] == "OPTIONS,GET,PUT,DELETE"


# -- indexes -------------------------------------------------------------------------------


def test_every_write_moves_the_index(
    http: requests.Session, consul_server: ConsulServer, kv: str
) -> None:
    first = consul_server.put("i/a", "1")
    second = consul_server.put("i/b", "2")
    third = consul_server.put("i/a", "3")

    assert first < second < third == consul_server.index
    entry = http.get(kv + "i/a").json()[0]
    assert (entry["CreateIndex"], entry["ModifyIndex"]) == (first, third)
    assert index_of(http.get(kv + "i/?recurse")) == third


def test_a_write_that_changes_nothing_keeps_modify_index(consul_server: ConsulServer) -> None:
    first = consul_server.put("same", "v")

    assert consul_server.put("same", "v") == first
    assert consul_server.index == first + 1


def test_delete_leaves_a_tombstone_that_moves_the_prefix_index(
    http: requests.Session, consul_server: ConsulServer, kv: str
) -> None:
    consul_server.put("t/a", "1")
    kept = consul_server.put("t/b", "2")
    consul_server.put("other", "x")

    deleted_at = consul_server.delete("t/a")

    assert deleted_at > kept
    assert index_of(http.get(kv + "t/?recurse")) == deleted_at
    assert index_of(http.get(kv + "t/?keys")) == deleted_at
    assert consul_server.reap_tombstones() == 1
    assert index_of(http.get(kv + "t/?recurse")) == kept


def test_recursive_delete_leaves_one_tombstone_at_the_prefix(
    http: requests.Session, consul_server: ConsulServer, kv: str
) -> None:
    consul_server.put("d/a", "1")
    consul_server.put("d/b", "2")
    consul_server.put("zzz", "3")

    deleted_at = consul_server.delete("d/", recurse=True)

    response = http.get(kv + "d/?recurse")
    assert response.status_code == 404
    assert index_of(response) == deleted_at


def test_a_prefix_that_never_existed_reports_the_table_index(
    http: requests.Session, consul_server: ConsulServer, kv: str
) -> None:
    latest = consul_server.put("elsewhere", "x")

    assert index_of(http.get(kv + "never/?recurse")) == latest
    assert index_of(http.get(kv + "never")) == latest


def test_index_is_never_below_one(http: requests.Session, kv: str) -> None:
    assert index_of(http.get(kv + "x/?recurse")) == 1
    assert index_of(http.get(kv + "x/?keys")) == 1


def test_start_index_crosses_digit_boundaries(http: requests.Session) -> None:
    with ConsulServer(jitter=False, start_index=95) as server:
        indexes = [server.put(f"k{i}", str(i)) for i in range(6)]
        response = http.get(server.url + "/v1/kv/?recurse")

    assert indexes == [96, 97, 98, 99, 100, 101]
    assert index_of(response) == 101


# -- writes --------------------------------------------------------------------------------


def test_put_with_cas_zero_only_creates(
    http: requests.Session, consul_server: ConsulServer, kv: str
) -> None:
    assert http.put(kv + "c", data=b"first", params={"cas": "0"}).json() is True
    assert http.put(kv + "c", data=b"second", params={"cas": "0"}).json() is False
    assert consul_server.get("c") == b"first"


def test_put_with_cas_index_needs_the_current_modify_index(
    http: requests.Session, consul_server: ConsulServer, kv: str
) -> None:
    current = consul_server.put("c", "v1")

    assert http.put(kv + "c", data=b"v2", params={"cas": str(current - 1)}).json() is False
    assert http.put(kv + "c", data=b"v2", params={"cas": str(current)}).json() is True
    assert http.put(kv + "c", data=b"v3", params={"cas": str(current)}).json() is False
    assert http.put(kv + "missing", data=b"v", params={"cas": "5"}).json() is False
    assert consul_server.get("c") == b"v2"


def test_put_answers_true_as_json(http: requests.Session, kv: str) -> None:
    response = http.put(kv + "k", data=b"v")

    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json"
    assert response.text == "true"


def test_put_stores_flags(http: requests.Session, kv: str) -> None:
    http.put(kv + "f", data=b"v", params={"flags": str(2**64 - 1)})

    assert http.get(kv + "f").json()[0]["Flags"] == 2**64 - 1


def test_bad_flags_fail_as_in_consul(http: requests.Session, kv: str) -> None:
    response = http.put(kv + "f", data=b"v", params={"flags": "x"})

    assert response.status_code == 500
    assert response.text == 'strconv.ParseUint: parsing "x": invalid syntax'


def test_a_value_of_exactly_512_kib_is_accepted(
    http: requests.Session, consul_server: ConsulServer, kv: str
) -> None:
    response = http.put(kv + "big", data=b"x" * MAX_VALUE_SIZE)

    assert response.json() is True
    assert consul_server.get("big") == b"x" * MAX_VALUE_SIZE


def test_a_value_over_512_kib_is_413(
    http: requests.Session, consul_server: ConsulServer, kv: str
) -> None:
    response = http.put(kv + "big", data=b"x" * (MAX_VALUE_SIZE + 1))

    assert response.status_code == 413
    assert response.text.startswith(
        "Request body(524289 bytes) too large, max size: 524288 bytes. See https://"
    )
    assert consul_server.get("big") is None


def test_delete_recurse_removes_the_prefix(
    http: requests.Session, consul_server: ConsulServer, kv: str
) -> None:
    for key in ("del/a", "del/b/c", "delta", "keep"):
        consul_server.put(key, "v")

    assert http.delete(kv + "del/", params={"recurse": ""}).json() is True
    assert consul_server.keys() == ["delta", "keep"]
    assert http.delete(kv + "keep").json() is True
    assert consul_server.keys() == ["delta"]


def test_delete_with_cas(http: requests.Session, consul_server: ConsulServer, kv: str) -> None:
    current = consul_server.put("c", "v")

    assert http.delete(kv + "c", params={"cas": str(current + 7)}).json() is False
    assert http.delete(kv + "c", params={"cas": str(current)}).json() is True
    assert consul_server.get("c") is None
    # Consul's delete-CAS of a key that is already gone succeeds.
    assert http.delete(kv + "c", params={"cas": "3"}).json() is True


def test_delete_with_recurse_and_cas_is_400(http: requests.Session, kv: str) -> None:
    response = http.delete(kv + "c", params={"recurse": "", "cas": "1"})

    assert response.status_code == 400
    assert response.text.startswith("Conflicting flags: ")


def test_conflicting_flags_are_listed_as_url_values_encodes_them(
    consul: ConsulHandle, consul_prefix: str
) -> None:
    target = f"/v1/kv/{consul_prefix}k?cas=0&acquire=a+b&flags=1"

    answer = send(consul.url, "PUT", target, body=b"v", token=consul.token)

    assert answer.status == 400
    assert answer.body == b"Conflicting flags: acquire=a+b&cas=0&flags=1\n"


# -- key validation (Consul 1.22) --------------------------------------------------------

REFUSED_KEYS = [
    ("{p}trailing%20", "trailing space"),
    ("{p}a/%2E%2E", "trailing .. segment (escaped, or the mux would redirect)"),
    ("{p}%2e%2e", "a .. segment"),
    ("{p}a/%2E%2E/b", "escaped dots: the key holds a/../b"),
    ("{p}..%2Fetc%2Fpasswd", "escaped slash: the key holds ../etc/passwd"),
    ("{p}%252e%252e%252fadmin", "double escaped: the key holds %2e%2e%2fadmin"),
    ("{p}a%2F..%252Fb", "partly double escaped"),
]
ACCEPTED_KEYS = [
    ("{p}a%20b", "a space inside"),
    ("{p}foo:bar", "colon"),
    ("{p}50%25off", "a percent sign"),
    ("{p}fo%C3%A7o", "a non-ASCII letter"),
    ("{p}con..fig", "dots inside a segment"),
    ("{p}..hidden/.../x", "dots that are not a .. segment"),
    ("{p}a%252Fb", "an escaped slash in the key itself"),
]


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
@pytest.mark.parametrize(("key", "why"), REFUSED_KEYS)
def test_keys_consul_refuses(
    consul: ConsulHandle, consul_prefix: str, key: str, why: str, method: str
) -> None:
    target = "/v1/kv/" + key.format(p=consul_prefix)

    answer = send(consul.url, method, target, body=b"v", token=consul.token)

    assert answer.status == 400, why
    assert answer.headers["X-Consul-Index"] is None


def test_a_leading_space_is_refused(consul: ConsulHandle) -> None:
    assert send(consul.url, "PUT", "/v1/kv/%20lead", body=b"v", token=consul.token).status == 400


@pytest.mark.parametrize(("key", "why"), ACCEPTED_KEYS)
def test_keys_consul_accepts(consul: ConsulHandle, consul_prefix: str, key: str, why: str) -> None:
    target = "/v1/kv/" + key.format(p=consul_prefix)

    assert send(consul.url, "PUT", target, body=b"v", token=consul.token).body == b"true", why
    assert send(consul.url, "GET", target + "?raw", token=consul.token).body == b"v", why
    assert send(consul.url, "DELETE", target, token=consul.token).body == b"true", why


def test_a_refused_prefix_cannot_be_listed(consul: ConsulHandle, consul_prefix: str) -> None:
    answer = send(consul.url, "GET", f"/v1/kv/{consul_prefix}x/%2E%2E?keys", token=consul.token)

    assert answer.status == 400


def test_validation_can_be_turned_off() -> None:
    with ConsulServer(jitter=False, disable_kv_key_validation=True) as server:
        # http.client sends the path as written; requests would resolve the escaped dots.
        assert send(server.url, "PUT", "/v1/kv/trailing%20", body=b"v").body == b"true"
        assert send(server.url, "PUT", "/v1/kv/a/%2E%2E/b", body=b"w").body == b"true"
        assert server.keys() == ["a/../b", "trailing "]


def test_the_operator_helpers_take_any_key(consul_server: ConsulServer) -> None:
    consul_server.put(" restored from an old snapshot ", "v")

    assert consul_server.get(" restored from an old snapshot ") == b"v"


# -- the rest of the endpoint's checks -------------------------------------------------------


def test_options_answers_the_methods_allowed(consul: ConsulHandle, consul_prefix: str) -> None:
    answer = send(consul.url, "OPTIONS", f"/v1/kv/{consul_prefix}k", token=consul.token)

    assert answer.status == 200
    assert answer.headers["Allow"] == "OPTIONS,GET,PUT,DELETE"
    assert answer.body == b""


def test_stale_and_consistent_together_are_400(consul: ConsulHandle, consul_prefix: str) -> None:
    target = f"/v1/kv/{consul_prefix}k?stale&consistent"

    answer = send(consul.url, "GET", target, token=consul.token)

    assert answer.status == 400
    assert answer.body == b"Cannot specify ?stale with ?consistent, conflicting semantics."


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
def test_another_datacenter_is_out_of_reach(
    consul: ConsulHandle, consul_prefix: str, method: str
) -> None:
    target = f"/v1/kv/{consul_prefix}k?dc=dc-nowhere"

    answer = send(consul.url, method, target, body=b"v", token=consul.token)

    assert (answer.status, answer.body) == (500, b"No path to datacenter")
    assert consul.get(consul_prefix + "k") is None


@pytest.mark.parametrize("method", ["PUT", "DELETE"])
def test_writes_without_a_key_name_are_400(consul: ConsulHandle, method: str) -> None:
    answer = send(consul.url, method, "/v1/kv/", body=b"v", token=consul.token)

    assert (answer.status, answer.body) == (400, b"Missing key name")


def test_pretty_indents_as_consul_does(consul: ConsulHandle, consul_prefix: str) -> None:
    consul.put(consul_prefix + "k", "v")

    entries = send(consul.url, "GET", f"/v1/kv/{consul_prefix}k?pretty", token=consul.token)
    keys = send(consul.url, "GET", f"/v1/kv/{consul_prefix}?keys&pretty", token=consul.token)

    assert entries.body.startswith(b'[\n    {\n        "LockIndex": 0,\n        "Key": "')
    assert entries.body.endswith(b"\n    }\n]\n")
    assert keys.body == f'[\n    "{consul_prefix}k"\n]\n'.encode()


@pytest.mark.parametrize(
    ("value", "quoted"),
    [
        ('a"b\\', '"a\\"b\\\\"'),
        ("\t\n", '"\\t\\n"'),
        ("\x01\x7f", '"\\x01\\x7f"'),
        ("\u0085", '"\\u0085"'),
        ("\U000e0001", '"\\U000e0001"'),
        ("ünï", '"ünï"'),
    ],
    ids=["quote-backslash", "tab-lf", "controls", "nel", "tag", "letters"],
)
def test_a_bad_number_is_quoted_in_the_error_as_go_quotes_it(
    http: requests.Session, kv: str, value: str, quoted: str
) -> None:
    response = http.put(kv + "f", data=b"v", params={"flags": value})

    assert response.status_code == 500
    assert response.text == f"strconv.ParseUint: parsing {quoted}: invalid syntax"


# -- sessions that do not exist ------------------------------------------------------------


def test_acquire_fails_as_with_an_unknown_session(http: requests.Session, kv: str) -> None:
    unknown = http.put(kv + "lock", data=b"v", params={"acquire": "d5f1e2c3"})
    missing = http.put(kv + "lock", data=b"v", params={"acquire": ""})

    assert (unknown.status_code, unknown.text) == (500, 'invalid session "d5f1e2c3"')
    assert (missing.status_code, missing.text) == (500, "missing session")


def test_release_answers_false_and_still_takes_an_index(
    http: requests.Session, consul_server: ConsulServer, kv: str
) -> None:
    before = consul_server.index

    response = http.put(kv + "lock", data=b"v", params={"release": "d5f1e2c3"})

    assert response.json() is False
    assert consul_server.index == before + 1
    assert consul_server.get("lock") is None


# -- deletes that find nothing ---------------------------------------------------------------


def test_deleting_what_is_not_there_succeeds_and_takes_an_index(
    http: requests.Session, consul_server: ConsulServer, kv: str
) -> None:
    kept = consul_server.put("p/a", "v")

    assert http.delete(kv + "nothing").json() is True
    assert http.delete(kv + "none/", params={"recurse": ""}).json() is True

    assert consul_server.index == kept + 2
    assert index_of(http.get(kv + "p/?recurse")) == kept  # no tombstone anywhere


def test_deleting_the_whole_tree_leaves_no_tombstone(
    http: requests.Session, consul_server: ConsulServer, kv: str
) -> None:
    for key in ("a", "b/c"):
        consul_server.put(key, "v")

    assert http.delete(kv, params={"recurse": ""}).json() is True

    assert consul_server.keys() == []
    listing = http.get(kv + "?recurse")
    assert listing.status_code == 404
    assert index_of(listing) == consul_server.index  # the table's index: the delete's
    assert consul_server.reap_tombstones() == 0
