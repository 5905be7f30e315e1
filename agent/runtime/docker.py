"""DockerKernelRuntime: kernel containers on the local Docker engine, through aiodocker.

Every kernel container is hardened (no network, non-root, no new privileges, no capabilities,
memory without swap, CPU and pid limits) and labelled so that a restarted agent finds it again.
Docker errors are turned into domain errors here, at the border.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import json
import logging
import os
import shutil
import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiodocker
import aiohttp
from aiodocker.exceptions import DockerError
from bai.agent.domain.devices import (
    assignment_from_label,
    assignment_to_label,
    visible_devices_environ,
)
from bai.agent.domain.model import (
    ContainerExit,
    ContainerInfo,
    ContainerSpec,
    ImageInfo,
    LogChunk,
    SessionType,
)
from bai.common.errors import BaiError, InternalError, InvalidArgument, NotFound

__all__ = ["DockerKernelRuntime", "DockerRuntimeConfig", "open_docker_runtime"]

log = logging.getLogger(__name__)

LABEL_MANAGED = "ai.bai.managed"
LABEL_AGENT_ID = "ai.bai.agent-id"
LABEL_KERNEL_ID = "ai.bai.kernel-id"
LABEL_SESSION_ID = "ai.bai.session-id"
LABEL_SLOTS = "ai.bai.slots"
LABEL_SESSION_TYPE = "ai.bai.session-type"
LABEL_DEVICES = "ai.bai.devices"
"""Accelerator devices given to the kernel (``uuid=share,…``), read back on re-adoption."""
RUNNER_MOUNT = "/opt/bai-runner"
SCRATCH_MOUNT = "/run/bai"
RUNNER_CMD = ["python3", f"{RUNNER_MOUNT}/runner.py", "--socket", f"{SCRATCH_MOUNT}/runner.sock"]
# Short engine calls get this deadline; waits and followed logs have none.
ENGINE_TIMEOUT = aiohttp.ClientTimeout(total=60, sock_connect=5)
_LOG_STREAMS = {1: "stdout", 2: "stderr"}


@dataclass(frozen=True)
class DockerRuntimeConfig:
    runner_dir: Path
    """Host folder of the runner, mounted read-only at /opt/bai-runner."""
    kernel_user: str = "1000:1000"
    """uid:gid kernel processes run as."""
    pids_limit: int = 4096
    stop_timeout_s: int = 2
    """SIGTERM → SIGKILL grace when stopping a container."""


@asynccontextmanager
async def open_docker_runtime(
    config: DockerRuntimeConfig, url: str | None = None
) -> AsyncIterator[DockerKernelRuntime]:
    """A runtime on a fresh engine connection, closed on exit (containers stay)."""
    docker = aiodocker.Docker(url=url, timeout=ENGINE_TIMEOUT)
    try:
        yield DockerKernelRuntime(docker, config)
    finally:
        await docker.close()


def _error(exc: DockerError, what: str, reason: str = "CONTAINER_NOT_FOUND") -> BaiError:
    if exc.status == 404:
        return NotFound(f"{what}: {exc.message}", reason=reason)
    return InternalError(f"{what}: [{exc.status}] {exc.message}", reason="CONTAINER_RUNTIME_ERROR")


def _parse_time(text: str | None) -> datetime | None:
    """Docker's RFC 3339 times carry nanoseconds; Python parses microseconds."""
    if not text or text.startswith("0001-"):
        return None
    head, _, rest = text.rstrip("Z").partition(".")
    fraction = "".join(ch for ch in rest if ch.isdigit())[:6]
    try:
        parsed = datetime.fromisoformat(f"{head}.{fraction or '0'}")
    except ValueError:
        return None
    return parsed.replace(tzinfo=UTC)


