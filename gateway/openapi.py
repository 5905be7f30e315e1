"""OpenAPI for the gateway: proto messages as JSON Schema, and Backend.AI's problem responses.

FastAPI documents the compatibility routes from their pydantic models; the native routes are
described here from the message descriptors (proto3 JSON mapping). The final document replaces
FastAPI's 422 validation responses, which the gateway never sends, with the 400 problem.
"""

from __future__ import annotations

from typing import Any, Protocol

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from google.protobuf.descriptor import Descriptor, EnumDescriptor, FieldDescriptor, MethodDescriptor

__all__ = ["build_schema", "is_map", "is_scalar_message", "message_schemas", "operation"]

_REF = "#/components/schemas/"
_PROBLEM = "Problem"
_INT32 = {"type": "integer", "format": "int32", "minimum": -(2**31), "maximum": 2**31 - 1}
_UINT32 = {"type": "integer", "format": "int32", "minimum": 0, "maximum": 2**32 - 1}
_INT64 = {"type": ["string", "integer"], "format": "int64", "pattern": r"^-?[0-9]{1,19}$"}
_SCALARS: dict[int, dict[str, Any]] = {
    FieldDescriptor.TYPE_DOUBLE: {"type": "number"},
    FieldDescriptor.TYPE_FLOAT: {"type": "number"},
    FieldDescriptor.TYPE_INT32: _INT32,
    FieldDescriptor.TYPE_SINT32: _INT32,
    FieldDescriptor.TYPE_SFIXED32: _INT32,
    FieldDescriptor.TYPE_UINT32: _UINT32,
    FieldDescriptor.TYPE_FIXED32: _UINT32,
    FieldDescriptor.TYPE_INT64: _INT64,
    FieldDescriptor.TYPE_SINT64: _INT64,
    FieldDescriptor.TYPE_SFIXED64: _INT64,
    FieldDescriptor.TYPE_UINT64: {**_INT64, "pattern": r"^[0-9]{1,20}$"},
    FieldDescriptor.TYPE_FIXED64: {**_INT64, "pattern": r"^[0-9]{1,20}$"},
    FieldDescriptor.TYPE_BOOL: {"type": "boolean"},
    FieldDescriptor.TYPE_STRING: {"type": "string"},
    FieldDescriptor.TYPE_BYTES: {"type": "string", "format": "byte"},
}
_WELL_KNOWN: dict[str, dict[str, Any]] = {
    "google.protobuf.Duration": {"type": "string", "pattern": r"^-?[0-9]{1,12}(\.[0-9]{1,9})?s$"},
    "google.protobuf.Timestamp": {"type": "string", "format": "date-time"},
}

PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "Backend.AI's error body (RFC 7807 problem).",
    "required": ["type", "title"],
    "properties": {
        "type": {"type": "string", "description": "https://api.backend.ai/probs/<slug>"},
        "title": {"type": "string"},
        "msg": {"type": "string"},
        "data": {"type": "object"},
        "reason": {"type": "string", "description": "UPPER_SNAKE google.rpc.ErrorInfo reason"},
    },
}


class BindingLike(Protocol):
    """What :func:`operation` needs of a native route binding."""

    @property
    def method(self) -> MethodDescriptor: ...
    @property
    def body(self) -> str: ...
    @property
    def path_fields(self) -> tuple[str, ...]: ...


def is_map(field: FieldDescriptor) -> bool:
    return bool(field.message_type is not None and field.message_type.GetOptions().map_entry)


def is_scalar_message(field: FieldDescriptor) -> bool:
    """Well-known messages written as JSON strings (Duration, Timestamp)."""
    return field.message_type is not None and field.message_type.full_name in _WELL_KNOWN


def _enum_schema(enum: EnumDescriptor) -> dict[str, Any]:
    return {"type": "string", "enum": [value.name for value in enum.values]}


