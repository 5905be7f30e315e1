"""vfolder mounts in CreateKernelRequest: validation and Docker bind options."""

from __future__ import annotations

from pathlib import Path

import pytest
from bai.agent.api.convert import kernel_request_from_proto
from bai.agent.domain.model import Mount
from bai.common.errors import InvalidArgument
from bai.pb.agent.v1 import agent_service_pb2 as pb

KID, SID = "00000000-0000-0000-0000-000000000001", "00000000-0000-0000-0000-000000000002"


def test_mounts_are_converted() -> None:
    request = kernel_request_from_proto(pb.CreateKernelRequest(
        kernel_id=KID, session_id=SID, image="img", mounts=[
            pb.Mount(host_path="/data/a", container_path="/home/work/a", read_only=True)]))
    assert request.mounts == (Mount("/data/a", "/home/work/a", True),)


@pytest.mark.parametrize(("host", "container"), [
    ("relative", "/home/work/a"), ("/data/a", "home/work/a"), ("/data/a", "/home/work/../etc"),
    ("/data/a", "/run/bai"), ("/data/a", "/opt/bai-runner/x"), ("/data/a", "/home/work"),
    ("/data/a", "/"), ("/data/a:/etc", "/home/work/a"),
])
def test_bad_mounts_are_invalid_argument(host: str, container: str) -> None:
    with pytest.raises(InvalidArgument):
        Mount(host, container)


def test_docker_binds_carry_ro(tmp_path: Path) -> None:
    from bai.agent.domain.model import ContainerSpec, SessionType
    from bai.agent.runtime.docker import DockerKernelRuntime, DockerRuntimeConfig

    spec = ContainerSpec(
        kernel_id=KID, session_id=SID, agent_id="a", image="img", cpu="1", mem=1 << 28,
        slots={}, environ={}, session_type=SessionType.INTERACTIVE, cluster_role="main",
        cluster_idx=1, scratch_dir=tmp_path,
        mounts=(Mount("/v/a", "/home/work/a", True), Mount("/v/b", "/home/work/b", False)))
    runtime = DockerKernelRuntime(None, DockerRuntimeConfig(runner_dir=Path("/r")))  # type: ignore[arg-type]
    binds = runtime._container_config(spec)["HostConfig"]["Binds"]
    assert binds[-2:] == ["/v/a:/home/work/a:ro", "/v/b:/home/work/b:rw"]
