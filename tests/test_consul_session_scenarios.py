"""Consul's own session scenarios (``api/session_test.go``, ``agent/session_endpoint_test.go``).

Each test names the Go test it translates and keeps its steps and checks, through the HTTP
calls the Go client makes (``TestAPI_*``) or the requests the Go test builds. They run
against the embedded stand-in, and unchanged against a real agent when ``CONSUL_HTTP_ADDR``
is set (the token must then allow ``session:write`` on the agent's node, ``key:write`` under
``breaker-tests/`` and ``node:write`` for the check a few tests register). On a shared
agent other sessions may exist: "no sessions" is checked on the stand-in only.

The TTL scenarios (``TestSessionCustomTTL``, ``TestSessionTTLRenew``) set
``session_ttl_min = "250ms"`` and sleep through the TTLs; here they run on a stand-in whose
clock the test moves. Not translated: the parts that register a second node in the catalog
(``TestAPI_SessionNodeChecks`` with node ``foo``), which the stand-in, a single node, has not,
and ``RenewPeriodic``'s client-side loop, of which only what the server sees is kept.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest

from breaker.testing import ConsulServer, FakeClock

from .consul_api import Agent, fresh_key

if TYPE_CHECKING:
    from breaker.testing.pytest_plugin import ConsulHandle

SERF = "serfHealth"
LOCK_DELAY_15S = 15_000_000_000
LOCK_DELAY_20S = 20_000_000_000


@pytest.fixture
def agent(consul: ConsulHandle) -> Iterator[Agent]:
    client = Agent(consul)
    created: list[str] = []
    real_create = client.create_session

    def create(entry: dict[str, Any] | None = None) -> str:
        session_id = real_create(entry)
        created.append(session_id)
        return session_id

    client.create_session = create  # type: ignore[method-assign]
    yield client
    for session_id in created:  # as the Go tests' deferred Destroy
        client.request("PUT", f"/v1/session/destroy/{session_id}")
    client.session.close()


def node_name(agent: Agent) -> str:
    """Return the agent's node name (the Go tests' ``a.Config.NodeName``)."""
    if agent.handle.server is not None:
        return agent.handle.server.node_name
    return str(agent.request("GET", "/v1/agent/self").json()["Config"]["NodeName"])


def register_check(agent: Agent, check_id: str, service_id: str = "") -> None:
    """Register a passing check on the agent's node, as ``Catalog.Register`` does."""
    server = agent.handle.server
    if server is not None:
        server.register_check(check_id)
        return
    node = node_name(agent)
    body: dict[str, Any] = {
        "Node": node,
        "Address": "127.0.0.1",
        "SkipNodeUpdate": True,
        "Check": {"Node": node, "CheckID": check_id, "Name": check_id, "Status": "passing"},
    }
    if service_id:
        body["Service"] = {"ID": service_id, "Service": service_id}
        body["Check"]["ServiceID"] = service_id
    answer = agent.request("PUT", "/v1/catalog/register", json.dumps(body).encode())
    assert answer.status == 200, answer


def verify_session(agent: Agent, want: dict[str, Any]) -> None:
    """Check a session's fields as the Go test's ``verifySession`` does."""
    got, _ = agent.session_info(want["ID"])
    assert got is not None
    for field in ("ID", "Node", "Behavior", "LockDelay"):
        assert got[field] == want[field], field
    for field in ("Checks", "NodeChecks", "ServiceChecks"):
        assert got.get(field) == want.get(field), field


# -- api/session_test.go -----------------------------------------------------------------


def test_api_session_create_destroy(agent: Agent) -> None:
    """TestAPI_SessionCreateDestroy."""
    session_id = agent.create_session()
    assert session_id

    assert agent.destroy(session_id).json() is True


def test_api_session_create_renew_destroy(agent: Agent) -> None:
    """TestAPI_SessionCreateRenewDestroy."""
    session_id = agent.create_session({"TTL": "10s"})
    assert session_id

    renewed = agent.renew(session_id)

    assert renewed is not None
    assert renewed["ID"] == session_id
    assert renewed["TTL"] == "10s"


