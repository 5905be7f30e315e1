"""The ``ai.backend.service-ports`` image label: the apps an image declares (Backend.AI's format).

Read by the agent (to start an app) and by the gateway (to list a session's apps), so both agree
on what an image declares.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from bai.common.errors import FailedPrecondition

__all__ = ["LABEL_PROTOCOLS", "SERVICE_PORTS_LABEL", "ServicePort", "parse_service_ports"]

SERVICE_PORTS_LABEL = "ai.backend.service-ports"
# Backend.AI's protocols; vnc and rdp are raw TCP to the proxy, preopen has no managed process.
LABEL_PROTOCOLS = {"http": "http", "tcp": "tcp", "vnc": "tcp", "rdp": "tcp", "preopen": ""}
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


@dataclass(frozen=True, slots=True)
class ServicePort:
    """One entry of an image's ``ai.backend.service-ports`` label."""

    name: str
    protocol: str
    """As declared: http, tcp, vnc, rdp or preopen."""
    ports: tuple[int, ...]
    """Container ports (the first is the one the app serves on)."""


def parse_service_ports(label: str) -> list[ServicePort]:
    """Parses ``name:protocol:port`` (or ``name:protocol:[p1,p2]``) entries, comma-separated.

    Raises FailedPrecondition naming the first malformed entry (the image is at fault).
    """
    entries: list[ServicePort] = []
    for raw in re.findall(r"[^,\[]+(?:\[[^\]]*\])?", label):
        text = raw.strip().strip(",").strip()
        if not text:
            continue
        parts = text.split(":", 2)
        if len(parts) != 3:
            raise _bad_label(text, "expected name:protocol:port")
        name, protocol, port_text = (p.strip() for p in parts)
        if not _NAME_RE.match(name):
            raise _bad_label(text, "bad app name")
        if protocol not in LABEL_PROTOCOLS:
            raise _bad_label(text, f"protocol must be one of {', '.join(sorted(LABEL_PROTOCOLS))}")
        try:
            ports = tuple(int(p) for p in port_text.strip("[]").split(",") if p.strip())
        except ValueError:
            raise _bad_label(text, "ports must be integers") from None
        if not ports or not all(1 <= p <= 65535 for p in ports):
            raise _bad_label(text, "needs at least one port in 1-65535")
        entries.append(ServicePort(name, protocol, ports))
    return entries


def _bad_label(entry: str, why: str) -> FailedPrecondition:
    return FailedPrecondition(f"the image's {SERVICE_PORTS_LABEL} label entry {entry!r}: {why}",
                              reason="BAD_SERVICE_PORTS_LABEL")