class DockerKernelRuntime:
    """:class:`bai.agent.domain.ports.ContainerRuntime` on Docker."""

    def __init__(self, docker: aiodocker.Docker, config: DockerRuntimeConfig) -> None:
        self._docker = docker
        self._config = config

    # ----- create / destroy / restart -------------------------------------------------

    async def create(self, spec: ContainerSpec) -> ContainerInfo:
        await self._require_image(spec.image)
        name = f"bai-kernel-{spec.kernel_id}"
        container_id = ""
        try:
            await asyncio.to_thread(self._prepare_mounts, spec)
            await asyncio.to_thread(self._prepare_scratch, spec.scratch_dir)
            config = self._container_config(spec)
            container = await self._docker.containers.create(config, name=name)
            container_id = container.id
            await container.start()
            info = self._info(await container.show())
        except BaseException as exc:
            # A name conflict means the container is someone else's: leave it alone.
            if not (isinstance(exc, DockerError) and exc.status == 409):
                # By name too: a create cancelled mid-request may have made a container we
                # never saw.
                await asyncio.shield(self._cleanup(container_id or name, spec.scratch_dir))
            if isinstance(exc, DockerError):
                raise _error(exc, f"starting kernel {spec.kernel_id}") from exc
            raise
        log.info("container %s: started for kernel %s", info.container_id[:12], spec.kernel_id)
        return info

    async def destroy(self, container_id: str, scratch_dir: Path) -> int | None:
        exit_code: int | None = None
        container = self._docker.containers.container(container_id)
        try:
            await container.stop(t=self._config.stop_timeout_s, timeout=ENGINE_TIMEOUT)
            exit_code = int((await container.show())["State"]["ExitCode"])
            await container.delete(force=True)
        except DockerError as exc:
            if exc.status != 404:
                raise _error(exc, f"removing container {container_id}") from exc
        await asyncio.to_thread(shutil.rmtree, scratch_dir, True)
        return exit_code

    async def _cleanup(self, container_id: str, scratch_dir: Path) -> None:
        try:
            await self.destroy(container_id, scratch_dir)
        except BaiError:
            log.exception("container %s: cleanup after a failed start failed", container_id)

    async def restart(self, container_id: str) -> ContainerInfo:
        container = self._docker.containers.container(container_id)
        try:
            await container.restart(t=self._config.stop_timeout_s, timeout=ENGINE_TIMEOUT)
            return self._info(await container.show())
        except DockerError as exc:
            raise _error(exc, f"restarting container {container_id}") from exc

    async def wait_exit(self, container_id: str) -> ContainerExit:
        container = self._docker.containers.container(container_id)
        try:
            result = await container.wait(timeout=None)
            state = (await container.show())["State"]
        except DockerError as exc:
            if exc.status == 404:  # removed behind our back: it is gone all the same
                return ContainerExit(exit_code=-1)
            raise _error(exc, f"waiting for container {container_id}") from exc
        except aiohttp.ClientError as exc:
            raise InternalError(f"waiting for container {container_id}: {exc!r}") from exc
        code = int(result.get("StatusCode", state.get("ExitCode", -1)))
        return ContainerExit(exit_code=code, oom_killed=bool(state.get("OOMKilled")))

    # ----- logs -----------------------------------------------------------------------

    async def logs(self, container_id: str, *, follow: bool, tail: int) -> AsyncIterator[LogChunk]:
        params = {
            "stdout": "1",
            "stderr": "1",
            "follow": "1" if follow else "0",
            "tail": str(tail) if tail > 0 else "all",
        }
        try:
            async with self._docker._query(
                f"containers/{container_id}/logs", params=params, timeout=None
            ) as response:
                async for chunk in _demultiplex(response):
                    yield chunk
        except DockerError as exc:
            raise _error(exc, f"logs of container {container_id}") from exc

    # ----- discovery ------------------------------------------------------------------

    async def list_managed(self, agent_id: str) -> list[ContainerInfo]:
        labels = [f"{LABEL_MANAGED}=1", f"{LABEL_AGENT_ID}={agent_id}"]
        try:
            found = await self._docker.containers.list(
                all=True, filters=json.dumps({"label": labels})
            )
            infos = [self._info(await c.show()) for c in found]
        except DockerError as exc:
            raise _error(exc, "listing kernel containers") from exc
        return infos

    async def list_images(self) -> list[ImageInfo]:
        try:
            summaries = await self._docker.images.list()
            images: list[ImageInfo] = []
            for summary in summaries:
                tags = [t for t in summary.get("RepoTags") or [] if t != "<none>:<none>"]
                if not tags:
                    continue
                details = await self._docker.images.inspect(summary["Id"])
                images.extend(
                    ImageInfo(
                        ref=tag,
                        digest=str(summary["Id"]),
                        labels=dict((details.get("Config") or {}).get("Labels") or {}),
                        size_bytes=int(summary.get("Size") or 0),
                        architecture=str(details.get("Architecture", "")),
                    )
                    for tag in tags
                )
        except DockerError as exc:
            raise _error(exc, "listing images") from exc
        return images

    # ----- internals ------------------------------------------------------------------

    async def _require_image(self, image: str) -> None:
        """No registry is reachable: an image that is not here is an error, never a pull."""
        try:
            await self._docker.images.inspect(image)
        except DockerError as exc:
            raise _error(exc, f"image {image!r} is not present locally", "IMAGE_NOT_FOUND") from exc

    def _prepare_mounts(self, spec: ContainerSpec) -> None:
        """Lets the kernel user write into read-write vfolder roots (best effort)."""
        uid, _, gid = self._config.kernel_user.partition(":")
        for mount in spec.mounts:
            path = Path(mount.host_path)
            if not path.is_dir():
                raise InvalidArgument(f"mount source {mount.host_path} is not a directory",
                                      reason="INVALID_MOUNT")
            if mount.read_only:
                continue
            try:
                os.chown(path, int(uid), int(gid or uid))
            except PermissionError:
                with contextlib.suppress(PermissionError):
                    os.chmod(path, 0o777)

    def _prepare_scratch(self, path: Path) -> None:
        path.mkdir(parents=True, exist_ok=True)
        uid, _, gid = self._config.kernel_user.partition(":")
        try:
            os.chown(path, int(uid), int(gid or uid))
            os.chmod(path, 0o700)
        except PermissionError:  # not root: let the kernel user in anyway
            os.chmod(path, 0o777)

    def _container_config(self, spec: ContainerSpec) -> dict[str, Any]:
        env = {
            **spec.environ,
            "BACKENDAI_KERNEL_ID": spec.kernel_id,
            "BACKENDAI_SESSION_ID": spec.session_id,
            "BACKENDAI_SESSION_TYPE": spec.session_type.value,
            "BACKENDAI_CLUSTER_ROLE": spec.cluster_role,
            "BACKENDAI_CLUSTER_IDX": str(spec.cluster_idx),
            "BACKENDAI_CLUSTER_HOST": f"{spec.cluster_role}{spec.cluster_idx}",
            **visible_devices_environ(spec.devices),
        }
        # Docker refuses more CPUs than the host has, whatever capacity the agent announces.
        cpus = min(Decimal(spec.cpu), Decimal(os.cpu_count() or 1))
        return {
            "Image": spec.image,
            "Cmd": RUNNER_CMD,
            "User": self._config.kernel_user,
            "Env": [f"{key}={value}" for key, value in env.items()],
            "Labels": {
                LABEL_MANAGED: "1",
                LABEL_AGENT_ID: spec.agent_id,
                LABEL_KERNEL_ID: spec.kernel_id,
                LABEL_SESSION_ID: spec.session_id,
                LABEL_SLOTS: json.dumps(spec.slots, sort_keys=True),
                LABEL_SESSION_TYPE: spec.session_type.value,
                **({LABEL_DEVICES: assignment_to_label(spec.devices)} if spec.devices else {}),
            },
            "Tty": False,
            "OpenStdin": False,
            "HostConfig": {
                **self._network_config(spec),
                "Memory": spec.mem,
                "MemorySwap": spec.mem,
                "NanoCpus": int(cpus * 1_000_000_000),
                "PidsLimit": self._config.pids_limit,
                "SecurityOpt": ["no-new-privileges"],
                "CapDrop": ["ALL"],
                **_device_requests(spec),
                "Binds": [
                    f"{self._config.runner_dir}:{RUNNER_MOUNT}:ro",
                    f"{spec.scratch_dir}:{SCRATCH_MOUNT}:rw",
                    *(f"{m.host_path}:{m.container_path}:{'ro' if m.read_only else 'rw'}"
                      for m in spec.mounts),
                ],
            },
        }

    @staticmethod
    def _network_config(spec: ContainerSpec) -> dict[str, Any]:
        """No network at all, or (cluster sessions) the main kernel's namespace. Docker shares
        the joined container's /etc/hosts, so only the main kernel's carries the cluster
        hostnames (all 127.0.0.1: the kernels share one loopback)."""
        if spec.network_container_id:
            return {"NetworkMode": f"container:{spec.network_container_id}"}
        hosts = [f"{name}:127.0.0.1" for name in spec.cluster_hostnames]
        return {"NetworkMode": "none", **({"ExtraHosts": hosts} if hosts else {})}

    @staticmethod
    def _info(details: dict[str, Any]) -> ContainerInfo:
        labels: dict[str, str] = (details.get("Config") or {}).get("Labels") or {}
        state = details.get("State") or {}
        try:
            slots = {str(k): str(v) for k, v in json.loads(labels.get(LABEL_SLOTS, "{}")).items()}
        except (ValueError, AttributeError):
            slots = {}
        try:
            session_type = SessionType(labels.get(LABEL_SESSION_TYPE, "interactive"))
        except ValueError:
            session_type = SessionType.INTERACTIVE
        return ContainerInfo(
            container_id=str(details["Id"]),
            kernel_id=labels.get(LABEL_KERNEL_ID, ""),
            session_id=labels.get(LABEL_SESSION_ID, ""),
            image=str((details.get("Config") or {}).get("Image", "")),
            slots=slots,
            session_type=session_type,
            running=bool(state.get("Running")),
            started_at=_parse_time(state.get("StartedAt")),
            exit_code=None if state.get("Running") else int(state.get("ExitCode", -1)),
            devices=assignment_from_label(labels.get(LABEL_DEVICES, "")),
            network_container_id=_joined_container(details),
        )