def test_api_session_create_renew_destroy_renew(agent: Agent) -> None:
    """TestAPI_SessionCreateRenewDestroyRenew."""
    session_id = agent.create_session({"Behavior": "delete", "TTL": "500s"})
    assert session_id

    assert agent.renew(session_id) is not None  # extended right after create

    agent.destroy(session_id)  # TTL loss, simulated

    assert agent.renew(session_id) is None  # the 404 proxies as nil


def test_api_session_create_destroy_renew_periodic(agent: Agent) -> None:
    """TestAPI_SessionCreateDestroyRenewPeriodic: the renewal that ends the loop is a 404."""
    session_id = agent.create_session({"Behavior": "delete", "TTL": "500s"})
    agent.destroy(session_id)

    answer = agent.request("PUT", f"/v1/session/renew/{session_id}")

    assert answer.status == 404
    assert answer.body == f"Session id '{session_id}' not found".encode()


def test_api_session_renew_periodic_cancel(agent: Agent) -> None:
    """TestAPI_SessionRenewPeriodic_Cancel: a loop stopped by its done channel destroys the
    session; one whose context is cancelled leaves it to its TTL."""
    done = agent.create_session({"Behavior": "delete", "TTL": "500s"})
    cancelled = agent.create_session({"Behavior": "delete", "TTL": "500s"})

    agent.destroy(done)  # what RenewPeriodic does when doneCh closes

    assert agent.session_info(done)[0] is None
    assert agent.session_info(cancelled)[0] is not None


def test_api_session_info(agent: Agent) -> None:
    """TestAPI_SessionInfo."""
    session_id = agent.create_session()

    info, meta = agent.session_info(session_id)

    assert meta.index != 0
    assert meta.headers["X-Consul-KnownLeader"] == "true"
    assert info is not None
    assert info["CreateIndex"] != 0
    assert info["ID"] == session_id
    assert info["Node"] == node_name(agent)
    assert info["LockDelay"] == LOCK_DELAY_15S
    assert info["Behavior"] == "release"
    assert info["NodeChecks"] == [SERF]


def test_api_session_info_no_checks(agent: Agent) -> None:
    """TestAPI_SessionInfo_NoChecks."""
    session_id = agent.create_session({"NodeChecks": []})

    info, meta = agent.session_info(session_id)

    assert meta.index != 0
    assert meta.headers["X-Consul-KnownLeader"] == "true"
    assert info is not None
    assert info["CreateIndex"] != 0
    assert (info["ID"], info["Node"]) == (session_id, node_name(agent))
    assert (info["LockDelay"], info["Behavior"]) == (LOCK_DELAY_15S, "release")
    assert info.get("Checks") is None
    assert info["NodeChecks"] == []


def test_api_session_node(agent: Agent) -> None:
    """TestAPI_SessionNode."""
    session_id = agent.create_session()
    info, _ = agent.session_info(session_id)
    assert info is not None

    answer = agent.request("GET", f"/v1/session/node/{info['Node']}")

    ids = [s["ID"] for s in answer.json()]
    assert session_id in ids
    if agent.handle.server is not None:
        assert ids == [session_id]
    assert answer.index != 0
    assert answer.headers["X-Consul-KnownLeader"] == "true"


def test_api_session_list(agent: Agent) -> None:
    """TestAPI_SessionList."""
    session_id = agent.create_session()

    answer = agent.request("GET", "/v1/session/list")

    ids = [s["ID"] for s in answer.json()]
    assert session_id in ids
    if agent.handle.server is not None:
        assert ids == [session_id]
    assert answer.index != 0
    assert answer.headers["X-Consul-KnownLeader"] == "true"


def test_api_session_node_checks(agent: Agent) -> None:
    """TestAPI_SessionNodeChecks (up to the second node, which the stand-in cannot have)."""
    refused = agent.request("PUT", "/v1/session/create", b'{"NodeChecks": ["dne"]}')
    assert refused.status == 500
    assert refused.body == b"Missing check 'dne' registration"

    session_id = agent.create_session({})  # an empty list is left out: the serf check

    info, meta = agent.session_info(session_id)
    assert meta.index != 0
    assert info is not None and info["CreateIndex"] != 0
    assert info["NodeChecks"] == [SERF]
    assert (info["LockDelay"], info["Behavior"]) == (LOCK_DELAY_15S, "release")


