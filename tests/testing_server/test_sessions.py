"""Sessions on the stand-in: TTLs on its clock, behaviours, locks, lock-delay, ACLs, routes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import requests

from breaker.testing import ACLRule, ConsulServer, FakeClock
from tests.helpers import eventually
from tests.testing_server.helpers import in_background, index_of, send


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def server(clock: FakeClock) -> Iterator[ConsulServer]:
    with ConsulServer(jitter=False, clock=clock) as server:
        yield server


def create(http: requests.Session, server: ConsulServer, body: Any = None, **kw: Any) -> str:
    data = None if body is None else json.dumps(body)
    response = http.put(server.url + "/v1/session/create", data=data, **kw)
    assert response.status_code == 200, response.text
    return str(response.json()["ID"])


def info(http: requests.Session, server: ConsulServer, session_id: str) -> dict[str, Any] | None:
    found = http.get(f"{server.url}/v1/session/info/{session_id}").json()
    return found[0] if found else None


def entry(http: requests.Session, server: ConsulServer, key: str) -> dict[str, Any] | None:
    response = http.get(f"{server.url}/v1/kv/{key}")
    return response.json()[0] if response.status_code == 200 else None


def acquire(http: requests.Session, server: ConsulServer, key: str, session: str) -> Any:
    return http.put(f"{server.url}/v1/kv/{key}", data=b"v", params={"acquire": session}).json()


# -- creating ------------------------------------------------------------------------------


def test_defaults_and_what_info_shows(http: requests.Session, server: ConsulServer) -> None:
    before = server.index
    session_id = create(http, server)

    found = info(http, server, session_id)

    assert server.index == before + 1
    assert found == {
        "ID": session_id,
        "Name": "",
        "Node": "node1",
        "LockDelay": 15_000_000_000,
        "Behavior": "release",
        "TTL": "",
        "NodeChecks": ["serfHealth"],
        "ServiceChecks": None,
        "CreateIndex": before + 1,
        "ModifyIndex": before + 1,
    }
    assert server.sessions() == [found]


@pytest.mark.parametrize(
    ("body", "text"),
    [
        ({"TTL": "5s"}, "Invalid Session TTL '5000000000', must be between [10s=24h0m0s]"),
        ({"TTL": "25h"}, "Invalid Session TTL '90000000000000', must be between [10s=24h0m0s]"),
        ({"TTL": "soon"}, "Session TTL 'soon' invalid: "),
        ({"Behavior": "keep"}, "Invalid Behavior setting 'keep'"),
        ({"Node": ""}, "Must provide Node"),
        ({"Node": "elsewhere"}, "Missing node registration"),
        ({"NodeChecks": ["dne"]}, "Missing check 'dne' registration"),
    ],
)
def test_refused_creates_are_500s_that_use_no_index(
    http: requests.Session, server: ConsulServer, body: dict[str, Any], text: str
) -> None:
    before = server.index

    response = http.put(server.url + "/v1/session/create", json=body)

    assert response.status_code == 500
    assert response.text.startswith(text)
    assert server.index == before
    assert server.sessions() == []


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"{oops", "Request decode failed: "),
        (b"[]", "Request decode failed: json: cannot unmarshal array"),
        (b'{"TTL": 10}', "Session.TTL of type string"),
        (b'{"NodeChecks": "serfHealth"}', "Session.NodeChecks of type []string"),
        (b'{"ServiceChecks": [1]}', "Session.ServiceChecks"),
        (b'{"ServiceChecks": [{"ID": 1}]}', "Session.ServiceChecks"),
        (b'{"LockDelay": "later"}', "Request decode failed: "),
    ],
)
def test_bodies_go_cannot_decode_are_400s(
    http: requests.Session, server: ConsulServer, body: bytes, reason: str
) -> None:
    response = http.put(server.url + "/v1/session/create", data=body)

    assert response.status_code == 400
    assert reason in response.text


@pytest.mark.parametrize(
    ("lock_delay", "ns"),
    [("20s", 20_000_000_000), (5, 5_000_000_000), (2_500_000_000, 2_500_000_000), (True, 0)],
)
def test_lock_delay_as_a_duration_or_nanoseconds(
    http: requests.Session, server: ConsulServer, lock_delay: Any, ns: int
) -> None:
    # Field names match whatever their case, as Go's decoder matches them.
    session_id = create(http, server, {"lockdelay": lock_delay, "name": "n", "node": None})

    found = info(http, server, session_id)

    assert found is not None
    assert (found["LockDelay"], found["Name"], found["Node"]) == (ns, "n", "node1")


def test_null_check_lists_stay_null(http: requests.Session, server: ConsulServer) -> None:
    session_id = create(http, server, {"NodeChecks": None, "ServiceChecks": None})

    found = info(http, server, session_id)

    assert found is not None
    assert found["NodeChecks"] is None and found["ServiceChecks"] is None


def test_a_critical_check_refuses_sessions_and_invalidates_those_using_it(
    http: requests.Session, server: ConsulServer
) -> None:
    server.register_check("db", "passing")
    session_id = create(http, server, {"NodeChecks": ["serfHealth", "db"], "Behavior": "delete"})
    assert acquire(http, server, "held", session_id) is True

    assert server.register_check("db", "critical") == 1

    assert info(http, server, session_id) is None
    assert entry(http, server, "held") is None
    refused = http.put(server.url + "/v1/session/create", json={"NodeChecks": ["db"]})
    assert (refused.status_code, refused.text) == (500, "Check 'db' is in critical state")
    assert server.register_check("db", "warning") == 0
    create(http, server, {"NodeChecks": ["db"]})


def test_register_check_refuses_bad_arguments(server: ConsulServer) -> None:
    with pytest.raises(ValueError, match="status"):
        server.register_check("db", "dead")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="check_id"):
        server.register_check("")
    with pytest.raises(ValueError, match="node_name"):
        ConsulServer(node_name="")


# -- TTLs ------------------------------------------------------------------------------------


def test_a_ttl_session_lives_twice_its_ttl_on_the_clock(
    http: requests.Session, server: ConsulServer, clock: FakeClock
) -> None:
    session_id = create(http, server, {"TTL": "10s"})

    clock.advance(19.999)
    assert info(http, server, session_id) is not None

    clock.advance(0.001)
    assert info(http, server, session_id) is None


def test_renewing_starts_the_ttl_over(
    http: requests.Session, server: ConsulServer, clock: FakeClock
) -> None:
    session_id = create(http, server, {"TTL": "10s"})
    clock.advance(15)

    renewed = http.put(f"{server.url}/v1/session/renew/{session_id}")

    assert renewed.status_code == 200
    assert renewed.json()[0]["ID"] == session_id
    assert "X-Consul-Index" not in renewed.headers
    clock.advance(19)
    assert info(http, server, session_id) is not None
    clock.advance(1)
    gone = http.put(f"{server.url}/v1/session/renew/{session_id}")
    assert (gone.status_code, gone.text) == (404, f"Session id '{session_id}' not found")


def test_a_zero_ttl_never_expires(
    http: requests.Session, server: ConsulServer, clock: FakeClock
) -> None:
    session_id = create(http, server, {"TTL": "0s"})

    clock.advance(10**6)

    assert info(http, server, session_id) is not None


def test_the_server_expires_sessions_without_a_request(
    http: requests.Session, server: ConsulServer, clock: FakeClock
) -> None:
    session_id = create(http, server, {"TTL": "10s", "Behavior": "delete"})
    assert acquire(http, server, "fleet/me", session_id) is True

    clock.advance(20)

    eventually(lambda: not server.sessions())
    assert server.get("fleet/me") is None


def test_expire_sessions_at_once(
    server: ConsulServer, http: requests.Session, clock: FakeClock
) -> None:
    create(http, server, {"TTL": "10s"})
    create(http, server, {"TTL": "20s"})
    assert server.expire_sessions() == 0
    server.stop()  # and its reaper: only this call may expire them now

    clock.advance(40)

    assert server.expire_sessions() == 2
    assert server.sessions() == []


def test_the_real_clock_reaper_sleeps_until_the_next_expiry() -> None:
    with ConsulServer(jitter=False, session_ttl_min=0.05) as server, requests.Session() as http:
        http.trust_env = False
        create(http, server, {"TTL": "50ms"})

        eventually(lambda: not server.sessions(), timeout=5)


def test_a_new_leader_starts_every_ttl_over(
    http: requests.Session, server: ConsulServer, clock: FakeClock
) -> None:
    session_id = create(http, server, {"TTL": "10s"})
    clock.advance(15)

    server.begin_election()
    server.end_election()
    clock.advance(15)

    assert info(http, server, session_id) is not None


# -- destroying and behaviours ---------------------------------------------------------------


def test_destroy_releases_and_sets_the_lock_delay(
    http: requests.Session, server: ConsulServer, clock: FakeClock
) -> None:
    first = create(http, server)
    second = create(http, server)
    assert acquire(http, server, "lock", first) is True

    assert http.put(f"{server.url}/v1/session/destroy/{first}").json() is True

    released = entry(http, server, "lock")
    assert released is not None
    assert (released["LockIndex"], "Session" in released) == (1, False)
    before = server.index
    assert acquire(http, server, "lock", second) is False  # within the 15 s lock-delay
    assert server.index == before  # refused before raft: no index used
    clock.advance(15)
    assert acquire(http, server, "lock", second) is True
    held = entry(http, server, "lock")
    assert held is not None and (held["LockIndex"], held["Session"]) == (2, second)


def test_the_lock_delay_is_capped_at_a_minute(
    http: requests.Session, server: ConsulServer, clock: FakeClock
) -> None:
    first = create(http, server, {"LockDelay": "10m"})
    second = create(http, server, {"LockDelay": "0s"})
    assert acquire(http, server, "lock", first) is True
    http.put(f"{server.url}/v1/session/destroy/{first}")

    clock.advance(59.9)
    assert acquire(http, server, "lock", second) is False
    clock.advance(0.1)
    assert acquire(http, server, "lock", second) is True
    http.put(f"{server.url}/v1/session/destroy/{second}")  # no lock-delay: free at once
    assert acquire(http, server, "lock", create(http, server)) is True


def test_delete_behaviour_deletes_every_held_key_and_leaves_tombstones(
    http: requests.Session, server: ConsulServer
) -> None:
    session_id = create(http, server, {"Behavior": "delete", "LockDelay": 0})
    for key in ("fleet/a", "fleet/b"):
        assert acquire(http, server, key, session_id) is True
    server.put("fleet/c", "not held")

    http.put(f"{server.url}/v1/session/destroy/{session_id}")

    assert server.keys("fleet/") == ["fleet/c"]
    listing = http.get(server.url + "/v1/kv/fleet/", params={"recurse": ""})
    assert index_of(listing) == server.index  # the tombstones carry the index


def test_destroying_an_unknown_session_is_true_and_uses_no_index(
    http: requests.Session, server: ConsulServer
) -> None:
    before = server.index

    response = http.put(f"{server.url}/v1/session/destroy/adf4238a-882b-9ddc-4a9d-5b6758e4159e")

    assert response.json() is True
    assert server.index == before


# -- locks -----------------------------------------------------------------------------------


def test_lock_rules(http: requests.Session, server: ConsulServer) -> None:
    mine, theirs = create(http, server), create(http, server)
    url = server.url + "/v1/kv/lock"

    assert http.put(url, data=b"a", params={"acquire": mine, "flags": "7"}).json() is True
    assert http.put(url, data=b"b", params={"acquire": mine}).json() is True  # held: same lock
    assert http.put(url, data=b"c", params={"acquire": theirs}).json() is False
    assert http.put(url, data=b"d", params={"release": theirs}).json() is False
    held = entry(http, server, "lock")
    assert held is not None
    assert (held["LockIndex"], held["Session"], held["Flags"]) == (1, mine, 0)

    # A plain write keeps the holder and, as Consul's, sets LockIndex to the request's: 0.
    assert http.put(url, data=b"e").json() is True
    written = entry(http, server, "lock")
    assert written is not None and (written["LockIndex"], written["Session"]) == (0, mine)

    assert http.put(url, data=b"f", params={"release": mine}).json() is True
    released = entry(http, server, "lock")
    assert released is not None and "Session" not in released
    assert http.put(url, data=b"g", params={"acquire": theirs}).json() is True
    again = entry(http, server, "lock")
    assert again is not None and (again["LockIndex"], again["Session"]) == (1, theirs)


def test_a_held_key_can_still_be_deleted(http: requests.Session, server: ConsulServer) -> None:
    session_id = create(http, server)
    assert acquire(http, server, "lock", session_id) is True

    assert http.delete(server.url + "/v1/kv/lock").json() is True

    assert server.get("lock") is None


# -- reads -----------------------------------------------------------------------------------


def test_info_blocks_until_the_session_goes(
    http: requests.Session, server: ConsulServer, pool: ThreadPoolExecutor
) -> None:
    session_id = create(http, server)
    first = http.get(f"{server.url}/v1/session/info/{session_id}")
    index = index_of(first)
    in_background(pool, lambda: requests.put(f"{server.url}/v1/session/destroy/{session_id}"), 0.05)

    response = http.get(
        f"{server.url}/v1/session/info/{session_id}", params={"index": index, "wait": "5s"}
    )

    assert response.json() == []
    assert index_of(response) > index


def test_list_blocks_until_a_session_is_created(
    http: requests.Session, server: ConsulServer, pool: ThreadPoolExecutor
) -> None:
    index = index_of(http.get(server.url + "/v1/session/list"))
    assert index == 1
    made = in_background(pool, lambda: create(requests.Session(), server), 0.05)

    response = http.get(server.url + "/v1/session/list", params={"index": index, "wait": "5s"})

    assert [s["ID"] for s in response.json()] == [made.result()]


def test_node_lists_only_that_nodes_sessions(http: requests.Session, server: ConsulServer) -> None:
    session_id = create(http, server)

    mine = http.get(server.url + "/v1/session/node/node1")
    other = http.get(server.url + "/v1/session/node/node2")

    assert [s["ID"] for s in mine.json()] == [session_id]
    assert other.json() == []


@pytest.mark.parametrize(
    ("method", "target", "status", "body"),
    [
        ("GET", "/v1/session/info/", 400, b"Missing session"),
        ("PUT", "/v1/session/renew/", 400, b"Missing session"),
        ("PUT", "/v1/session/destroy/", 400, b"Missing session"),
        ("GET", "/v1/session/node/", 400, b"Missing node name"),
        ("GET", "/v1/session/list?stale&consistent", 400, b"Cannot specify ?stale"),
        ("GET", "/v1/session/list?index=x", 400, b"Invalid index"),
        ("PUT", "/v1/session/renew/x?wait=x", 400, b"Invalid wait time"),
        ("GET", "/v1/session/create", 405, b"method GET not allowed"),
        ("PUT", "/v1/session/list", 405, b"method PUT not allowed"),
        ("GET", "/v1/session/create/x", 404, b"Invalid URL path: not a recognized HTTP API"),
        ("GET", "/v1/session/nope", 404, b"Invalid URL path: not a recognized HTTP API"),
        ("GET", "/v1/session/list?dc=dc2", 500, b"No path to datacenter"),
        ("PUT", "/v1/session/create?dc=dc2", 500, b"No path to datacenter"),
    ],
)
def test_routes_and_their_errors(
    server: ConsulServer, method: str, target: str, status: int, body: bytes
) -> None:
    answer = send(server.url, method, target)

    assert answer.status == status
    assert answer.body.startswith(body)


def test_a_subtree_without_its_slash_is_redirected(server: ConsulServer) -> None:
    answer = send(server.url, "GET", "/v1/session/info?stale")

    assert answer.status == 301
    assert answer.headers["Location"] == "/v1/session/info/?stale"


def test_options_names_the_method(server: ConsulServer) -> None:
    create_options = send(server.url, "OPTIONS", "/v1/session/create")
    list_options = send(server.url, "OPTIONS", "/v1/session/list")

    assert (create_options.status, create_options.headers["Allow"]) == (200, "OPTIONS,PUT")
    assert list_options.headers["Allow"] == "OPTIONS,GET"


def test_session_rpcs_meet_injected_failures(http: requests.Session, server: ConsulServer) -> None:
    server.fail_next(1)

    response = http.put(server.url + "/v1/session/create")

    assert (response.status_code, response.text) == (500, "No cluster leader")
    assert server.sessions() == []


# -- ACLs ------------------------------------------------------------------------------------

TOKENS = {
    "fleet": [ACLRule("fleet/", "write"), ACLRule("", "write", "session")],
    "reader": [ACLRule("fleet/", "read"), ACLRule("node", "read", "session")],
    "keys-only": [ACLRule("fleet/", "write")],
}


@pytest.fixture
def acl_server(clock: FakeClock) -> Iterator[ConsulServer]:
    with ConsulServer(
        jitter=False, clock=clock, acl_tokens=TOKENS, acl_default_policy="deny"
    ) as server:
        yield server


def as_(token: str) -> dict[str, dict[str, str]]:
    return {"headers": {"X-Consul-Token": token}}


def test_creating_needs_session_write_on_the_node(
    http: requests.Session, acl_server: ConsulServer
) -> None:
    url = acl_server.url + "/v1/session/create"
    accessor = acl_server.accessor_id("keys-only")

    denied = http.put(url, **as_("keys-only"))
    anonymous = http.put(url)

    assert denied.status_code == 403
    assert denied.text == (
        f"Permission denied: token with AccessorID '{accessor}' "
        "lacks permission 'session:write' on \"node1\""
    )
    assert anonymous.status_code == 403
    assert create(http, acl_server, **as_("fleet"))


def test_renew_and_destroy_need_session_write(
    http: requests.Session, acl_server: ConsulServer
) -> None:
    session_id = create(http, acl_server, **as_("fleet"))

    for action in ("renew", "destroy"):
        response = http.put(f"{acl_server.url}/v1/session/{action}/{session_id}", **as_("reader"))
        assert response.status_code == 403
        assert "'session:write' on \"node1\"" in response.text
    assert len(acl_server.sessions()) == 1


def test_reads_hide_sessions_of_nodes_the_token_may_not_read(
    http: requests.Session, acl_server: ConsulServer
) -> None:
    session_id = create(http, acl_server, **as_("fleet"))

    seen = http.get(acl_server.url + "/v1/session/list", **as_("reader"))
    hidden = http.get(acl_server.url + "/v1/session/list", **as_("keys-only"))
    anonymous = http.get(f"{acl_server.url}/v1/session/info/{session_id}")

    assert [s["ID"] for s in seen.json()] == [session_id]
    assert "X-Consul-Results-Filtered-By-ACLs" not in seen.headers
    assert hidden.json() == []
    assert hidden.headers["X-Consul-Results-Filtered-By-ACLs"] == "true"
    assert anonymous.json() == []
    assert "X-Consul-Results-Filtered-By-ACLs" not in anonymous.headers  # not authenticated


def test_acquiring_needs_key_write_only(http: requests.Session, acl_server: ConsulServer) -> None:
    session_id = create(http, acl_server, **as_("fleet"))
    url = acl_server.url + "/v1/kv/fleet/me"

    assert http.put(url, params={"acquire": session_id}, **as_("keys-only")).json() is True
    denied = http.put(url, params={"release": session_id}, **as_("reader"))

    assert denied.status_code == 403
    assert "'key:write' on \"fleet/me\"" in denied.text


def test_a_session_rule_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="resource"):
        ACLRule("", "write", "node")  # type: ignore[arg-type]


# -- whole-state events ----------------------------------------------------------------------


def test_a_snapshot_keeps_sessions_and_holders(
    http: requests.Session, server: ConsulServer, clock: FakeClock
) -> None:
    session_id = create(http, server, {"TTL": "10s"})
    assert acquire(http, server, "lock", session_id) is True
    snapshot = server.snapshot()
    http.put(f"{server.url}/v1/session/destroy/{session_id}")
    assert repr(snapshot).endswith("sessions=1>")

    clock.advance(15)
    server.restore(snapshot)

    assert info(http, server, session_id) is not None
    held = entry(http, server, "lock")
    assert held is not None and held["Session"] == session_id
    clock.advance(19)  # the TTL started over at the restore
    assert info(http, server, session_id) is not None
    clock.advance(1)
    assert info(http, server, session_id) is None


def test_a_rebuilt_cluster_has_no_sessions_and_no_holders(
    http: requests.Session, server: ConsulServer
) -> None:
    session_id = create(http, server)
    assert acquire(http, server, "lock", session_id) is True

    server.restart()

    assert server.sessions() == []
    rebuilt = entry(http, server, "lock")
    assert rebuilt is not None
    assert (rebuilt["LockIndex"], "Session" in rebuilt) == (0, False)
    assert info(http, server, session_id) is None


def test_an_agent_restart_keeps_sessions(http: requests.Session, server: ConsulServer) -> None:
    session_id = create(http, server)

    server.restart(mode="agent")

    with requests.Session() as fresh:
        fresh.trust_env = False
        assert info(fresh, server, session_id) is not None


def test_locks_in_an_enterprise_namespace_stay_in_it(http: requests.Session) -> None:
    with ConsulServer(jitter=False, enterprise=True) as server:
        session_id = create(http, server)
        url = server.url + "/v1/kv/lock"
        team = {"ns": "team"}

        assert http.put(url, params={**team, "acquire": session_id}).json() is True
        assert http.put(url, params={**team, "release": "other"}).json() is False

        held = http.get(url, params=team).json()[0]
        assert (held["Session"], held["Namespace"]) == (session_id, "team")
        assert http.get(url).status_code == 404  # the default space has no such key
        http.put(f"{server.url}/v1/session/destroy/{session_id}")
        other = create(http, server)
        assert http.put(url, params={**team, "acquire": other}).json() is False  # lock-delay
