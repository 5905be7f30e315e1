"""The one error mapping: every gRPC code (and reason) to an HTTP status in Backend.AI's shape."""

from __future__ import annotations

import grpc
import pytest
from bai.common import auth, errors, rpc
from bai.gateway.errors import PROBLEM_BASE, problem_for_code, problem_for_exception
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException

EXPECTED_STATUS = {
    grpc.StatusCode.OK: 500,  # a failure with OK is a server bug
    grpc.StatusCode.CANCELLED: 500,
    grpc.StatusCode.UNKNOWN: 500,
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.DEADLINE_EXCEEDED: 503,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.FAILED_PRECONDITION: 409,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.INTERNAL: 500,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DATA_LOSS: 500,
    grpc.StatusCode.UNAUTHENTICATED: 401,
}


def _assert_shape(body: dict[str, object]) -> None:
    assert set(body) == {"type", "title", "msg", "data", "reason"}
    assert isinstance(body["type"], str) and body["type"].startswith(PROBLEM_BASE)
    assert isinstance(body["title"], str) and body["title"]
    assert isinstance(body["data"], dict)


def test_every_grpc_code_is_covered() -> None:
    assert set(EXPECTED_STATUS) == set(grpc.StatusCode)


@pytest.mark.parametrize("code", list(grpc.StatusCode), ids=lambda c: c.name)
def test_each_code_maps_to_its_status(code: grpc.StatusCode) -> None:
    problem = problem_for_code(code, code.name, "details")
    assert problem.status == EXPECTED_STATUS[code]
    assert problem.msg == "details" and problem.reason == code.name
    _assert_shape(problem.body())


@pytest.mark.parametrize(
    ("code", "reason", "status", "slug"),
    [
        (grpc.StatusCode.UNAUTHENTICATED, "INVALID_SIGNATURE", 401, "auth-failed"),
        (grpc.StatusCode.NOT_FOUND, "SESSION_NOT_FOUND", 404, "session-not-found"),
        (grpc.StatusCode.NOT_FOUND, "NOT_FOUND", 404, "object-not-found"),
        (grpc.StatusCode.NOT_FOUND, "IMAGE_NOT_FOUND", 404, "image-not-found"),
        (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_RESOURCE_SLOTS", 400, "invalid-api-params"),
        (grpc.StatusCode.ALREADY_EXISTS, "SESSION_ALREADY_EXISTS", 409, "session-already-exists"),
        (grpc.StatusCode.FAILED_PRECONDITION, "SESSION_NOT_RUNNING", 409, "invalid-session-state"),
        (grpc.StatusCode.PERMISSION_DENIED, "PERMISSION_DENIED", 403, "forbidden"),
        (grpc.StatusCode.RESOURCE_EXHAUSTED, "QUOTA_EXCEEDED", 412, "quota-exceeded"),
        (grpc.StatusCode.RESOURCE_EXHAUSTED, "RATE_LIMITED", 429, "too-many-requests"),
        (grpc.StatusCode.UNAVAILABLE, "UPSTREAM_UNAVAILABLE", 503, "service-unavailable"),
        (grpc.StatusCode.INTERNAL, "INTERNAL", 500, "internal-server-error"),
    ],
)
def test_reasons_refine_the_problem_type(
    code: grpc.StatusCode, reason: str, status: int, slug: str
) -> None:
    problem = problem_for_code(code, reason, "m")
    assert (problem.status, problem.body()["type"]) == (status, PROBLEM_BASE + slug)


def test_existing_session_id_travels_in_data() -> None:
    problem = problem_for_code(
        grpc.StatusCode.ALREADY_EXISTS,
        "SESSION_ALREADY_EXISTS",
        "name taken",
        {"existing_session_id": "0f0e"},
    )
    assert problem.data == {"existingSessionId": "0f0e"}


def _rpc_error(exc: errors.BaiError) -> grpc.aio.AioRpcError:
    """A failed call exactly as a client sees the manager's abort_with()."""
    status = rpc.status_for(exc, "bai.manager")
    trailing = grpc.aio.Metadata(("grpc-status-details-bin", status.SerializeToString()))
    code = next(c for c in grpc.StatusCode if c.value[0] == status.code)
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), trailing, exc.message)


def test_rpc_errors_carry_their_error_info_reason() -> None:
    exc = errors.AlreadyExists(
        "session x exists",
        reason="SESSION_ALREADY_EXISTS",
        metadata={"existing_session_id": "abc"},
    )
    problem = problem_for_exception(_rpc_error(exc))
    assert problem.status == 409 and problem.reason == "SESSION_ALREADY_EXISTS"
    assert problem.msg == "session x exists" and problem.data == {"existingSessionId": "abc"}


def test_rpc_errors_without_details_use_the_code() -> None:
    err = grpc.aio.AioRpcError(
        grpc.StatusCode.UNAVAILABLE, grpc.aio.Metadata(), grpc.aio.Metadata(), "connect failed"
    )
    problem = problem_for_exception(err)
    assert problem.status == 503 and problem.reason == "UPSTREAM_UNAVAILABLE"


@pytest.mark.parametrize(
    ("exc", "status"),
    [
        (errors.InvalidArgument("bad"), 400),
        (errors.NotFound("none"), 404),
        (errors.AlreadyExists("dup"), 409),
        (errors.FailedPrecondition("state"), 409),
        (errors.Unauthenticated("who"), 401),
        (errors.PermissionDenied("no"), 403),
        (errors.ResourceExhausted("full"), 429),
        (errors.Unavailable("down"), 503),
        (errors.InternalError("bug"), 500),
        (auth.AuthError("CLOCK_SKEW", "stale"), 401),
        (HTTPException(404), 404),
        (HTTPException(405), 405),
        (RuntimeError("unexpected"), 500),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, BaseException) else str(v),
)
def test_gateway_side_failures_share_the_shape(exc: BaseException, status: int) -> None:
    problem = problem_for_exception(exc)
    assert problem.status == status
    _assert_shape(problem.body())


def test_unexpected_errors_do_not_leak_their_message() -> None:
    assert "secret" not in problem_for_exception(RuntimeError("secret")).msg


def test_validation_errors_are_invalid_api_params_with_per_field_data() -> None:
    exc = RequestValidationError(
        [
            {"type": "string_type", "loc": ("body", "image"), "msg": "Input should be a string"},
            {"type": "missing", "loc": ("body", "config", "environ"), "msg": "Field required"},
        ]
    )
    problem = problem_for_exception(exc)
    assert problem.status == 400 and problem.slug == "invalid-api-params"
    assert problem.data == {
        "image": "Input should be a string",
        "config.environ": "Field required",
    }
    malformed = RequestValidationError([{"type": "json_invalid", "loc": ("body", 1), "msg": "x"}])
    assert problem_for_exception(malformed).data == {"body": "the body is not valid JSON"}
