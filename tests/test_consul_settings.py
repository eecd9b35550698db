"""ConsulCoord's settings: the consul CLI's environment, with explicit arguments winning."""

from __future__ import annotations

import os
import pathlib
import ssl

import pytest

import breaker
from breaker.coord.consul import ConsulOptions, ConsulSettings
from breaker.coord.consul._settings import parse_bool
from breaker.testing import pytest_plugin

from .helpers import TLS, Impostor, tls_server_context


def resolve(env: dict[str, str] | None = None, **kwargs: object) -> ConsulSettings:
    return ConsulSettings.resolve(environ=env or {}, **kwargs)  # type: ignore[arg-type]


class TestAddress:
    @pytest.mark.parametrize(
        ("addr", "url"),
        [
            (None, "http://127.0.0.1:8500"),
            ("consul.internal:8501", "http://consul.internal:8501"),
            ("consul.internal", "http://consul.internal:8500"),
            ("http://10.0.0.5:8500", "http://10.0.0.5:8500"),
            ("https://consul.example:443", "https://consul.example:443"),
            ("https://gateway.example/consul/", "https://gateway.example:8500/consul"),
            ("[::1]:8500", "http://[::1]:8500"),
        ],
    )
    def test_forms(self, addr: str | None, url: str) -> None:
        assert resolve(addr=addr).base_url == url

    @pytest.mark.parametrize(
        "addr",
        ["unix://", "ftp://x:1", "http://", "host:port", ":8500", "http://:1"],
    )
    def test_bad_addresses_say_why(self, addr: str) -> None:
        with pytest.raises(ValueError, match="Consul address"):
            resolve(addr=addr)

    def test_env_address_and_explicit_wins(self) -> None:
        env = {"CONSUL_HTTP_ADDR": "https://from-env:8501"}
        assert resolve(env).base_url == "https://from-env:8501"
        assert resolve(env, addr="explicit:9000").base_url == "http://explicit:9000"

    def test_ssl_env_upgrades_a_bare_address_and_never_downgrades(self) -> None:
        assert resolve({"CONSUL_HTTP_SSL": "true"}, addr="c:8501").base_url == "https://c:8501"
        assert resolve({"CONSUL_HTTP_SSL": "1"}, addr="http://c:8501").base_url == "https://c:8501"
        assert (
            resolve({"CONSUL_HTTP_SSL": "false"}, addr="https://c:8501").base_url
            == "https://c:8501"
        )
        assert resolve({"CONSUL_HTTP_SSL": "true"}, addr="c:1", ssl=False).base_url == "http://c:1"