def test_api_session_service_checks(agent: Agent) -> None:
    """TestAPI_SessionServiceChecks."""
    refused = agent.request(
        "PUT", "/v1/session/create", b'{"ServiceChecks": [{"ID": "dne", "Namespace": ""}]}'
    )
    assert refused.status == 500

    check = f"redis-{fresh_key()[:8]}:alive"
    register_check(agent, check, service_id="redisV2")
    session_id = agent.create_session({"ServiceChecks": [{"ID": check, "Namespace": ""}]})

    info, _ = agent.session_info(session_id)
    assert info is not None
    assert info["ServiceChecks"] == [{"ID": check, "Namespace": ""}]
    assert info["NodeChecks"] == [SERF]
    assert (info["LockDelay"], info["Behavior"]) == (LOCK_DELAY_15S, "release")


# -- agent/session_endpoint_test.go ------------------------------------------------------


def test_session_create(agent: Agent) -> None:
    """TestSessionCreate."""
    check = f"consul-{fresh_key()[:8]}"
    register_check(agent, check, service_id="consul")
    node = node_name(agent)
    session_id = agent.create_session(
        {"Name": "my-cool-session", "Node": node, "Checks": [check], "LockDelay": "20s"}
    )

    verify_session(
        agent,
        {
            "ID": session_id,
            "Node": node,
            "Checks": [check],
            "NodeChecks": [SERF],
            "LockDelay": LOCK_DELAY_20S,
            "Behavior": "release",
        },
    )


def test_session_create_node_checks(agent: Agent) -> None:
    """TestSessionCreate_NodeChecks."""
    check = f"consul-{fresh_key()[:8]}"
    register_check(agent, check, service_id="consul")
    node = node_name(agent)
    session_id = agent.create_session(
        {
            "Name": "my-cool-session",
            "Node": node,
            "ServiceChecks": [{"ID": check, "Namespace": ""}],
            "NodeChecks": [SERF],
            "LockDelay": "20s",
        }
    )

    verify_session(
        agent,
        {
            "ID": session_id,
            "Node": node,
            "NodeChecks": [SERF],
            "ServiceChecks": [{"ID": check, "Namespace": ""}],
            "LockDelay": LOCK_DELAY_20S,
            "Behavior": "release",
        },
    )


def test_session_create_delete(agent: Agent) -> None:
    """TestSessionCreate_Delete."""
    check = f"consul-{fresh_key()[:8]}"
    register_check(agent, check, service_id="consul")
    node = node_name(agent)
    session_id = agent.create_session(
        {
            "Name": "my-cool-session",
            "Node": node,
            "Checks": [check],
            "NodeChecks": [SERF],
            "LockDelay": "20s",
            "Behavior": "delete",
        }
    )

    verify_session(
        agent,
        {
            "ID": session_id,
            "Node": node,
            "Checks": [check],
            "NodeChecks": [SERF],
            "LockDelay": LOCK_DELAY_20S,
            "Behavior": "delete",
        },
    )


def test_session_create_default_check(agent: Agent) -> None:
    """TestSessionCreate_DefaultCheck."""
    node = node_name(agent)
    session_id = agent.create_session({"Name": "my-cool-session", "Node": node, "LockDelay": "20s"})

    verify_session(
        agent,
        {
            "ID": session_id,
            "Node": node,
            "NodeChecks": [SERF],
            "LockDelay": LOCK_DELAY_20S,
            "Behavior": "release",
        },
    )