def _value_schema(field: FieldDescriptor) -> dict[str, Any]:
    if field.type == FieldDescriptor.TYPE_ENUM:
        return _enum_schema(field.enum_type)
    if field.message_type is not None:
        well_known = _WELL_KNOWN.get(field.message_type.full_name)
        return dict(well_known) if well_known else {"$ref": _REF + field.message_type.full_name}
    return dict(_SCALARS[field.type])


def _field_schema(field: FieldDescriptor) -> dict[str, Any]:
    if is_map(field):
        value = field.message_type.fields_by_name["value"]
        return {"type": "object", "additionalProperties": _value_schema(value)}
    if field.is_repeated:
        return {"type": "array", "items": _value_schema(field)}
    return _value_schema(field)


def _message_schema(descriptor: Descriptor) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {field.json_name: _field_schema(field) for field in descriptor.fields},
        "additionalProperties": False,
    }


def message_schemas(descriptors: list[Descriptor]) -> dict[str, dict[str, Any]]:
    """Component schemas of ``descriptors`` and every message they reference."""
    out: dict[str, dict[str, Any]] = {}
    pending = list(descriptors)
    while pending:
        descriptor = pending.pop()
        if descriptor.full_name in out or descriptor.full_name in _WELL_KNOWN:
            continue
        out[descriptor.full_name] = _message_schema(descriptor)
        for field in descriptor.fields:
            if field.message_type is not None:
                target = field.message_type
                if is_map(field):
                    target = target.fields_by_name["value"].message_type
                if target is not None:
                    pending.append(target)
    return out


def _parameter(field: FieldDescriptor, where: str) -> dict[str, Any]:
    return {
        "name": field.json_name if where == "query" else field.name,
        "in": where,
        "required": where == "path",
        "schema": _field_schema(field),
    }


def operation(binding: BindingLike) -> dict[str, Any]:
    """``openapi_extra`` of one native route: parameters, body and responses."""
    method = binding.method
    fields = method.input_type.fields_by_name
    bound = {path.split(".")[0] for path in binding.path_fields}
    params = [_parameter(fields[name], "path") for name in binding.path_fields if name in fields]
    extra: dict[str, Any] = {}
    if binding.body == "*":
        extra["requestBody"] = {
            "required": False,
            "content": {
                "application/json": {"schema": {"$ref": _REF + method.input_type.full_name}}
            },
        }
    else:
        params += [
            _parameter(field, "query")
            for field in method.input_type.fields
            if field.name not in bound
            and field.name != binding.body
            and not is_map(field)
            and (field.message_type is None or is_scalar_message(field))
        ]
    media = "application/x-ndjson" if method.server_streaming else "application/json"
    extra["parameters"] = params
    extra["responses"] = {
        "200": {
            "description": f"{method.output_type.name}"
            + (", one JSON message per line" if method.server_streaming else ""),
            "content": {media: {"schema": {"$ref": _REF + method.output_type.full_name}}},
        }
    }
    return extra


def _error_responses() -> dict[str, Any]:
    content = {"application/json": {"schema": {"$ref": _REF + _PROBLEM}}}
    return {
        "400": {"description": "Missing or invalid API parameters", "content": content},
        "401": {"description": "Missing, malformed, stale or wrong signature", "content": content},
        "default": {"description": "Any other error (Backend.AI problem)", "content": content},
    }


def build_schema(app: FastAPI, descriptors: list[Descriptor]) -> dict[str, Any]:
    """The gateway's OpenAPI document (cached on the app)."""
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(
        title=app.title, version=app.version, description=app.description, routes=app.routes
    )
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):
        components.pop(name, None)
    components.update(message_schemas(descriptors))
    components[_PROBLEM] = PROBLEM_SCHEMA
    for path_item in schema.get("paths", {}).values():
        for op in path_item.values():
            responses = op.setdefault("responses", {})
            responses.pop("422", None)
            for status, response in _error_responses().items():
                responses.setdefault(status, response)
    app.openapi_schema = schema
    return schema
