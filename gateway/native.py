"""Native REST routes derived from the protos' ``google.api.http`` annotations.

Nothing here names an RPC: the route table is read from the service descriptors at startup, so
a new annotated method is served without code. The mapping follows google/api/http.proto (as
grpc-gateway and Envoy's transcoder do): path variables fill request fields; with ``body: "*"``
the JSON body fills the rest; otherwise the remaining fields come from the query string (by
proto or JSON name). Responses are proto3 JSON; server-streaming methods answer newline-delimited
JSON (``application/x-ndjson``), one message per line, with a final ``{"error": problem}`` line
if the stream fails after it started.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

from bai.common import errors
from bai.gateway import openapi
from bai.gateway.deps import get_upstream
from bai.gateway.errors import problem_for_exception
from bai.gateway.upstream import SERVICES, StreamCall
from fastapi import APIRouter
from google.api import annotations_pb2, http_pb2
from google.protobuf import json_format, message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor, MethodDescriptor
from google.protobuf.message import Message
from starlette.background import BackgroundTask
from starlette.datastructures import QueryParams
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

__all__ = ["Binding", "NdjsonResponse", "bindings", "build_router", "message_to_json"]

_VERBS = ("get", "put", "post", "delete", "patch")
_VARIABLE = re.compile(r"\{([A-Za-z_][\w.]*)(?:=([^}]*))?\}")
_LONG_CALLS = {"CreateSession", "RestartSession"}
"""Methods that wait for containers: they get the create deadline instead of the call one."""
_FIRST_MESSAGE_WAIT = 2.0
"""Seconds a stream may take to produce its first message before the response starts anyway."""


@dataclass(frozen=True, slots=True)
class Binding:
    """One HTTP rule of one method."""

    method: MethodDescriptor
    """The RPC."""
    verb: str
    """HTTP method, upper case."""
    template: str
    """Path template as written in the proto, e.g. ``/v1/sessions/{session_ref}:execute``."""
    body: str
    """``"*"``, a field name, or empty (no body)."""

    @property
    def path_fields(self) -> tuple[str, ...]:
        """Field paths bound by the template, in order."""
        return tuple(match[1] for match in _VARIABLE.finditer(self.template))

    @property
    def route_path(self) -> str:
        """The template in Starlette syntax (``{a.b=**}`` -> ``{a__b:path}``)."""

        def replace(match: re.Match[str]) -> str:
            name = match[1].replace(".", "__")
            return f"{{{name}:path}}" if match[2] and "**" in match[2] else f"{{{name}}}"

        return _VARIABLE.sub(replace, self.template)


def _rule_bindings(method: MethodDescriptor, rule: http_pb2.HttpRule) -> Iterable[Binding]:
    kind = rule.WhichOneof("pattern")
    if kind == "custom":
        yield Binding(method, rule.custom.kind.upper(), rule.custom.path, rule.body)
    elif kind in _VERBS:
        yield Binding(method, kind.upper(), getattr(rule, kind), rule.body)
    for extra in rule.additional_bindings:
        yield from _rule_bindings(method, extra)


def bindings(services: Iterable[Any] = SERVICES) -> tuple[Binding, ...]:
    """Every HTTP binding of every method of ``services`` (ServiceDescriptors)."""
    found: list[Binding] = []
    for service in services:
        for method in service.methods:
            options = method.GetOptions()
            if options.HasExtension(annotations_pb2.http):
                found.extend(_rule_bindings(method, options.Extensions[annotations_pb2.http]))
    return tuple(found)


def message_to_json(message: Message) -> dict[str, Any]:
    """Proto3 JSON (camelCase names), fields without presence always printed."""
    out: dict[str, Any] = json_format.MessageToDict(
        message, always_print_fields_with_no_presence=True
    )
    return out


class NdjsonResponse(StreamingResponse):
    """A stream of JSON lines."""

    media_type = "application/x-ndjson"


# -- request decoding ------------------------------------------------------------------------


async def _json_body(request: Request) -> Any:
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise errors.InvalidArgument("the body is not valid JSON", reason="MALFORMED_JSON") from exc


def _set(data: dict[str, Any], field_path: str, value: Any) -> None:
    *parents, leaf = field_path.split(".")
    for part in parents:
        child = data.setdefault(part, {})
        if not isinstance(child, dict):
            raise errors.InvalidArgument(f"{field_path} conflicts with the body")
        data = child
    data[leaf] = value


def _query_value(field: FieldDescriptor, value: str) -> Any:
    if field.type == FieldDescriptor.TYPE_BOOL:
        if value.lower() in ("true", "1"):
            return True
        if value.lower() in ("false", "0"):
            return False
        raise errors.InvalidArgument(f"{field.json_name} must be true or false")
    if field.type == FieldDescriptor.TYPE_ENUM and value.lstrip("-").isdigit():
        if int(value) not in field.enum_type.values_by_number:
            raise errors.InvalidArgument(f"{field.json_name}: no enum value {value}")
        return int(value)
    return value


def _query_fields(descriptor: Descriptor, params: QueryParams, bound: set[str]) -> dict[str, Any]:
    by_name: dict[str, FieldDescriptor] = {}
    for field in descriptor.fields:
        by_name[field.name] = by_name[field.json_name] = field
    data: dict[str, Any] = {}
    for key in dict.fromkeys(params.keys()):
        field = by_name.get(key)
        if field is None or field.name in bound or openapi.is_map(field):
            raise errors.InvalidArgument(f"unknown query parameter {key!r}")
        if field.message_type is not None and not openapi.is_scalar_message(field):
            raise errors.InvalidArgument(f"{key!r} cannot be given in the query string")
        values = [_query_value(field, value) for value in params.getlist(key)]
        data[field.json_name] = values if field.is_repeated else values[-1]
    return data


async def request_message(binding: Binding, request: Request) -> Message:
    """Builds the request message from the path, the query string and the body."""
    descriptor = binding.method.input_type
    data: dict[str, Any] = {}
    if binding.body == "*":
        body = await _json_body(request)
        if not isinstance(body, dict):
            raise errors.InvalidArgument("the body must be a JSON object")
        data = body
    else:
        if binding.body:
            data[binding.body] = await _json_body(request)
        bound = {path.split(".")[0] for path in binding.path_fields} | {binding.body}
        data.update(_query_fields(descriptor, request.query_params, bound))
    for field_path in binding.path_fields:
        _set(data, field_path, request.path_params[field_path.replace(".", "__")])
    message = message_factory.GetMessageClass(descriptor)()
    try:
        json_format.ParseDict(data, message)
    except json_format.ParseError as exc:
        raise errors.InvalidArgument(str(exc), reason="INVALID_REQUEST_MESSAGE") from exc
    return message


# -- responses -------------------------------------------------------------------------------


async def _stream_response(call: StreamCall[Message]) -> Response:
    """Streams ``call`` as NDJSON; failures before the first message get a normal error."""
    iterator = aiter(call)
    first = asyncio.ensure_future(anext(iterator, None))
    try:
        await asyncio.wait({first}, timeout=_FIRST_MESSAGE_WAIT)
        if first.done():
            first.result()  # raises the call's error while a proper status can still be sent
    except BaseException:
        call.cancel()
        raise

    async def lines() -> AsyncIterator[str]:
        try:
            message = await first
            while message is not None:
                yield json.dumps(message_to_json(message), ensure_ascii=False) + "\n"
                message = await anext(iterator, None)
        except Exception as exc:
            yield json.dumps({"error": problem_for_exception(exc).body()}) + "\n"
        finally:
            call.cancel()

    def cleanup() -> None:  # also runs when the client left before the body started
        first.cancel()
        call.cancel()

    return NdjsonResponse(lines(), background=BackgroundTask(cleanup))


def _endpoint(binding: Binding) -> Callable[[Request], Awaitable[Response]]:
    name = binding.method.full_name

    async def endpoint(request: Request) -> Response:
        up = get_upstream(request)
        metadata = up.metadata(request)
        message = await request_message(binding, request)
        if binding.method.server_streaming:
            call = up.streams[name].start(message, metadata=metadata, deadline=None)
            return await _stream_response(call)
        deadline = up.config.call_timeout
        if binding.method.name in _LONG_CALLS:
            deadline += up.config.create_timeout
        response = await up.unary[name](message, metadata=metadata, deadline=deadline)
        return JSONResponse(message_to_json(response))

    endpoint.__name__ = binding.method.name
    return endpoint


def build_router(services: Iterable[Any] = SERVICES) -> APIRouter:
    """One route per HTTP binding of ``services``, documented from the descriptors."""
    router = APIRouter(tags=["native"])
    for binding in bindings(services):
        streaming = binding.method.server_streaming
        router.add_api_route(
            binding.route_path,
            _endpoint(binding),
            methods=[binding.verb],
            name=binding.method.full_name,
            operation_id=binding.method.full_name,
            summary=f"{binding.method.containing_service.name}.{binding.method.name}",
            response_class=NdjsonResponse if streaming else JSONResponse,
            openapi_extra=openapi.operation(binding),
        )
    return router
