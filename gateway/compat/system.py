"""The version probe and the announcement: the first calls of every official CLI command."""

from __future__ import annotations

from bai.common.auth import API_VERSION
from fastapi import APIRouter

__all__ = ["MANAGER_VERSION", "router"]

MANAGER_VERSION = "26.9.6"
"""The Backend.AI manager release whose API we speak (the official client's own version)."""

router = APIRouter(tags=["backend.ai"])


@router.get("/", summary="API version probe (unsigned or signed)")
async def version() -> dict[str, str]:
    # Exactly v9.20250722: lower versions send the official client down legacy paths (§2).
    return {"version": API_VERSION, "manager": MANAGER_VERSION}


@router.get("/manager/announcement", summary="Announcement banner (always off)")
async def announcement() -> dict[str, object]:
    return {"enabled": False, "message": ""}
