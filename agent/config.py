"""Agent configuration: one frozen object, built from flags with ``BAI_AGENT_<FLAG>`` fallbacks."""

from __future__ import annotations

import argparse
import os
import socket
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from bai.agent.accelerators import parse_mock_accelerator
from bai.agent.domain.slots import parse_mem

__all__ = ["DEFAULT_RUNNER_DIR", "AgentConfig", "build_parser", "config_from_args", "parse_argv"]

# The stdlib-only runner next to this package, mounted read-only into every kernel.
DEFAULT_RUNNER_DIR = Path(__file__).resolve().parent / "runner"
ENV_PREFIX = "BAI_AGENT_"
RUNTIMES = ("docker", "simulated")


@dataclass(frozen=True)
class AgentConfig:
    """Everything the agent process needs; defaults are the documented ones."""

    service_token: str
    """Shared internal token: required on calls to us, sent on calls to the manager."""
    agent_id: str = field(default_factory=lambda: f"i-{socket.gethostname()}")
    """Stable id of this agent in the cluster; also labels its containers for re-adoption."""
    listen: str = "127.0.0.1:6001"
    """host:port the AgentService binds to (port 0 picks a free one)."""
    advertise: str | None = None
    """host:port the manager should dial; defaults to the bound listen address."""
    manager: str = "127.0.0.1:8091"
    """host:port of the manager's AgentRegistryService."""
    kernel_root: Path = Path("/tmp/bai-kernels")
    """Host directory holding one scratch dir per kernel; keep it short (Unix socket paths)."""
    cpu: Decimal | None = None
    """CPU cores offered; None = os.cpu_count()."""
    mem: int | None = None
    """Memory bytes offered; None = total RAM."""
    resource_group: str = "default"
    """Resource group (scaling group) the agent joins."""
    runner_dir: Path = DEFAULT_RUNNER_DIR
    """Host folder of the kernel runner, mounted at /opt/bai-runner."""
    kernel_user: str = "1000:1000"
    """uid:gid kernel processes run as (the image user ``work``)."""
    pids_limit: int = 4096
    """Max processes per kernel container."""
    docker_url: str | None = None
    """Docker engine URL; None = aiodocker's default (DOCKER_HOST or the local socket)."""
    runner_ready_timeout_s: float = 20.0
    """How long a new kernel's runner gets to answer its first ping."""
    adopt_ready_timeout_s: float = 5.0
    """How long a re-adopted kernel's runner gets to answer."""
    stop_timeout_s: int = 2
    """Grace (SIGTERM → SIGKILL) when stopping a kernel container."""
    heartbeat_interval_s: float = 5.0
    """Heartbeat interval used until the manager's RegistrationAck sets one."""
    registration_timeout_s: float = 10.0
    """How long to wait for the RegistrationAck before reconnecting."""
    reconnect_initial_s: float = 0.5
    """First reconnect delay to the manager (doubled per failure, with jitter)."""
    reconnect_max_s: float = 10.0
    """Cap of the reconnect delay."""
    shutdown_grace_s: float = 5.0
    """Grace given to in-flight calls on shutdown."""
    runtime: str = "docker"
    """Kernel runtime: "docker", or "simulated" (no containers; see bai.agent.runtime.simulated)."""
    cuda: str = "auto"
    """CUDA plugin: "auto" offers the GPUs NVML finds (none without a driver), "off" none."""
    cuda_shares_per_device: Decimal = Decimal(1)
    """Fractional-GPU shares (``cuda.shares``) one device counts for."""


def _decimal(text: str) -> Decimal:
    try:
        value = Decimal(text)
    except InvalidOperation as exc:
        raise argparse.ArgumentTypeError(f"not a decimal number: {text!r}") from exc
    if not value.is_finite() or value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive: {text!r}")
    return value