class TestIssue21Settings:
    """What the consul CLI honours and the coord ignored: each from the environment, and
    each explicit argument winning over it."""

    @pytest.mark.parametrize(
        ("env", "option", "field", "from_env", "explicit", "want"),
        [
            (
                "CONSUL_TLS_SERVER_NAME",
                "tls_server_name",
                "tls_server_name",
                "server.dc1.consul:8501",
                "consul.internal",
                ("server.dc1.consul", "consul.internal"),
            ),
            ("CONSUL_NAMESPACE", "namespace", "namespace", "team-a", "team-b", None),
            ("CONSUL_PARTITION", "partition", "partition", "part-1", "part-2", None),
            (
                "CONSUL_HTTP_AUTH",
                "http_auth",
                "http_auth",
                "ops:s3cr3t:with-colon",
                "admin",
                (("ops", "s3cr3t:with-colon"), ("admin", "")),
            ),
        ],
    )
    def test_from_the_environment_and_explicit_wins(
        self,
        env: str,
        option: str,
        field: str,
        from_env: str,
        explicit: str,
        want: tuple[object, object] | None,
    ) -> None:
        expect_env, expect_explicit = want if want is not None else (from_env, explicit)
        assert getattr(resolve({}), field) is None
        assert getattr(resolve({env: from_env}), field) == expect_env
        assert getattr(resolve({env: from_env}, **{option: explicit}), field) == expect_explicit

    def test_namespace_and_partition_go_in_every_query(self) -> None:
        assert resolve({}).query() == []
        settings = resolve({"CONSUL_NAMESPACE": "team-a", "CONSUL_PARTITION": "p1"})
        assert settings.query() == [("ns", "team-a"), ("partition", "p1")]

    def test_the_auth_password_never_shows(self) -> None:
        settings = resolve({"CONSUL_HTTP_AUTH": "ops:s3cr3t"})
        assert "s3cr3t" not in repr(settings)
        assert "'ops'" in repr(settings)

    @pytest.mark.parametrize("name", ["[::1]:8501", "[::1]", "::1"])
    def test_a_tls_server_name_loses_its_port_as_in_go(self, name: str) -> None:
        assert resolve(tls_server_name=name).tls_server_name == "::1"

    def test_unix_addresses(self) -> None:
        settings = resolve({"CONSUL_HTTP_ADDR": "unix:///var/run/consul.sock"})
        assert settings.unix_socket == "/var/run/consul.sock"
        assert settings.address == "unix:///var/run/consul.sock"
        assert settings.base_url == "http://localhost"
        tcp = resolve({"CONSUL_HTTP_ADDR": "unix:///var/run/consul.sock"}, addr="c:1")
        assert tcp.unix_socket is None and tcp.address == "http://c:1"
        assert resolve(addr="unix:///tmp/a.sock").unix_socket == "/tmp/a.sock"
        with pytest.raises(ValueError, match="TLS over a unix socket"):
            resolve({"CONSUL_HTTP_SSL": "true"}, addr="unix:///tmp/a.sock")

    def test_consistency(self) -> None:
        assert resolve().consistency == "default"
        assert resolve(consistency="stale").consistency == "stale"
        assert resolve(consistency="consistent").consistency == "consistent"
        with pytest.raises(ValueError, match="consistency must be one of"):
            resolve(consistency="eventual")

    def test_the_token_file_is_kept_for_reading_again(self, tmp_path: pathlib.Path) -> None:
        f = tmp_path / "token"
        f.write_text("t1\n")
        assert resolve({"CONSUL_HTTP_TOKEN_FILE": str(f)}).token_file == str(f)
        assert resolve({}, token_file=str(f)).token_file == str(f)
        assert resolve({"CONSUL_HTTP_TOKEN_FILE": str(f)}, token="x").token_file is None
        assert resolve({"CONSUL_HTTP_TOKEN": "x"}).token_file is None


class TestToken:
    def test_explicit_token_wins_over_env(self) -> None:
        env = {"CONSUL_HTTP_TOKEN": "env-token"}
        assert resolve(env).token == "env-token"
        assert resolve(env, token="mine").token == "mine"

    def test_token_file_is_read_and_preferred_to_the_env_token(
        self, tmp_path: pathlib.Path
    ) -> None:
        f = tmp_path / "token"
        f.write_text("  file-token\n")
        env = {"CONSUL_HTTP_TOKEN": "env-token", "CONSUL_HTTP_TOKEN_FILE": str(f)}
        assert resolve(env).token == "file-token"
        assert resolve(env, token="mine").token == "mine"
        assert resolve({}, token_file=str(f)).token == "file-token"

    def test_unreadable_token_file(self, tmp_path: pathlib.Path) -> None:
        with pytest.raises(ValueError, match="token file"):
            resolve({"CONSUL_HTTP_TOKEN_FILE": str(tmp_path / "missing")})

    def test_token_never_in_repr(self) -> None:
        settings = resolve(token="s3cr3t-token")
        assert "s3cr3t" not in repr(settings)
        coord = breaker.ConsulCoord("127.0.0.1:1", token="s3cr3t-token")
        assert "s3cr3t" not in repr(coord)
        coord.close()


