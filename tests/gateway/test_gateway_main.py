"""``python -m bai.gateway serve``: flags, env vars, start, graceful stop; the public surface."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import types

import bai.gateway
import httpx
import pytest
from bai.gateway.__main__ import build_parser
from postgres import free_port


def test_public_surface_is_exactly_all() -> None:
    public = {
        name
        for name, value in vars(bai.gateway).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }
    assert public == set(bai.gateway.__all__)


def test_flags_fall_back_to_env_vars(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BAI_GATEWAY_SERVICE_TOKEN", "from-env")
    monkeypatch.setenv("BAI_GATEWAY_MANAGER", "127.0.0.1:9999")
    args = build_parser().parse_args(["serve"])
    assert (args.service_token, args.manager, args.listen) == (
        "from-env", "127.0.0.1:9999", "127.0.0.1:8090",
    )  # fmt: skip
    args = build_parser().parse_args(["serve", "--service-token", "flag", "--listen", "h:1"])
    assert (args.service_token, args.listen) == ("flag", "h:1")


def test_the_service_token_is_required(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BAI_GATEWAY_SERVICE_TOKEN", raising=False)
    with pytest.raises(SystemExit):
        build_parser().parse_args(["serve"])


def test_serves_and_stops_gracefully_on_sigterm() -> None:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "bai.gateway", "serve", "--listen", f"127.0.0.1:{port}",
         "--manager", f"127.0.0.1:{free_port()}", "--service-token", "t"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                probe = httpx.get(f"http://127.0.0.1:{port}/", timeout=1)
                break
            except httpx.TransportError:
                assert proc.poll() is None and time.monotonic() < deadline
                time.sleep(0.1)
        assert probe.json()["version"] == "v9.20250722"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    stderr = proc.stderr.read() if proc.stderr else ""
    assert "gateway forwarding to manager" in stderr
    assert "gateway closed its channel to the manager" in stderr
