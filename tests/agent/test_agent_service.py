"""AgentService over a real grpc.aio server, real Docker containers and the real runner."""

from __future__ import annotations

import asyncio
import os
import uuid
from pathlib import Path

import aiodocker
import grpc
import pytest
from agent_harness import IMAGE, Agent, containers_of, duration, text, wait_until
from bai.agent.domain import KernelEvent, KernelEventKind
from bai.common.rpc import error_from_rpc
from bai.pb.agent.v1 import agent_service_pb2 as pb
from bai.pb.agent.v1 import kernel_pb2

pytestmark = [pytest.mark.docker, pytest.mark.timeout(60)]


@pytest.fixture(scope="module")
async def kernel(agent: Agent) -> str:
    """One interactive kernel shared by the tests that leave it usable."""
    response = await agent.create()
    return response.kernel.kernel_id


def reason(err: grpc.aio.AioRpcError) -> str:
    return error_from_rpc(err).reason


async def test_create_answers_with_a_running_kernel(agent: Agent, kernel: str) -> None:
    listed = await agent.stub.ListKernels(
        pb.ListKernelsRequest(), metadata=agent.metadata(), timeout=5
    )
    (found,) = [k for k in listed.kernels if k.kernel_id == kernel]
    assert found.state == kernel_pb2.Kernel.STATE_RUNNING
    assert found.container_id and found.image == IMAGE
    assert found.slots == {"cpu": "1", "mem": str(256 << 20)}
    assert found.start_time.seconds > 0


async def test_query_state_persists_and_streams_are_separate(agent: Agent, kernel: str) -> None:
    first = await agent.execute(kernel, "x = 20")
    assert first[-1].finished and first[-1].exit_code == 0
    second = await agent.execute(kernel, "print(x + 22)")
    assert text(second, "stdout") == "42\n"
    assert second[-1].finished and second[-1].run_id == second[0].run_id
    mixed = await agent.execute(kernel, "import sys; print('out'); print('err', file=sys.stderr)")
    assert text(mixed, "stdout") == "out\n"
    assert text(mixed, "stderr") == "err\n"


async def test_exception_and_batch_mode(agent: Agent, kernel: str) -> None:
    failed = await agent.execute(kernel, "1 / 0")
    assert failed[-1].exit_code == 1
    assert "ZeroDivisionError" in text(failed, "exception")
    batch = await agent.execute(kernel, "echo hi; exit 4", mode=pb.EXECUTION_MODE_BATCH)
    assert text(batch, "stdout") == "hi\n"
    assert batch[-1].finished and batch[-1].exit_code == 4


async def test_max_wait_returns_continued_then_continue_finishes(agent: Agent, kernel: str) -> None:
    code = "import time; print(1); time.sleep(2); print(2)"
    first = await agent.execute(kernel, code, max_wait=0.5)
    assert first[-1].continued and not first[-1].finished
    assert text(first, "stdout") == "1\n"
    run_id = first[-1].run_id
    rest = await agent.execute(kernel, mode=pb.EXECUTION_MODE_CONTINUE, run_id=run_id)
    assert text(rest, "stdout") == "2\n"
    assert rest[-1].finished and rest[-1].run_id == run_id
    with pytest.raises(grpc.aio.AioRpcError) as err:  # finished and read: dropped
        await agent.execute(kernel, mode=pb.EXECUTION_MODE_CONTINUE, run_id=run_id)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    assert reason(err.value) == "RUN_NOT_FOUND"


async def test_input_round_trip(agent: Agent, kernel: str) -> None:
    asked = await agent.execute(kernel, "name = input('who? '); print('hi', name)")
    assert asked[-1].waiting_input and asked[-1].continued and asked[-1].data == "who? "
    answered = await agent.execute(
        kernel, "bob", mode=pb.EXECUTION_MODE_INPUT, run_id=asked[-1].run_id
    )
    assert text(answered, "stdout") == "hi bob\n"
    assert answered[-1].finished and answered[-1].exit_code == 0


async def test_busy_interrupt_and_timeout(agent: Agent, kernel: str) -> None:
    sleeping = await agent.execute(kernel, "import time; time.sleep(30)", max_wait=0.2)
    assert sleeping[-1].continued
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await agent.execute(kernel, "print(1)")
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert reason(err.value) == "KERNEL_BUSY"
    await agent.stub.InterruptKernel(
        pb.InterruptKernelRequest(kernel_id=kernel), metadata=agent.metadata(), timeout=5
    )
    rest = await agent.execute(kernel, mode=pb.EXECUTION_MODE_CONTINUE, run_id=sleeping[-1].run_id)
    assert rest[-1].finished and "KeyboardInterrupt" in text(rest, "exception")
    timed = await agent.execute(kernel, "while True: pass", limit=0.3)
    assert timed[-1].finished and timed[-1].timed_out and timed[-1].exit_code != 0


