"""Native REST routes: derived from the protos' google.api.http annotations, not hand-written."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from bai.common import errors
from bai.gateway.app import create_app
from bai.gateway.config import GatewayConfig
from bai.gateway.native import Binding, bindings, request_message
from bai.gateway.upstream import SERVICES
from bai.pb.manager.v1 import session_pb2 as session_pb
from bai.pb.manager.v1 import session_service_pb2 as sessions_pb
from starlette.requests import Request

PROTO_DIR = Path(__file__).resolve().parents[2] / "proto" / "bai" / "manager" / "v1"
_RPC = re.compile(r"rpc\s+(\w+)\s*\([^)]*\)\s*returns\s*\([^)]*\)\s*\{(.*?)\n  \}", re.S)
_RULE = re.compile(r"\b(get|post|put|delete|patch)\s*:\s*\"([^\"]+)\"")
_BODY = re.compile(r"\bbody\s*:\s*\"([^\"]*)\"")


def _annotations_in_source() -> dict[str, tuple[str, str, str]]:
    """``{rpc: (VERB, template, body)}`` read from the .proto text itself."""
    found: dict[str, tuple[str, str, str]] = {}
    for name in ("session_service.proto", "image_service.proto", "vfolder_service.proto",
                 "tenancy_service.proto", "resource_group_service.proto"):
        for rpc_name, options in _RPC.findall((PROTO_DIR / name).read_text()):
            rule = _RULE.search(options)
            if rule:
                body = _BODY.search(options)
                found[rpc_name] = (rule[1].upper(), rule[2], body[1] if body else "")
    return found


def _by_name() -> dict[str, Binding]:
    return {b.method.name: b for b in bindings()}


def test_every_annotated_rpc_has_exactly_its_route() -> None:
    source = _annotations_in_source()
    # 9 SessionService + ListImages + 28 VFolderService + 25 TenancyService
    # + 10 ResourceGroupService: all found
    assert len(source) == 73
    table = {b.method.name: (b.verb, b.template, b.body) for b in bindings()}
    assert table == source


def test_every_method_of_the_exposed_services_is_annotated() -> None:
    methods = {m.full_name for service in SERVICES for m in service.methods}
    assert methods == {b.method.full_name for b in bindings()}


def test_templates_become_starlette_paths() -> None:
    table = _by_name()
    assert table["ExecuteSession"].route_path == "/v1/sessions/{session_ref}:execute"
    assert table["ExecuteSession"].path_fields == ("session_ref",)
    assert table["ListSessions"].path_fields == ()
    assert table["StreamSessionLogs"].method.server_streaming


def test_the_app_documents_every_binding() -> None:
    # That each documented route also answers is checked over HTTP in test_gateway_http.py.
    app = create_app(GatewayConfig(manager_addr="127.0.0.1:1", service_token="t"))
    schema = app.openapi()
    for binding in bindings():
        operation = schema["paths"][binding.route_path][binding.verb.lower()]
        media = "application/x-ndjson" if binding.method.server_streaming else "application/json"
        assert media in operation["responses"]["200"]["content"]
        params = {(p["name"], p["in"]) for p in operation.get("parameters", [])}
        assert {(f, "path") for f in binding.path_fields} <= params
    for path_item in schema["paths"].values():
        for operation in path_item.values():
            assert "422" not in operation["responses"]
            assert operation["responses"]["400"]["content"]["application/json"]["schema"] == {
                "$ref": "#/components/schemas/Problem"
            }
    assert "bai.manager.v1.Session" in schema["components"]["schemas"]
    json.dumps(schema)  # serializable as served


def _request(
    binding: Binding, path: str, query: bytes = b"", body: bytes = b"", **params: str
) -> Request:
    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    scope = {
        "type": "http",
        "method": binding.verb,
        "path": path,
        "raw_path": path.encode(),
        "query_string": query,
        "headers": [(b"content-type", b"application/json")],
        "path_params": params,
    }
    return Request(scope, receive)


async def test_path_variables_win_over_the_body() -> None:
    binding = _by_name()["ExecuteSession"]
    body = json.dumps({"sessionRef": "other", "mode": "EXECUTION_MODE_QUERY", "code": "1"})
    message = await request_message(
        binding, _request(binding, "/v1/sessions/s1:execute", body=body.encode(), session_ref="s1")
    )
    assert message == sessions_pb.ExecuteSessionRequest(
        session_ref="s1", mode=sessions_pb.EXECUTION_MODE_QUERY, code="1"
    )


async def test_query_parameters_fill_get_requests_by_json_or_proto_name() -> None:
    binding = _by_name()["ListSessions"]
    query = b"pageSize=5&page_token=t&states=STATE_RUNNING&states=1"
    message = await request_message(binding, _request(binding, "/v1/sessions", query))
    assert message == sessions_pb.ListSessionsRequest(
        page_size=5,
        page_token="t",
        states=[session_pb.Session.STATE_RUNNING, session_pb.Session.STATE_PENDING],
    )
    delete = _by_name()["DeleteSession"]
    message = await request_message(
        delete, _request(delete, "/v1/sessions/x", b"forced=true", session_ref="x")
    )
    assert message == sessions_pb.DeleteSessionRequest(session_ref="x", forced=True)


@pytest.mark.parametrize(
    ("rpc", "query", "body"),
    [
        ("ListSessions", b"bogus=1", b""),
        ("ListSessions", b"pageSize=many", b""),
        ("DeleteSession", b"forced=maybe", b""),
        ("DeleteSession", b"sessionRef=y", b""),
        ("CreateSession", b"", b"{not json"),
        ("CreateSession", b"", b"[1, 2]"),
        ("CreateSession", b"", b'{"unknownField": 1}'),
        ("CreateSession", b"", b'{"resources": {"cpu": 1}}'),
        ("ExecuteSession", b"", b'{"maxWait": "soon"}'),
    ],
)
async def test_bad_input_is_invalid_argument(rpc: str, query: bytes, body: bytes) -> None:
    binding = _by_name()[rpc]
    params = {field: "x" for field in binding.path_fields}
    with pytest.raises(errors.InvalidArgument):
        await request_message(binding, _request(binding, "/p", query, body, **params))


async def test_an_empty_body_is_an_empty_message() -> None:
    binding = _by_name()["CreateSession"]
    assert await request_message(binding, _request(binding, "/v1/sessions")) == (
        sessions_pb.CreateSessionRequest()
    )


async def test_unknown_enum_numbers_in_the_query_are_rejected() -> None:
    binding = _by_name()["ListSessions"]
    with pytest.raises(errors.InvalidArgument):
        await request_message(binding, _request(binding, "/v1/sessions", b"states=99"))
