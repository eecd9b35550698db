"""Namespaces and admin partitions: refused as Consul CE refuses them, or separate key spaces."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from breaker.testing._server import ACLRule, ConsulServer
from tests.testing_server.helpers import fetch, in_background, index_of

CE_NS = 'Invalid query parameter: "ns" - Namespaces are a Consul Enterprise feature'
CE_NS_HEADER = 'Invalid header: "X-Consul-Namespace" - Namespaces are a Consul Enterprise feature'
CE_AP = 'Invalid query parameter: "partition" - Partitions are a Consul Enterprise feature'
CE_AP_HEADER = 'Invalid header: "X-Consul-Partition" - Partitions are a Consul Enterprise feature'


class TestCommunityEdition:
    """``agent/http_ce.go``'s ``parseEntMeta``: any namespace or partition is a 400."""

    @pytest.mark.parametrize(
        ("query", "headers", "message"),
        [
            ("ns=team-a", {}, CE_NS),
            ("ns=default", {}, CE_NS),  # even the default one
            ("partition=p1", {}, CE_AP),
            ("", {"X-Consul-Namespace": "team-a"}, CE_NS_HEADER),
            ("", {"X-Consul-Partition": "p1"}, CE_AP_HEADER),
            ("partition=p1", {"X-Consul-Namespace": "team-a"}, CE_NS_HEADER),  # ns first
            ("ns=team-a&partition=p1", {}, CE_NS),
        ],
    )
    @pytest.mark.parametrize(
        ("method", "path"),
        [("GET", "k"), ("GET", "k?recurse"), ("GET", "?keys"), ("PUT", "k"), ("DELETE", "k")],
    )
    def test_refused_with_ce_text(
        self,
        http: requests.Session,
        kv: str,
        method: str,
        path: str,
        query: str,
        headers: dict[str, str],
        message: str,
    ) -> None:
        joined = path + ("&" if "?" in path else "?") + query if query else path
        response = http.request(method, kv + joined, headers=headers)
        assert (response.status_code, response.text) == (400, message)
        assert "X-Consul-Index" not in response.headers

    def test_empty_values_are_no_namespace(
        self, http: requests.Session, consul_server: ConsulServer, kv: str
    ) -> None:
        consul_server.put("k", "v")
        assert http.get(kv + "k?ns=&partition=&raw").content == b"v"

    def test_missing_key_name_comes_first_on_get_last_on_put(
        self, http: requests.Session, kv: str
    ) -> None:
        assert http.get(kv + "?ns=a").text == "Missing key name"
        assert http.put(kv + "?ns=a").text == CE_NS


@pytest.fixture
def enterprise() -> Iterator[ConsulServer]:
    with ConsulServer(jitter=False, enterprise=True) as server:
        yield server


def listed(response: requests.Response) -> list[tuple[str, bytes, str, str]]:
    return [
        (e["Key"], base64.b64decode(e["Value"] or ""), e["Partition"], e["Namespace"])
        for e in response.json()
    ]


class TestEnterprise:
    def test_each_namespace_and_partition_is_a_key_space_of_its_own(
        self, http: requests.Session, enterprise: ConsulServer
    ) -> None:
        kv = enterprise.url + "/v1/kv/"
        for where, value in [
            ("", "default"),
            ("?ns=team-a", "a"),
            ("?ns=team-b", "b"),
            ("?partition=p1", "p1"),
            ("?partition=p1&ns=team-a", "p1-a"),
        ]:
            assert http.put(kv + "cfg/k" + where, data=value).json() is True
        assert http.get(kv + "cfg/k?raw").content == b"default"
        assert http.get(kv + "cfg/k?raw&ns=default&partition=default").content == b"default"
        assert http.get(kv + "cfg/k?raw&ns=team-a").content == b"a"
        assert http.get(kv + "cfg/k?raw", headers={"X-Consul-Namespace": "team-b"}).content == (
            b"b"
        )
        assert http.get(kv + "cfg/k?raw&partition=p1&ns=team-a").content == b"p1-a"
        assert http.get(kv + "cfg/k?ns=team-c").status_code == 404
        assert listed(http.get(kv + "?recurse")) == [("cfg/k", b"default", "default", "default")]
        assert listed(http.get(kv + "cfg/?recurse&ns=team-a")) == [
            ("cfg/k", b"a", "default", "team-a")
        ]
        assert listed(http.get(kv + "?recurse&partition=p1")) == [("cfg/k", b"p1", "p1", "default")]
        assert http.get(kv + "?keys").json() == ["cfg/k"]
        assert http.get(kv + "?keys&ns=team-a").json() == ["cfg/k"]

    def test_deleting_a_tree_stays_in_its_space(
        self, http: requests.Session, enterprise: ConsulServer
    ) -> None:
        kv = enterprise.url + "/v1/kv/"
        http.put(kv + "k", data="default")
        http.put(kv + "k?ns=team-a", data="a")
        assert http.delete(kv + "?recurse").json() is True
        assert http.get(kv + "k").status_code == 404
        assert http.get(kv + "k?raw&ns=team-a").content == b"a"
        assert http.delete(kv + "?recurse&ns=team-a").json() is True
        assert http.get(kv + "k?ns=team-a").status_code == 404
        assert http.delete(kv + "k?ns=team-b&cas=0").json() is True  # a missing key

    def test_spaces_share_one_raft_index_and_block_on_their_own_keys(
        self, http: requests.Session, enterprise: ConsulServer, pool: ThreadPoolExecutor
    ) -> None:
        kv = enterprise.url + "/v1/kv/"
        http.put(kv + "cfg/k?ns=team-a", data="a1")
        first = http.get(kv + "cfg/?recurse&ns=team-a")
        http.put(kv + "cfg/k?ns=team-b", data="b1")  # another space: does not wake team-a
        assert enterprise.index == index_of(first) + 1
        in_background(pool, lambda: http.put(kv + "cfg/k?ns=team-a", data="a2"), 0.2)
        woken = fetch(kv + f"cfg/?recurse&ns=team-a&index={index_of(first)}&wait=5s")
        assert listed(woken) == [("cfg/k", b"a2", "default", "team-a")]
        assert index_of(woken) == index_of(first) + 2

    def test_acls_and_locks_in_a_namespace(self, http: requests.Session) -> None:
        tokens = {"reader": [ACLRule("cfg/", "read"), ACLRule("cfg/secret", "deny")]}
        with ConsulServer(jitter=False, enterprise=True, acl_tokens=tokens) as server:
            kv = server.url + "/v1/kv/"
            for key in ("cfg/a", "cfg/secret"):
                assert http.put(kv + key + "?ns=team-a", data="v").json() is True
            reader = {"X-Consul-Token": "reader"}
            answer = http.get(kv + "cfg/?recurse&ns=team-a", headers=reader)
            assert [key for key, *_ in listed(answer)] == ["cfg/a"]
            assert answer.headers["X-Consul-Results-Filtered-By-Acls"] == "true"
            before = server.index
            refused = http.put(kv + "cfg/a?ns=team-a&release=s1", data="v")
            assert refused.json() is False and server.index == before + 1
            server.set_acl_token("reader", None)
            assert http.get(kv + "cfg/a?ns=team-a", headers=reader).status_code == 403


def test_tokens_need_acls_on(consul_server: ConsulServer) -> None:
    with pytest.raises(ValueError, match="ACLs are off"):
        consul_server.set_acl_token("t", [])
