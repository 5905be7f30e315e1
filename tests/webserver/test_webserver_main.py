"""``python -m bai.webserver``: help, flag validation, and the package's public surface."""

from __future__ import annotations

import subprocess
import sys

import bai.webserver
import pytest
from bai.webserver.__main__ import main


def test_help_runs_as_a_module() -> None:
    out = subprocess.run([sys.executable, "-m", "bai.webserver", "serve", "--help"],
                         capture_output=True, text=True, check=True)
    assert "--gateway" in out.stdout and "--redis-url" in out.stdout


@pytest.mark.parametrize(("argv", "error"), [
    (["serve", "--listen", "nonsense"], "--listen: expected HOST:PORT"),
    (["serve", "--gateway", "ftp://x"], "--gateway: the gateway URL must be http(s)"),
    (["serve", "--session-max-age", "0"], "--session-max-age must be positive"),
])
def test_bad_flags_exit_2_with_the_reason(argv: list[str], error: str,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    assert error in capsys.readouterr().err


def test_public_surface() -> None:
    for name in bai.webserver.__all__:
        assert getattr(bai.webserver, name) is not None
    assert sorted(bai.webserver.__all__) == ["SESSION_COOKIE", "WebserverConfig", "create_app"]