@pytest.mark.parametrize(
    ("extra", "node_checks"),
    [
        pytest.param({}, [SERF], id="no check fields should yield default serfHealth"),
        pytest.param({"NodeChecks": []}, [], id="overwrite nodechecks to associate with no checks"),
        pytest.param({"Checks": []}, [], id="overwrite checks to associate with no checks"),
    ],
)
def test_session_create_no_check(
    agent: Agent, extra: dict[str, Any], node_checks: list[str]
) -> None:
    """TestSessionCreate_NoCheck (its three subtests)."""
    node = node_name(agent)
    session_id = agent.create_session(
        {"Name": "my-cool-session", "Node": node, "LockDelay": "20s", **extra}
    )

    verify_session(
        agent,
        {
            "ID": session_id,
            "Node": node,
            "NodeChecks": node_checks,
            "LockDelay": LOCK_DELAY_20S,
            "Behavior": "release",
        },
    )


def test_session_destroy(agent: Agent) -> None:
    """TestSessionDestroy."""
    session_id = agent.create_session(None)

    assert agent.destroy(session_id).json() is True


@pytest.fixture
def ttl_server() -> Iterator[tuple[ConsulServer, FakeClock, Agent]]:
    """A stand-in with ``session_ttl_min = "250ms"`` whose clock the test moves."""
    from breaker.testing.pytest_plugin import ConsulHandle

    clock = FakeClock()
    with ConsulServer(jitter=False, clock=clock, session_ttl_min=0.25) as server:
        client = Agent(ConsulHandle(server.url, server=server))
        yield server, clock, client
        client.session.close()


def test_session_custom_ttl(ttl_server: tuple[ConsulServer, FakeClock, Agent]) -> None:
    """TestSessionCustomTTL."""
    _, clock, agent = ttl_server
    ttl = 0.25
    session_id = agent.create_session({"TTL": "250ms"})

    info, _ = agent.session_info(session_id)
    assert info is not None and info["TTL"] == "250ms"

    clock.advance(ttl * 2 + ttl)

    assert agent.session_info(session_id)[0] is None


def test_session_ttl_renew(ttl_server: tuple[ConsulServer, FakeClock, Agent]) -> None:
    """TestSessionTTLRenew."""
    _, clock, agent = ttl_server
    ttl = 0.25
    session_id = agent.create_session({"TTL": "250ms"})
    info, _ = agent.session_info(session_id)
    assert info is not None and info["TTL"] == "250ms"

    clock.advance(ttl * 2 / 3)  # some time before the renewal
    assert agent.renew(session_id) is not None

    clock.advance(ttl * 2 - 0.001)  # within twice the TTL of the renewal
    assert agent.session_info(session_id)[0] is not None, "should have renewed"

    clock.advance(ttl * 2)
    assert agent.session_info(session_id)[0] is None, "should have been destroyed"


def test_session_get(agent: Agent) -> None:
    """TestSessionGet (both subtests)."""
    answer = agent.request("GET", "/v1/session/info/adf4238a-882b-9ddc-4a9d-5b6758e4159e")
    assert (answer.status, answer.json()) == (200, [])

    session_id = agent.create_session(None)

    info, _ = agent.session_info(session_id)
    assert info is not None and info["ID"] == session_id


def test_session_list(agent: Agent) -> None:
    """TestSessionList (both subtests)."""
    if agent.handle.server is not None:
        assert agent.request("GET", "/v1/session/list").json() == []

    ids = [agent.create_session(None) for _ in range(10)]

    listed = [s["ID"] for s in agent.request("GET", "/v1/session/list").json()]
    assert set(ids) <= set(listed)
    if agent.handle.server is not None:
        assert sorted(listed) == sorted(ids)


def test_sessions_for_node(agent: Agent) -> None:
    """TestSessionsForNode (both subtests)."""
    target = f"/v1/session/node/{node_name(agent)}"
    if agent.handle.server is not None:
        assert agent.request("GET", target).json() == []

    ids = [agent.create_session(None) for _ in range(10)]

    listed = [s["ID"] for s in agent.request("GET", target).json()]
    assert set(ids) <= set(listed)


def test_session_delete_destroy(agent: Agent, consul_prefix: str) -> None:
    """TestSessionDeleteDestroy."""
    session_id = agent.create_session({"Behavior": "delete"})
    key = consul_prefix + "ephemeral"
    assert agent.put(key, b"test", f"acquire={session_id}")

    assert agent.destroy(session_id).json() is True

    assert agent.get(key)[0] is None
