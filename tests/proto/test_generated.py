"""The generated code in pb/ must match proto/ and expose every service we declare."""

import subprocess
import sys
from pathlib import Path

from bai.pb.agent.v1 import agent_service_pb2
from bai.pb.manager.v1 import agent_registry_pb2, session_service_pb2

ROOT = Path(__file__).resolve().parents[2]


def test_generated_code_is_fresh() -> None:
    result = subprocess.run(
        [sys.executable, "proto/generate.py", "--check"], cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr


def test_heartbeat_is_bidirectional_and_execute_streams() -> None:
    heartbeat = agent_registry_pb2.DESCRIPTOR.services_by_name["AgentRegistryService"]
    method = heartbeat.methods_by_name["Heartbeat"]
    assert method.client_streaming and method.server_streaming
    agent = agent_service_pb2.DESCRIPTOR.services_by_name["AgentService"]
    assert agent.methods_by_name["Execute"].server_streaming
    assert agent.methods_by_name["StreamKernelLogs"].server_streaming
    sessions = session_service_pb2.DESCRIPTOR.services_by_name["SessionService"]
    assert sessions.methods_by_name["ExecuteSession"].server_streaming
