"""Kernels outlive the agent: re-adoption after a restart; nothing is left of failed starts."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import aiodocker
import grpc
import pytest
from agent_harness import containers_of, remove_agent_containers, start_agent, text, wait_until
from bai.agent.domain import KernelState
from bai.common.rpc import error_from_rpc

pytestmark = [pytest.mark.docker, pytest.mark.timeout(60)]


async def test_restarted_agent_adopts_running_kernels(
    kernel_root: Path, docker: aiodocker.Docker
) -> None:
    agent_id = "i-test-" + uuid.uuid4().hex[:8]
    first = await start_agent(agent_id, kernel_root, docker)
    try:
        kernel = (await first.create()).kernel.kernel_id
        dead = (await first.create()).kernel.kernel_id
        batch = (
            await first.create(session_type="batch", startup_command="sleep 1.5; exit 5")
        ).kernel.kernel_id
        await first.execute(kernel, "x = 7")
        await first.stop()  # like an agent shutdown: the kernels keep running

        (details,) = await containers_of(docker, kernel_id=dead)
        await docker.containers.container(details["Id"]).kill()  # dies while nobody watches
        await asyncio.sleep(0.2)

        second = await start_agent(agent_id, kernel_root, docker)
        try:
            states = {k.kernel_id: k.state for k in second.service.list_kernels()}
            assert states == {kernel: KernelState.RUNNING, batch: KernelState.RUNNING}
            assert text(await second.execute(kernel, "print(x)"), "stdout") == "7\n"
            assert await containers_of(docker, kernel_id=dead) == []
            assert not (kernel_root / uuid.UUID(dead).hex[:12]).exists()

            # The batch command ran on while no agent watched; its exit code is not lost.
            async def batch_done() -> bool:
                reports = {k.kernel_id: k for k in second.service.list_kernels()}
                return reports[batch].state is KernelState.TERMINATED

            await wait_until(batch_done, within=10)
            reports = {k.kernel_id: k for k in second.service.list_kernels()}
            assert reports[batch].exit_code == 5

            await second.destroy(kernel)
            assert await containers_of(docker, kernel_id=kernel) == []
        finally:
            await second.stop()
    finally:
        await first.stop()
        await remove_agent_containers(docker, agent_id)


async def test_kernel_that_cannot_start_leaves_nothing(
    kernel_root: Path, docker: aiodocker.Docker, tmp_path: Path
) -> None:
    """No runner in the container: it exits at once; the create fails fast and cleans up."""
    agent_id = "i-test-" + uuid.uuid4().hex[:8]
    broken = await start_agent(agent_id, kernel_root, docker, runner_dir=tmp_path)
    kernel_id = str(uuid.uuid4())
    try:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await broken.create(kernel_id=kernel_id)
        assert err.value.code() == grpc.StatusCode.INTERNAL
        assert error_from_rpc(err.value).reason == "KERNEL_START_FAILED"
        assert "exited with code 2" in (err.value.details() or "")
        assert "runner.py" in (err.value.details() or "")  # python3's complaint, from the log
        assert await containers_of(docker, kernel_id=kernel_id) == []
        assert not (kernel_root / uuid.UUID(kernel_id).hex[:12]).exists()
        assert broken.service.list_kernels() == []
    finally:
        await broken.stop()
        await remove_agent_containers(docker, agent_id)


async def test_readopted_cluster_kernels_remember_whose_network_they_share(
    kernel_root: Path, docker: aiodocker.Docker
) -> None:
    agent_id = "i-test-" + uuid.uuid4().hex[:8]
    first = await start_agent(agent_id, kernel_root, docker)
    try:
        main = (await first.create(cluster_role="main", cluster_idx=1,
                                   cluster_hostnames=["main1", "sub1"])).kernel.kernel_id
        sub = (await first.create(cluster_role="sub", cluster_idx=1,
                                  network_kernel_id=main)).kernel.kernel_id
        await first.stop()

        second = await start_agent(agent_id, kernel_root, docker)
        try:
            kernels = {k.kernel_id: k for k in second.service._kernels.values()}
            assert kernels[sub].network_kernel_id == main
            assert kernels[main].network_kernel_id == ""
            # Both in one batch: the member goes first, the namespace owner last, both cleanly.
            results = await second.service.destroy_kernels([(main, "done"), (sub, "done")])
            assert [(kid, err) for kid, _, err in results] == [(main, ""), (sub, "")]
            assert await containers_of(docker, kernel_id=main) == []
            assert await containers_of(docker, kernel_id=sub) == []
        finally:
            await second.stop()
    finally:
        await first.stop()
        await remove_agent_containers(docker, agent_id)