class TestTLS:
    def test_verified_by_default(self) -> None:
        assert resolve(addr="https://c:8501").verify is True

    @pytest.mark.parametrize(
        ("value", "verify"),
        [("true", True), ("1", True), ("T", True), ("false", False), ("0", False), ("F", False)],
    )
    def test_ssl_verify_env_parsed_like_go(self, value: str, verify: bool) -> None:
        assert resolve({"CONSUL_HTTP_SSL_VERIFY": value}).verify is verify

    @pytest.mark.parametrize("value", ["yes", "no", "on", "tru", "2"])
    def test_unparseable_ssl_verify_is_an_error_not_insecure(self, value: str) -> None:
        with pytest.raises(ValueError, match="CONSUL_HTTP_SSL_VERIFY"):
            resolve({"CONSUL_HTTP_SSL_VERIFY": value})

    def test_explicit_verify_wins(self) -> None:
        assert resolve({"CONSUL_HTTP_SSL_VERIFY": "false"}, verify=True).verify is True

    def test_ca_file_and_path(self) -> None:
        assert resolve({"CONSUL_CACERT": "/etc/ca.pem"}).verify == "/etc/ca.pem"
        assert resolve({"CONSUL_CAPATH": "/etc/cas"}).verify == "/etc/cas"
        assert resolve({"CONSUL_CACERT": "/env.pem"}, ca_file="/arg.pem").verify == "/arg.pem"
        assert resolve({"CONSUL_CACERT": "/etc/ca.pem"}, verify=False).verify is False

    def test_client_certificate_needs_both_halves(self) -> None:
        env = {"CONSUL_CLIENT_CERT": "/c.pem", "CONSUL_CLIENT_KEY": "/k.pem"}
        assert resolve(env).cert == ("/c.pem", "/k.pem")
        with pytest.raises(ValueError, match="client key"):
            resolve({"CONSUL_CLIENT_CERT": "/c.pem"})


@pytest.mark.parametrize("value", ["1", "t", "T", "TRUE", "true", "True"])
def test_parse_bool_true(value: str) -> None:
    assert parse_bool("X", value) is True


@pytest.mark.parametrize("value", ["0", "f", "F", "FALSE", "false", "False"])
def test_parse_bool_false(value: str) -> None:
    assert parse_bool("X", value) is False


def test_coord_arguments_are_checked() -> None:
    with pytest.raises(ValueError, match="wait"):
        breaker.ConsulCoord("127.0.0.1:1", wait=0)
    with pytest.raises(ValueError, match="wait"):
        breaker.ConsulCoord("127.0.0.1:1", wait=601)
    with pytest.raises(ValueError, match="timeout must be > 0, got 0"):
        breaker.ConsulCoord("127.0.0.1:1", timeout=0)
    # Linux counts keepalive in whole seconds: less than one would mean never.
    with pytest.raises(ValueError, match=r"keepalive must be >= 1 second or None, got 0\.5"):
        breaker.ConsulCoord("127.0.0.1:1", keepalive=0.5)


