"""``POST /auth/authorize``: Backend.AI's password login (type ``keypair``), for the webserver.

Anonymous (the caller has no keypair yet): the gateway forwards the credentials to the manager's
AuthService with its service token, and the manager checks the password (scrypt), counts
failures and locks the user out after too many. The answer is Backend.AI's:
``{"data": {"access_key", "secret_key", "role", "status"}}``; a failure is Backend.AI's JSON error
(401 ``auth-failed`` for wrong credentials, 429 for a locked user, 400 for a malformed body).
"""

from __future__ import annotations

from typing import Any, Literal

from bai.common.rpc import SERVICE_TOKEN_KEY
from bai.gateway.admin.calls import admin_calls
from bai.pb.manager.v1 import auth_service_pb2 as auth_pb
from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field

__all__ = ["router"]

router = APIRouter(tags=["backend.ai"])


class AuthorizeBody(BaseModel):
    """Backend.AI's authorize parameters; unknown fields are refused by name."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["keypair"] = "keypair"
    domain: str = Field(default="", max_length=64)
    username: str = Field(min_length=1, max_length=128)
    password: str = Field(min_length=1, max_length=1024)


@router.post("/auth/authorize", summary="Password login: returns the user's keypair")
async def authorize(body: AuthorizeBody, request: Request) -> dict[str, Any]:
    up, calls = admin_calls(request)
    reply = await calls.tenancy(
        "Authorize", auth_pb.AuthorizeRequest(domain=body.domain, username=body.username,
                                              password=body.password),
        ((SERVICE_TOKEN_KEY, up.config.service_token),))
    return {"data": {"access_key": reply.keypair.access_key,
                     "secret_key": reply.keypair.secret_key, "role": reply.user.role,
                     "status": reply.user.status, "user_id": reply.user.id,
                     "email": reply.user.email, "full_name": reply.user.full_name}}
