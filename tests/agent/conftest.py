"""Fixtures of the agent tests (helpers live in agent_harness.py)."""

from __future__ import annotations

import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiodocker
import pytest
from agent_harness import Agent, remove_agent_containers, start_agent


@pytest.fixture(scope="module")
def kernel_root() -> Iterator[Path]:
    """Short (Unix socket paths < 108 bytes), one per module, removed at its end."""
    root = Path(tempfile.mkdtemp(prefix="bai-", dir="/tmp"))
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
async def docker() -> AsyncIterator[aiodocker.Docker]:
    client = aiodocker.Docker()
    try:
        yield client
    finally:
        await client.close()


@pytest.fixture(scope="module")
async def agent(kernel_root: Path, docker: aiodocker.Docker) -> AsyncIterator[Agent]:
    """An agent shared by a module's tests (its containers are removed at the end)."""
    agent_id = "i-test-" + uuid.uuid4().hex[:8]
    started = await start_agent(agent_id, kernel_root, docker)
    try:
        yield started
    finally:
        await started.stop()
        await remove_agent_containers(docker, agent_id)
