"""The shared client: connection options, Consul's errors, tokens, timeouts."""

from __future__ import annotations

import io
import pathlib
from typing import Literal

import pytest

from breaker._cli import EXIT_ERROR, EXIT_OK, _client, main
from breaker._cli._app import CLIError, build_parser
from breaker._cli._client import consul_settings
from breaker.coord.consul import ConsulOptions
from breaker.testing import ConsulServer

from .support import (
    PATH,
    PREFIX,
    Result,
    Run,
    stored,
)

# -- the options' table -----------------------------------------------------------------------


def test_every_consul_setting_is_an_option() -> None:
    help_text = build_parser().parse_known_args(["ls", "--path", "p/"])[0]
    names = [name for name, _ in consul_settings()]
    assert names == list(ConsulOptions.__annotations__)
    for name in names:
        assert hasattr(help_text, name), name
    args = build_parser().parse_args(["ls", "--path", "p/", "--no-verify", "--token-file", "t"])
    assert (args.verify, args.ssl, args.token_file) == (False, None, "t")


def test_a_new_consul_setting_is_one_line_away(monkeypatch: pytest.MonkeyPatch) -> None:
    class Grown(ConsulOptions, total=False):
        tls_server_name: str | None
        consistency: Literal["default", "consistent", "stale"] | None
        wait_index: int | None

    monkeypatch.setattr(_client, "ConsulOptions", Grown)
    monkeypatch.setitem(_client._HELP, "tls_server_name", "the name Consul's certificate holds")
    parser = build_parser()
    sub = parser._subparsers._group_actions[0].choices["ls"]  # type: ignore[union-attr]
    assert "the name Consul's certificate holds" in sub.format_help()
    args = parser.parse_args(
        ["ls", "--path", "p/", "--tls-server-name", "consul.internal", "--consistency", "stale"]
    )
    seen: dict[str, object] = {}

    class Coord:
        def __init__(self, addr: str | None, **options: object) -> None:
            seen.update(options, addr=addr)

    monkeypatch.setattr("breaker.coord.consul.ConsulCoord", Coord)
    _client._connect(args)
    assert seen == {"addr": None, "tls_server_name": "consul.internal", "consistency": "stale"}
    with pytest.raises(CLIError, match="invalid choice: 'eventual'"):
        parser.parse_args(["ls", "--path", "p/", "--consistency", "eventual"])


# -- errors ------------------------------------------------------------------------------------


@pytest.mark.consul
class TestConsulErrors:
    def test_consul_down(self, cli: Run, env: ConsulServer) -> None:
        env.stop()
        for argv in (
            ("ls", "--path", PATH),
            ("get", "--path", PATH, "payments"),
            ("rm", "--path", PATH, "payments"),
            ("release", "--path", PATH, "payments"),
            ("watch", "--path", PATH),
        ):
            result = cli(*argv)
            assert result == Result(
                EXIT_ERROR,
                "",
                f"breaker: error: cannot reach Consul at http://{env.addr}: [Errno 111] "
                "Connection refused\n",
            ), argv
        result = cli("put", "--path", PATH, "payments", "-", stdin="{}")
        assert result.code == EXIT_ERROR and "cannot reach Consul" in result.err

    def test_addr_wins_over_the_environment(
        self, cli: Run, env: ConsulServer, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("CONSUL_HTTP_ADDR", "127.0.0.1:1")
        assert cli("ls", "--path", PATH).code == EXIT_ERROR
        assert cli("ls", "--path", PATH, "--addr", env.addr).code == EXIT_OK

    def test_bad_settings_are_one_clear_error(
        self, cli: Run, env: ConsulServer, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("CONSUL_HTTP_SSL", "maybe")
        result = cli("ls", "--path", PATH)
        assert result == Result(
            EXIT_ERROR,
            "",
            "breaker: error: Consul settings: CONSUL_HTTP_SSL='maybe' is not a boolean (use "
            "true/false, 1/0, t/f)\n",
        )
        monkeypatch.delenv("CONSUL_HTTP_SSL")
        result = cli("ls", "--path", PATH, "--token-file", "/nonexistent/token")
        assert result.code == EXIT_ERROR
        assert "cannot read the Consul token file '/nonexistent/token'" in result.err


@pytest.mark.consul
@pytest.mark.fault_injection
class TestTokens:
    def test_a_bad_token_is_a_clear_error(self, cli: Run, acl_server: ConsulServer) -> None:
        for argv in (
            ("ls", "--path", PATH, "--token", "wrong"),
            ("get", "--path", PATH, "payments", "--token", "wrong"),
            ("force-open", "--path", PATH, "payments", "--for", "5m", "--token", "wrong"),
        ):
            result = cli(*argv)
            assert result == Result(
                EXIT_ERROR,
                "",
                "breaker: error: HTTP 403 permission denied (ACL not found): check the ACL token\n",
            ), argv
        assert stored(acl_server, "payments") == {"failureThreshold": 3}

    def test_a_read_only_token_can_read_but_not_write(
        self, cli: Run, acl_server: ConsulServer
    ) -> None:
        assert cli("ls", "--path", PATH, "--token", "read-token").code == EXIT_OK
        result = cli("put", "--path", PATH, "payments", "-", "--token", "read-token", stdin="{}")
        assert result.code == EXIT_ERROR
        # One transaction, the document and its history entry: Consul names every refusal.
        assert result.err.startswith(
            f"breaker: error: Consul refused to change {PREFIX}payments.json (nothing written): "
            "Permission denied: token with AccessorID "
        )
        assert result.err.count("lacks permission 'key:write'") == 2
        assert result.err.endswith(
            f"; check the ACL token: a change needs key write on {PREFIX}payments.json and on "
            "the history prefix config/dev/checkout/breakers-history/\n"
        )
        assert "Traceback" not in result.err
        assert stored(acl_server, "payments") == {"failureThreshold": 3}

    def test_the_token_comes_from_the_environment_and_the_option_wins(
        self,
        cli: Run,
        acl_server: ConsulServer,
        monkeypatch: pytest.MonkeyPatch,
        tmp_path: pathlib.Path,
    ) -> None:
        monkeypatch.setenv("CONSUL_HTTP_TOKEN", "ops-token")
        assert cli("force-open", "--path", PATH, "payments", "--for", "5m").code == EXIT_OK
        assert (
            cli("release", "--path", PATH, "payments", "--token", "read-token").code == EXIT_ERROR
        )
        token_file = tmp_path / "token"
        token_file.write_text("wrong\n")
        monkeypatch.setenv("CONSUL_HTTP_TOKEN_FILE", str(token_file))  # preferred to the variable
        assert cli("ls", "--path", PATH).code == EXIT_ERROR
        token_file.write_text("ops-token\n")
        assert cli("release", "--path", PATH, "payments").code == EXIT_OK
        tokens = {r.headers.get("x-consul-token") for r in acl_server.requests_log}
        assert tokens == {"ops-token", "read-token", "wrong"}
        assert all("token" not in r.query for r in acl_server.requests_log)


@pytest.mark.consul
@pytest.mark.fault_injection
def test_timeout_bounds_a_request_to_a_hanging_consul(env: ConsulServer) -> None:
    env.hang()
    out, err = io.StringIO(), io.StringIO()
    argv = ["ls", "--path", PATH, "--addr", env.addr, "--timeout", "250ms"]
    assert main(argv, stdout=out, stderr=err) == EXIT_ERROR
    assert err.getvalue().startswith("breaker: error: no answer from Consul")
    assert "0.25s" in err.getvalue()
