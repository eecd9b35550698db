"""The README's examples run as written, and so do the scripts in examples/."""

from __future__ import annotations

import pathlib
import re
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent


def python_blocks(text: str) -> list[str]:
    blocks = []
    for match in re.finditer(r"^\.\. code-block:: python\n\n((?:    .*\n|\n)+)", text, re.M):
        lines = match.group(1).splitlines()
        blocks.append("\n".join(line[4:] for line in lines))
    return blocks


def test_readme_python_blocks_run_in_order() -> None:
    blocks = python_blocks((ROOT / "README.rst").read_text())
    assert len(blocks) >= 5
    namespace: dict[str, object] = {"__name__": "readme"}
    for i, block in enumerate(blocks):
        exec(compile(block, f"README.rst block {i + 1}", "exec"), namespace)


def test_readme_quick_start_is_two_commands() -> None:
    text = (ROOT / "README.rst").read_text()
    section = text.split("Quick start\n===========\n", 1)[1]
    block = section.split("::\n\n", 1)[1].split("\n\n", 1)[0]
    assert [line.strip() for line in block.splitlines()] == [
        "python3 tasks.py demo",
        "python3 tasks.py test",
    ]


def run_example(name: str) -> str:
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / name)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_payments_demo_shows_the_whole_life_of_a_breaker() -> None:
    out = run_example("payments_client.py")
    milestones = [
        "started breaker.testing.ConsulServer",
        "policy read from Consul at start-up: Policy(failure_threshold=3",
        "the downstream is healthy",
        "[closed   ] order  1: ch_0001",
        "closed -> open",
        "[open     ] order  7: queued (breaker open",
        "not sent",
        "PUT config/dev/checkout/breakers/payments.json",
        "the live breaker adopted it",
        "the live breaker now uses Policy(failure_threshold=5, success_threshold=3, "
        "open_state_timeout=0.5); still open",
        "open -> half-open",
        "[half-open] order 11: ch_0011",
        "half-open -> closed",
        "[closed   ] order 15: ch_0015",
        "mode auto -> forced-open",
        "order 16: queued (breaker forced open, retry in ",
        "not sent",
        "mode forced-open expired",
        "the breaker reads half-open, mode auto",
        "[half-open] order 18: ch_0018",
        "half-open -> closed",
    ]
    position = 0
    for milestone in milestones:
        found = out.find(milestone, position)
        assert found >= 0, f"missing or out of order: {milestone!r}\n{out}"
        position = found


def test_async_example() -> None:
    out = run_example("async_client.py")
    assert "200 concurrent lookups took" in out
    assert "guard rejected the block" in out
    assert "breaker: closed | stock: 7" in out


def test_load_protection_example_frees_workers_and_trips_while_calls_hang() -> None:
    out = run_example("load_protection.py")
    for line in (
        "a fifth call: turned away (bulkhead full)",
        "tripped while 4 calls still hang",
        "a new call: rejected (breaker open)",
        "the downstream answers again: ['charged 2', 'charged 3', 'charged 4', 'charged 5']",
        "a trial call: charged 8 - breaker closed",
    ):
        assert line in out, out


def test_tenacity_example_keeps_the_breaker_outside_the_retry() -> None:
    pytest.importorskip("tenacity")
    out = run_example("with_tenacity.py")
    assert "call 1: failed after 3 attempts" in out
    assert "call 3: rejected by the breaker (open); attempts made: 0" in out


def in_order(out: str, milestones: list[str]) -> None:
    position = 0
    for milestone in milestones:
        found = out.find(milestone, position)
        assert found >= 0, f"missing or out of order: {milestone!r}\n{out}"
        position = found


def test_httpx_example_counts_5xx_and_rejects_without_sending() -> None:
    pytest.importorskip("httpx")
    in_order(
        run_example("httpx_client.py"),
        [
            "GET -> 200 7 in stock  breaker: closed",
            "GET -> 503 overloaded  breaker: open",
            "GET -> not sent: breaker '127.0.0.1:",
            "the inventory service received 4 requests of 5",
            "half-open -> closed",
            "GET -> 200 7 in stock  breaker: closed",
            "httpx.AsyncClient with AsyncBreakerTransport: 200",
        ],
    )


def test_requests_example_rejects_with_a_requests_error() -> None:
    pytest.importorskip("requests")
    in_order(
        run_example("requests_client.py"),
        [
            "order 1: 200  breaker: closed",
            "order 3: 429  breaker: open",
            "order 4: rejected: breaker 'payments' is open",
            "the payments API received 3 of 4 charges",
            "order 5: 200  breaker: closed",
        ],
    )


def test_grpc_example_keeps_a_healthy_target_working_sync_and_aio() -> None:
    pytest.importorskip("grpc")
    in_order(
        run_example("grpc_client.py"),
        [
            "eu: Reserve(sku-404) -> NOT_FOUND: no such sku sku-404  breaker: closed",
            "eu: Reserve(sku-1) -> UNAVAILABLE: eu is restarting  breaker: open",
            "us: Reserve(sku-1) -> reserved sku-1 in us  breaker: closed",
            "eu: Reserve(sku-1) -> not sent: UNAVAILABLE, breaker open",
            "us: Reserve(sku-1) -> reserved sku-1 in us  breaker: closed",
            "a future to eu while its breaker is open is already done: True",
            "the eu replica received 5 of 7 calls; us received 4",
            "eu: Reserve(sku-1) -> reserved sku-1 in eu  breaker: closed",
            "us breaker: closed, {'success': 4, 'failure': 0",
            "grpc.aio with aio_insecure_channel(): reserved sku-1 in us",
        ],
    )


def test_web_app_example_answers_503_with_retry_after() -> None:
    pytest.importorskip("flask")
    pytest.importorskip("starlette")
    out = run_example("web_app.py")
    for framework in ("flask", "starlette"):
        in_order(
            out,
            [
                f"{framework:9} GET /checkout -> 200",
                f"{framework:9} GET /checkout -> 502",
                f"{framework:9} GET /checkout -> 503  Retry-After: 30",
                '{"detail":"Service Unavailable"}',
                f"{framework:9} GET /breakers -> open",
            ],
        )


def test_patch_example_patches_on_import_and_restores() -> None:
    in_order(
        run_example("patch_client.py"),
        [
            "before the import: <Patch 'vendor_sms:Client.send' breaker='sms' waiting for import>",
            "after the import:  <Patch 'vendor_sms:Client.send' breaker='sms' applied>",
            "send -> queued for +15550100",
            "send -> rejected, not sent: breaker 'sms' is open",
            "the gateway saw 3 of 4 sends",
            "Client.__dict__['send'] is a function",
        ],
    )
