"""Apps (services) inside a kernel: what to run for each, and how to know it answers.

Built-in apps: Jupyter Notebook, ttyd (web terminal) and sshd (dropbear), each binding its Unix
socket itself. Any other app must be declared in the image's ``ai.backend.service-ports``
label (Backend.AI's ``name:protocol:port`` list, e.g. ``myapp:http:8000``) and defined by
``/etc/backend.ai/service-defs/<name>.json`` in the image (Backend.AI's service definition:
``command`` with ``{ports[0]}``, optional ``env``). Such an app listens on its TCP port inside
the kernel's own network namespace; the runner relays ``/run/bai/<name>.sock`` to that port.

An app listens on a Unix socket in the kernel's scratch dir (``/run/bai/<app>.sock`` in the
container, ``<scratch dir>/<app>.sock`` on the host): containers have no network, so the app
proxy reaches apps through these sockets only. The runner starts the process (``service`` op);
the agent then waits until the socket accepts connections.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from dataclasses import dataclass
from pathlib import Path

from bai.agent.domain.ports import KernelRunner
from bai.common.errors import FailedPrecondition, InvalidArgument, NotFound, Unavailable
from bai.common.service_ports import (
    LABEL_PROTOCOLS,
    SERVICE_PORTS_LABEL,
    ServicePort,
    parse_service_ports,
)
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

__all__ = [
    "APPS",
    "SERVICE_PORTS_LABEL",
    "AppLaunch",
    "ServicePort",
    "StartedApp",
    "launch_for",
    "parse_service_ports",
    "start_app",
]

CONTAINER_DIR = "/run/bai"
SSH_USER = "work"
AUTHORIZED_KEYS = "sshd_authorized_keys"
_POLL_S = 0.05
SERVICE_DEFS_DIR = "/etc/backend.ai/service-defs"
_RESERVED_NAMES = {"runner"}  # runner.sock is the runner's own socket
_RESERVED_PORTS = {2000, 2001, 2002, 2003, 2200, 7681}


@dataclass(frozen=True, slots=True)
class AppLaunch:
    """How to run one app: its protocol ("http"/"tcp") and its command line."""

    name: str
    protocol: str
    argv: list[str]
    service_def: str = ""
    """Service definition in the kernel the command comes from (``argv`` is appended)."""
    bridge_port: int | None = None
    """TCP port inside the kernel the runner relays the app's socket to."""

    @property
    def socket_name(self) -> str:
        return f"{self.name}.sock"


@dataclass(frozen=True, slots=True)
class StartedApp:
    socket_path: Path
    protocol: str
    ssh_private_key: str = ""
    ssh_user: str = ""


def _jupyter(arguments: list[str]) -> AppLaunch:
    return AppLaunch("jupyter", "http", [
        "python3", "-m", "notebook", "--no-browser",
        f"--sock={CONTAINER_DIR}/jupyter.sock", "--sock-mode=0666",
        # The proxy admits requests (circuit token); the notebook must not ask again, and it
        # is reached under the proxy's host name.
        "--NotebookApp.token=", "--NotebookApp.password=",
        "--NotebookApp.disable_check_xsrf=True", "--NotebookApp.allow_remote_access=True",
        "--NotebookApp.allow_origin=*", *arguments,
    ])


def _sshd(arguments: list[str]) -> AppLaunch:
    # dropbear runs as the kernel user (no capabilities needed), one process per connection
    # (inetd mode) behind socat; ~/.ssh/authorized_keys links to the file the agent appends
    # the keys it issues to. The host key is made once per kernel.
    if arguments:
        raise InvalidArgument("sshd takes no extra arguments", reason="BAD_SERVICE_ARGUMENTS")
    script = (
        f"mkdir -p -m 700 ~/.ssh && ln -sf {CONTAINER_DIR}/{AUTHORIZED_KEYS} "
        "~/.ssh/authorized_keys && "
        f"{{ [ -f {CONTAINER_DIR}/sshd_host_key ] || "
        f"dropbearkey -t ed25519 -f {CONTAINER_DIR}/sshd_host_key >/dev/null; }} && "
        f"exec socat UNIX-LISTEN:{CONTAINER_DIR}/sshd.sock,fork,mode=666,unlink-early "
        f"EXEC:'dropbear -i -s -r {CONTAINER_DIR}/sshd_host_key'"
    )
    return AppLaunch("sshd", "tcp", ["/bin/sh", "-c", script])