async def test_bad_requests(agent: Agent, kernel: str) -> None:
    cases = [
        (pb.ExecuteRequest(kernel_id=kernel), grpc.StatusCode.INVALID_ARGUMENT),
        (
            pb.ExecuteRequest(kernel_id=str(uuid.uuid4()), mode=pb.EXECUTION_MODE_QUERY),
            grpc.StatusCode.NOT_FOUND,
        ),
        (
            pb.ExecuteRequest(kernel_id=kernel, mode=pb.EXECUTION_MODE_CONTINUE),
            grpc.StatusCode.INVALID_ARGUMENT,
        ),
    ]
    for request, code in cases:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            async for _ in agent.stub.Execute(request, metadata=agent.metadata(), timeout=5):
                pass
        assert err.value.code() == code
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await agent.create(kernel_id=kernel)
    assert err.value.code() == grpc.StatusCode.ALREADY_EXISTS
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await agent.create(slots={"cpu": "64", "mem": "1g"})  # capacity: 4
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


async def test_container_is_hardened_and_offline(
    agent: Agent, kernel: str, docker: aiodocker.Docker
) -> None:
    (details,) = await containers_of(docker, kernel_id=kernel)
    host = details["HostConfig"]
    assert host["NetworkMode"] == "none"
    assert host["Memory"] == host["MemorySwap"] == 256 << 20
    assert host["NanoCpus"] == 1_000_000_000
    assert host["PidsLimit"] == 4096
    assert host["CapDrop"] == ["ALL"] and host["SecurityOpt"] == ["no-new-privileges"]
    assert details["Config"]["User"] == "1000:1000"
    labels = details["Config"]["Labels"]
    assert labels["ai.bai.managed"] == "1" and labels["ai.bai.agent-id"] == agent.agent_id
    assert labels["ai.bai.session-type"] == "interactive"
    env = dict(item.split("=", 1) for item in details["Config"]["Env"])
    assert env["BACKENDAI_KERNEL_ID"] == kernel and env["BACKENDAI_CLUSTER_ROLE"] == "main"
    # Only a loopback interface, and the host's loopback (our own gRPC port) is unreachable.
    probe = (
        "import os, socket\n"
        "print(sorted(os.listdir('/sys/class/net')))\n"
        "try:\n"
        f"    socket.create_connection(('127.0.0.1', {agent.server.port}), timeout=2)\n"
        "    print('connected')\n"
        "except OSError as exc:\n"
        "    print('refused', type(exc).__name__)\n"
        "print(os.getuid())\n"
    )
    out = text(await agent.execute(kernel, probe), "stdout").splitlines()
    assert out[0] == "['lo']"
    assert out[1].startswith("refused")
    assert out[2] == "1000"


async def test_memory_limit_is_enforced(agent: Agent, docker: aiodocker.Docker) -> None:
    kernel = (await agent.create(mem=str(128 << 20))).kernel.kernel_id
    try:
        (details,) = await containers_of(docker, kernel_id=kernel)
        assert details["HostConfig"]["Memory"] == 128 << 20
        hog = await agent.execute(kernel, "b = bytearray(1024 * 1024 * 1024)")
        end = hog[-1]
        assert end.finished and end.exit_code != 0
        # Either the interpreter got MemoryError or the OOM killer took it (SIGKILL: 137).
        assert end.exit_code == 137 or "MemoryError" in text(hog, "exception"), hog
        print("memory hog ended with", end.exit_code, text(hog, "exception"))
        again = await agent.execute(kernel, "print('alive')")
        assert text(again, "stdout") == "alive\n"
    finally:
        await agent.destroy(kernel)


async def test_unknown_image_is_not_found_and_leaves_nothing(
    agent: Agent, docker: aiodocker.Docker
) -> None:
    kernel_id = str(uuid.uuid4())
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await agent.create(kernel_id=kernel_id, image="bai/does-not-exist:1")
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    assert reason(err.value) == "IMAGE_NOT_FOUND"
    assert await containers_of(docker, kernel_id=kernel_id) == []
    assert not (agent.kernel_root / uuid.UUID(kernel_id).hex[:12]).exists()
    assert kernel_id not in [k.kernel_id for k in agent.service.list_kernels()]


