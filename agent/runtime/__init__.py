"""Adapters of the agent: Docker containers, kernel runners, host facts."""

from bai.agent.domain.ports import ContainerRuntime, KernelRunner
from bai.agent.runtime.docker import DockerKernelRuntime, DockerRuntimeConfig, open_docker_runtime
from bai.agent.runtime.host import architecture, node_capacity, total_memory
from bai.agent.runtime.runner import UnixSocketRunner, connect_runner

__all__ = [
    "ContainerRuntime",
    "DockerKernelRuntime",
    "DockerRuntimeConfig",
    "KernelRunner",
    "UnixSocketRunner",
    "architecture",
    "connect_runner",
    "node_capacity",
    "open_docker_runtime",
    "total_memory",
]