def _ttyd(arguments: list[str]) -> AppLaunch:
    # A writable web terminal running bash; ttyd binds the Unix socket itself.
    return AppLaunch("ttyd", "http", [
        "ttyd", "-i", f"{CONTAINER_DIR}/ttyd.sock", "-W", *arguments, "bash"])


APPS = {"jupyter": _jupyter, "sshd": _sshd, "ttyd": _ttyd}
"""The apps the agent can start, by name."""


def _custom(port: ServicePort, arguments: list[str]) -> AppLaunch:
    protocol = LABEL_PROTOCOLS[port.protocol]
    if not protocol:
        raise FailedPrecondition(f"{port.name} is a preopen port: there is no app to start",
                                 reason="PREOPEN_PORT")
    if port.name in _RESERVED_NAMES:
        raise FailedPrecondition(f"the app name {port.name!r} is reserved",
                                 reason="BAD_SERVICE_PORTS_LABEL")
    if port.ports[0] in _RESERVED_PORTS:
        raise FailedPrecondition(f"{port.name} declares reserved port {port.ports[0]}",
                                 reason="BAD_SERVICE_PORTS_LABEL")
    return AppLaunch(port.name, protocol, list(arguments),
                     service_def=f"{SERVICE_DEFS_DIR}/{port.name}.json",
                     bridge_port=port.ports[0])


def launch_for(name: str, arguments: list[str], image_labels: dict[str, str] | None = None
               ) -> AppLaunch:
    """How to start app ``name``: a built-in one, or one the image's labels declare."""
    build = APPS.get(name)
    if build is not None:
        return build(list(arguments))
    declared = parse_service_ports((image_labels or {}).get(SERVICE_PORTS_LABEL, ""))
    port = next((p for p in declared if p.name == name), None)
    if port is None:
        known = sorted({*APPS, *(p.name for p in declared)})
        raise NotFound(f"unknown service {name!r} (known: {', '.join(known)})",
                       reason="SERVICE_NOT_FOUND")
    return _custom(port, arguments)


def _issue_ssh_key(scratch_dir: Path) -> str:
    """A fresh key pair; its public half is authorised in the kernel, the private returned."""
    key = Ed25519PrivateKey.generate()
    public = key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()
    keys = scratch_dir / AUTHORIZED_KEYS
    with keys.open("a") as out:
        out.write(f"{public} bai\n")
    keys.chmod(0o644)  # dropbear refuses group/other-writable key files
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                             serialization.NoEncryption()).decode()


def _accepts(path: Path, http: bool) -> bool:
    """Whether the socket accepts a connection, and for HTTP apps answers a request."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(2.0)
        try:
            probe.connect(str(path))
            if not http:
                return True
            # Jupyter checks the Host header; any status line counts as an answer.
            probe.sendall(b"GET / HTTP/1.0\r\nHost: localhost\r\n\r\n")
            return probe.recv(5) == b"HTTP/"
        except OSError:
            return False


async def _wait_listening(path: Path, within_s: float, http: bool = False) -> bool:
    deadline = time.monotonic() + within_s
    while not await asyncio.to_thread(_accepts, path, http):
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(_POLL_S)
    return True


async def start_app(
    runner: KernelRunner,
    scratch_dir: Path,
    launch: AppLaunch,
    environ: dict[str, str],
    within_s: float,
) -> StartedApp:
    """Starts the app (unless it runs) and returns once its socket accepts connections."""
    private_key = _issue_ssh_key(scratch_dir) if launch.name == "sshd" else ""
    path = scratch_dir / launch.socket_name
    # A stale socket of an earlier process refuses connections, so it is never taken for the
    # app; the app replaces it when it binds.
    await runner.start_service(launch.name, launch.argv, environ,
                               service_def=launch.service_def, bridge_port=launch.bridge_port)
    # The route is published only after this: an HTTP app must answer a request.
    if not await _wait_listening(path, within_s, http=launch.protocol == "http"):
        log_tail = ""
        with contextlib.suppress(OSError):
            log_tail = (scratch_dir / f"{launch.name}.log").read_text(errors="replace")[-1500:]
        raise Unavailable(
            f"service {launch.name} did not answer on {path} within {within_s} s"
            + (f"; its log ends with:\n{log_tail}" if log_tail.strip() else ""),
            reason="SERVICE_START_FAILED")
    return StartedApp(path, launch.protocol, private_key, SSH_USER if private_key else "")