def _joined_container(details: dict[str, Any]) -> str:
    """The container whose network namespace this one joined ("" for its own)."""
    mode = str((details.get("HostConfig") or {}).get("NetworkMode") or "")
    return mode.removeprefix("container:") if mode.startswith("container:") else ""


def _device_requests(spec: ContainerSpec) -> dict[str, Any]:
    """Docker's request for the NVIDIA container toolkit to attach these GPUs (by UUID)."""
    if not spec.devices:
        return {}
    return {"DeviceRequests": [{
        "Driver": "nvidia",
        "DeviceIDs": sorted(spec.devices),
        "Capabilities": [["gpu", "compute", "utility"]],
    }]}


async def _demultiplex(response: aiohttp.ClientResponse) -> AsyncIterator[LogChunk]:
    """Docker's log framing for non-TTY containers: 8-byte header (stream, size), payload."""
    decoders = {
        name: codecs.getincrementaldecoder("utf-8")(errors="replace")
        for name in _LOG_STREAMS.values()
    }
    while True:
        try:
            header = await response.content.readexactly(8)
            kind, size = struct.unpack(">BxxxL", header)
            payload = await response.content.readexactly(size)
        except asyncio.IncompleteReadError:
            return
        stream = _LOG_STREAMS.get(kind)
        if stream is None:
            continue
        text = decoders[stream].decode(payload)
        if text:
            yield LogChunk(stream=stream, data=text)
