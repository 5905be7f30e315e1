"""CLI test helpers: a real manager (``run_manager``) with one protocol agent.

(A uniquely named module rather than conftest.py, so test modules can import from it.)"""

from __future__ import annotations

import asyncio
import secrets
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "manager"))

from bai.manager.server import run_manager
from bai.pb.agent.v1 import agent_service_pb2 as apb
from manager_harness import Keys, ProtocolAgent, manager_config, prepare_db


class PromptingAgent(ProtocolAgent):
    """A protocol agent whose ``ask`` run prompts for input the way the real agent reports it
    (``waiting_input`` + ``continued`` ending the call, prompt in ``data``), and whose ``count``
    run streams stdout and stderr and exits 7."""

    async def Execute(self, request: apb.ExecuteRequest, context: Any) -> Any:
        run_id = request.run_id or "r-" + uuid.uuid4().hex[:8]
        if request.mode == apb.EXECUTION_MODE_INPUT:
            yield apb.ExecuteResponse(
                run_id=run_id, stream="stdout", data=f"hello {request.code}\n"
            )
            yield apb.ExecuteResponse(run_id=run_id, finished=True, exit_code=0)
        elif request.code == "ask":
            yield apb.ExecuteResponse(run_id=run_id, stream="stdout", data="before\n")
            yield apb.ExecuteResponse(
                run_id=run_id, waiting_input=True, continued=True, data="name? "
            )
        elif request.code == "count":
            for i in range(3):
                yield apb.ExecuteResponse(run_id=run_id, stream="stdout", data=f"{i}\n")
                await asyncio.sleep(0.02)
            yield apb.ExecuteResponse(run_id=run_id, stream="stderr", data="done\n")
            yield apb.ExecuteResponse(run_id=run_id, finished=True, exit_code=7)
        else:
            async for event in super().Execute(request, context):
                yield event


@dataclass(frozen=True)
class Manager:
    address: str
    user: Keys
    agent_id: str


@asynccontextmanager
async def start_manager(db_url: str) -> AsyncIterator[Manager]:
    _, user = await prepare_db(db_url)
    token = "tok-" + secrets.token_hex(8)
    async with run_manager(manager_config(db_url, token)) as running:
        agent_id = "i-cli-" + secrets.token_hex(3)
        agent = await PromptingAgent(agent_id, running.address, token).start()
        try:
            yield Manager(address=running.address, user=user, agent_id=agent_id)
        finally:
            await agent.stop()
