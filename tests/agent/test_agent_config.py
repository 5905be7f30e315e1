"""Agent configuration, public surface and layering (no Docker needed)."""

from __future__ import annotations

import ast
import importlib
from decimal import Decimal
from pathlib import Path

import pytest
from bai.agent.config import DEFAULT_RUNNER_DIR, config_from_args, parse_argv
from bai.agent.domain.slots import Capacity, parse_mem, resolve_slots
from bai.common.errors import InvalidArgument, ResourceExhausted

AGENT_DIR = Path(__file__).resolve().parents[2] / "agent"


def test_flags_win_over_env_and_env_fills_in() -> None:
    env = {
        "BAI_AGENT_SERVICE_TOKEN": "from-env",
        "BAI_AGENT_CPU": "3",
        "BAI_AGENT_MEM": "2g",
        "BAI_AGENT_KERNEL_ROOT": "/tmp/bai-k",
    }
    args = parse_argv(["serve", "--agent-id", "i-x", "--cpu", "1.5"], env)
    config = config_from_args(args)
    assert config.service_token == "from-env"
    assert config.cpu == Decimal("1.5")  # the flag wins
    assert config.mem == 2 << 30
    assert config.kernel_root == Path("/tmp/bai-k")
    assert config.agent_id == "i-x"
    assert config.listen == "127.0.0.1:6001" and config.manager == "127.0.0.1:8091"
    assert config.runner_dir == DEFAULT_RUNNER_DIR and (config.runner_dir / "runner.py").exists()


def test_service_token_is_required_and_not_empty() -> None:
    with pytest.raises(SystemExit):
        parse_argv(["serve"], {})
    with pytest.raises(SystemExit):
        parse_argv(["serve", "--service-token", ""], {})


def test_slots() -> None:
    assert parse_mem("512m") == 512 << 20 and parse_mem("1GiB") == 1 << 30
    assert resolve_slots({"cpu": "0.50", "mem": "1g"}) == {"cpu": "0.5", "mem": str(1 << 30)}
    assert resolve_slots({}) == {"cpu": "1", "mem": str(1 << 30)}
    with pytest.raises(InvalidArgument):
        resolve_slots({"cpu": "-1"})
    with pytest.raises(InvalidArgument):
        resolve_slots({"mem": "lots"})
    capacity = Capacity(cpu=Decimal(2), mem=4 << 30)
    capacity.check_fits({"cpu": "1"}, {"cpu": "1", "mem": "1"})
    with pytest.raises(ResourceExhausted):
        capacity.check_fits({"cpu": "1.5"}, {"cpu": "1"})
    with pytest.raises(ResourceExhausted):
        capacity.check_fits({}, {"cuda.device": "1"})


@pytest.mark.parametrize("package", ["bai.agent.domain", "bai.agent.runtime", "bai.agent.api"])
def test_all_is_complete(package: str) -> None:
    module = importlib.import_module(package)
    exported = set(module.__all__)
    public = {name for name in vars(module) if not name.startswith("_")}
    submodules = {n for n in public if type(getattr(module, n)).__name__ == "module"}
    assert exported == public - submodules


def test_domain_imports_no_transport_or_adapter() -> None:
    banned = ("grpc", "aiodocker", "aiohttp", "bai.pb", "bai.agent.api", "bai.agent.runtime")
    for path in (AGENT_DIR / "domain").glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                assert not name.startswith(banned), f"{path.name} imports {name}"