def _mem(text: str) -> int:
    try:
        return parse_mem(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def build_parser(env: Mapping[str, str] | None = None) -> argparse.ArgumentParser:
    """``bai.agent`` command line; every flag falls back to ``BAI_AGENT_<FLAG>``."""
    env = os.environ if env is None else env

    def default(flag: str, fallback: str | None = None) -> str | None:
        return env.get(ENV_PREFIX + flag.upper().replace("-", "_"), fallback)

    parser = argparse.ArgumentParser(prog="python -m bai.agent", description="bai agent")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the agent")
    serve.add_argument("--listen", default=default("listen", AgentConfig.listen))
    serve.add_argument("--advertise", default=default("advertise"))
    serve.add_argument("--manager", default=default("manager", AgentConfig.manager))
    token = default("service-token")
    serve.add_argument("--service-token", default=token, required=token is None)
    serve.add_argument("--agent-id", default=default("agent-id", f"i-{socket.gethostname()}"))
    serve.add_argument(
        "--kernel-root", type=Path, default=default("kernel-root", str(AgentConfig.kernel_root))
    )
    serve.add_argument("--cpu", type=_decimal, default=default("cpu"))
    serve.add_argument("--mem", type=_mem, default=default("mem"))
    serve.add_argument(
        "--resource-group", default=default("resource-group", AgentConfig.resource_group)
    )
    serve.add_argument(
        "--runner-dir", type=Path, default=default("runner-dir", str(DEFAULT_RUNNER_DIR))
    )
    serve.add_argument("--docker-url", default=default("docker-url"))
    serve.add_argument(
        "--runtime", choices=RUNTIMES, default=default("runtime", AgentConfig.runtime)
    )
    serve.add_argument("--cuda", choices=("auto", "off"), default=default("cuda", "auto"),
                       help="offer the NVIDIA GPUs NVML discovers as cuda.device/cuda.shares "
                            "slots (auto; none when there is no driver) or none (off)")
    serve.add_argument("--cuda-shares-per-device", type=_decimal,
                       default=default("cuda-shares-per-device", "1"), metavar="SHARES",
                       help="fractional-GPU shares one device counts for (default 1)")
    serve.add_argument("--log-level", default=default("log-level", "INFO"))
    _add_simulate(commands, default)
    return parser


def _add_simulate(commands: Any, default: Callable[..., str | None]) -> None:
    """``simulate``: many simulated agents in one process (see bai.agent.fleet)."""
    sim = commands.add_parser("simulate", help="run many simulated agents in one process")
    sim.add_argument("--manager", default=default("manager", AgentConfig.manager))
    token = default("service-token")
    sim.add_argument("--service-token", default=token, required=token is None)
    sim.add_argument("--count", type=int, default=int(default("count", "10") or 10))
    sim.add_argument("--prefix", default=default("prefix", "sim-"))
    sim.add_argument("--first", type=int, default=int(default("first", "1") or 1))
    sim.add_argument("--cpu", type=_decimal, default=default("cpu", "8"))
    sim.add_argument("--mem", type=_mem, default=default("mem", "32g"))
    sim.add_argument(
        "--resource-group", default=default("resource-group", AgentConfig.resource_group)
    )
    sim.add_argument("--mock-accelerator", type=parse_mock_accelerator,
                     default=default("mock-accelerator"), metavar="DEVICES[:SHARES]",
                     help="offer mock CUDA slots (cuda.device, cuda.shares) on every agent")
    sim.add_argument("--heartbeat-delay", type=float,
                     default=float(default("heartbeat-delay", "0") or 0))
    sim.add_argument("--stats-interval", type=float,
                     default=float(default("stats-interval", "0") or 0),
                     help="print 'fleet stats: registered=R acked=A' to stderr every N seconds "
                          "(0: never); benchmarks read it")
    sim.add_argument("--log-level", default=default("log-level", "WARNING"))


def config_from_args(args: argparse.Namespace) -> AgentConfig:
    """The AgentConfig of parsed ``serve`` arguments."""
    return AgentConfig(
        service_token=args.service_token,
        agent_id=args.agent_id,
        listen=args.listen,
        advertise=args.advertise,
        manager=args.manager,
        kernel_root=Path(args.kernel_root).resolve(),
        cpu=args.cpu,
        mem=args.mem,
        resource_group=args.resource_group,
        runner_dir=Path(args.runner_dir).resolve(),
        docker_url=args.docker_url,
        runtime=args.runtime,
        cuda=args.cuda,
        cuda_shares_per_device=Decimal(args.cuda_shares_per_device),
    )


def parse_argv(
    argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None
) -> argparse.Namespace:
    """Parses the command line (``sys.argv[1:]`` when None); exits with usage on errors."""
    parser = build_parser(env)
    args = parser.parse_args(argv)
    if not args.service_token:
        parser.error("the service token must not be empty")
    return args