async def test_logs_stream_and_follow(agent: Agent, kernel: str) -> None:
    write = "open('/proc/1/fd/{fd}', 'w').write('{text}\\n')"
    code = write.format(fd=1, text="log-out") + "; " + write.format(fd=2, text="log-err")
    await agent.execute(kernel, code)
    request = pb.StreamKernelLogsRequest(kernel_id=kernel)
    chunks = [
        c async for c in agent.stub.StreamKernelLogs(request, metadata=agent.metadata(), timeout=10)
    ]
    assert "log-out\n" in "".join(c.data for c in chunks if c.stream == "stdout")
    assert "log-err\n" in "".join(c.data for c in chunks if c.stream == "stderr")

    follow = agent.stub.StreamKernelLogs(
        pb.StreamKernelLogsRequest(kernel_id=kernel, follow=True, tail_lines=1),
        metadata=agent.metadata(),
        timeout=10,
    )
    first = await follow.read()  # the tail
    assert first.data
    await agent.execute(kernel, write.format(fd=1, text="log-later"))
    seen = ""
    while "log-later" not in seen:
        seen += (await follow.read()).data
    follow.cancel()


async def test_wrong_or_missing_token_is_unauthenticated(agent: Agent) -> None:
    for metadata in (agent.metadata("wrong"), ()):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await agent.stub.ListKernels(pb.ListKernelsRequest(), metadata=metadata, timeout=5)
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    with pytest.raises(grpc.aio.AioRpcError) as err:
        async for _ in agent.stub.Execute(pb.ExecuteRequest(), metadata=(), timeout=5):
            pass
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_restart_keeps_the_kernel(agent: Agent, kernel: str) -> None:
    await agent.execute(kernel, "y = 1")
    restarted = await agent.stub.RestartKernel(
        pb.RestartKernelRequest(kernel_id=kernel), metadata=agent.metadata(), timeout=30
    )
    assert restarted.kernel.state == kernel_pb2.Kernel.STATE_RUNNING
    out = await agent.execute(kernel, "print('y' in globals())")
    assert text(out, "stdout") == "False\n"  # a fresh interpreter


async def test_self_exit_is_reported_then_destroy_leaves_nothing(
    agent: Agent, docker: aiodocker.Docker
) -> None:
    kernel = (await agent.create()).kernel.kernel_id
    scratch = agent.kernel_root / uuid.UUID(kernel).hex[:12]
    assert (scratch / "runner.sock").exists()
    events: list[KernelEvent] = []
    with agent.service.subscribe() as queue:
        # The runner is PID 1: SIGTERM ends it and with it the container.
        try:  # the run may finish first or die with its kernel
            await agent.execute(kernel, "import os, signal; os.kill(1, signal.SIGTERM)")
        except grpc.aio.AioRpcError as exc:
            assert exc.code() == grpc.StatusCode.UNAVAILABLE
        events.append(await asyncio.wait_for(queue.get(), 10))
    assert events[0].kernel_id == kernel and events[0].kind is KernelEventKind.TERMINATED
    assert events[0].reason == "ContainerExited"
    listed = {k.kernel_id: k for k in agent.service.list_kernels()}
    assert listed[kernel].state.value == "terminated"
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await agent.execute(kernel, "print(1)")
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION

    await agent.destroy(kernel)
    assert await containers_of(docker, kernel_id=kernel) == []
    assert not scratch.exists()
    await agent.destroy(kernel)  # idempotent
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await agent.execute(kernel, "print(1)")
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


async def test_batch_session_terminates_with_its_exit_code(agent: Agent) -> None:
    with agent.service.subscribe() as queue:
        created = await agent.create(
            session_type="batch", startup_command="echo batch-out; echo batch-err >&2; exit 3"
        )
        kernel = created.kernel.kernel_id
        event = await asyncio.wait_for(queue.get(), 10)
    assert (event.kernel_id, event.kind, event.exit_code) == (
        kernel,
        KernelEventKind.TERMINATED,
        3,
    )
    assert event.reason == "TaskFailed"
    logs = [
        c
        async for c in agent.stub.StreamKernelLogs(
            pb.StreamKernelLogsRequest(kernel_id=kernel), metadata=agent.metadata(), timeout=10
        )
    ]
    assert "batch-out" in "".join(c.data for c in logs if c.stream == "stdout")
    assert (await agent.destroy(kernel)).exit_code == 3


async def test_batch_timeout(agent: Agent) -> None:
    with agent.service.subscribe() as queue:
        created = await agent.create(
            session_type="batch", startup_command="sleep 30", batch_timeout=duration(0.5)
        )
        event = await asyncio.wait_for(queue.get(), 10)
    assert event.reason == "TaskTimeout" and event.exit_code == 143
    await agent.destroy(created.kernel.kernel_id)


async def test_only_live_kernels_keep_a_scratch_dir(agent: Agent, kernel_root: Path) -> None:
    async def only_live_dirs() -> bool:
        live = {uuid.UUID(k.kernel_id).hex[:12] for k in agent.service.list_kernels()}
        return set(await asyncio.to_thread(os.listdir, kernel_root)) == live

    await wait_until(only_live_dirs, within=5)