class TestOneRule:
    """The pytest plugin and ConsulCoord resolve the address, token and TLS the same way."""

    @pytest.mark.parametrize(
        "env",
        [
            {"CONSUL_HTTP_ADDR": "c.internal:8501", "CONSUL_HTTP_SSL": "t"},
            {"CONSUL_HTTP_ADDR": "c.internal:8501", "CONSUL_HTTP_SSL": "TRUE"},
            {"CONSUL_HTTP_ADDR": "http://c.internal:8501", "CONSUL_HTTP_SSL": "1"},
            {"CONSUL_HTTP_ADDR": "https://c.internal/consul/", "CONSUL_HTTP_SSL": "false"},
            {"CONSUL_HTTP_ADDR": "[::1]:8500"},
        ],
    )
    def test_plugin_and_coord_agree(
        self, env: dict[str, str], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        for name in list(os.environ):
            if name.startswith("CONSUL_"):
                monkeypatch.delenv(name)
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        monkeypatch.setenv("CONSUL_HTTP_TOKEN", "env-token")
        coord = breaker.ConsulCoord()
        handle = pytest_plugin.ConsulHandle.from_settings(pytest_plugin.agent_settings())
        assert handle.url == coord.address
        assert handle.token == "env-token" == coord.settings.token
        assert pytest_plugin.agent_settings() == coord.settings
        coord.close()

    def test_plugin_rejects_what_the_coord_rejects(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("CONSUL_HTTP_ADDR", "ftp://consul:8500")
        with pytest.raises(pytest.UsageError, match="unsupported scheme"):
            pytest_plugin.agent_settings()

    def test_plugin_says_it_needs_tcp(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("CONSUL_HTTP_ADDR", "unix:///var/run/consul.sock")
        with pytest.raises(pytest.UsageError, match="unix socket"):
            pytest_plugin.agent_settings()

    def test_both_reach_an_agent_with_mutual_tls_from_the_environment_alone(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        with Impostor(tls=tls_server_context()) as agent:
            for name in list(os.environ):
                if name.startswith("CONSUL_"):
                    monkeypatch.delenv(name)
            monkeypatch.setenv("CONSUL_HTTP_ADDR", agent.addr)
            monkeypatch.setenv("CONSUL_HTTP_SSL", "true")
            monkeypatch.setenv("CONSUL_CACERT", str(TLS / "ca.pem"))
            monkeypatch.setenv("CONSUL_CLIENT_CERT", str(TLS / "client.pem"))
            monkeypatch.setenv("CONSUL_CLIENT_KEY", str(TLS / "client-key.pem"))
            coord = breaker.ConsulCoord(timeout=2)
            handle = pytest_plugin.ConsulHandle.from_settings(pytest_plugin.agent_settings())

            agent.answer(
                200, b'[{"Key": "k", "Value": "dg==", "ModifyIndex": 4}]', {"X-Consul-Index": "4"}
            )
            assert coord.get("k") == (b"v", 4)
            agent.answer(200, b"v")
            assert handle.get("k") == b"v"
            coord.close()
        assert [cn for _, _, cn in agent.requests] == ["breaker-test-client"] * 2

    def test_tls_context_follows_the_settings(self, tmp_path: pathlib.Path) -> None:
        assert resolve(addr="c:1").ssl_context() is None
        insecure = resolve(addr="https://c:1", verify=False).ssl_context()
        assert insecure is not None and insecure.verify_mode == ssl.CERT_NONE
        assert not insecure.check_hostname
        checked = resolve(addr="https://c:1").ssl_context()
        assert checked is not None and checked.verify_mode == ssl.CERT_REQUIRED
        with pytest.raises(FileNotFoundError):
            resolve(addr="https://c:1", ca_file=str(tmp_path / "missing.pem")).ssl_context()


class TestOneDefinition:
    def test_the_options_are_one_typed_dict_both_accept(self) -> None:
        assert set(ConsulOptions.__annotations__) == {
            "token",
            "token_file",
            "ssl",
            "verify",
            "ca_file",
            "ca_path",
            "client_cert",
            "client_key",
            "tls_server_name",
            "namespace",
            "partition",
            "http_auth",
            "datacenter",
            "consistency",
        }
        options: ConsulOptions = {"token": "t", "datacenter": "dc2"}
        coord = breaker.ConsulCoord("c:1", **options)
        assert coord.settings == ConsulSettings.resolve("c:1", environ=os.environ, **options)
        coord.close()

    def test_an_unknown_option_is_a_type_error(self) -> None:
        with pytest.raises(TypeError, match="tokn"):
            breaker.ConsulCoord("c:1", tokn="x")  # type: ignore[call-arg]
        with pytest.raises(TypeError, match="tokn"):
            ConsulSettings.resolve("c:1", tokn="x")  # type: ignore[call-arg]
