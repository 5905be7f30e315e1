"""The access rule of HTTP circuits (what ext_authz answers)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from bai.appproxy.domain.access import decide, permit_cookie
from bai.appproxy.domain.model import Circuit, CircuitSpec, FrontendMode, Protocol


def _circuit(protocol: Protocol = Protocol.HTTP) -> Circuit:
    spec = CircuitSpec(
        session_id=str(uuid.uuid4()),
        kernel_id=str(uuid.uuid4()),
        app="jupyter",
        protocol=protocol,
        upstream_socket_path="/tmp/x.sock",
        frontend_mode=FrontendMode.PORT,
        owner_access_key="AK",
    )
    return Circuit(str(uuid.uuid4()), spec, "tok-A", "permit-A", 10250, datetime.now(UTC))


def test_token_admits_and_hands_out_the_cookie() -> None:
    circuit = _circuit()
    decision = decide(circuit, "/lab?token=tok-A&x=1", "")
    assert decision.allowed and decision.strip_token
    assert decision.set_cookie == permit_cookie(circuit)
    assert decision.set_cookie.startswith(f"bai_app_{circuit.id}=permit-A;")


def test_cookie_admits_without_token() -> None:
    circuit = _circuit()
    cookies = f"other=1; bai_app_{circuit.id}=permit-A; theme=dark"
    decision = decide(circuit, "/api/kernels", cookies)
    assert decision.allowed and not decision.set_cookie and not decision.strip_token


def test_refusals() -> None:
    circuit = _circuit()
    assert decide(circuit, "/", "").status == 401
    assert decide(circuit, "/?token=tok-B", "").status == 403
    assert decide(circuit, "/?token=", "").status == 403
    assert decide(circuit, "/?token=tok-A&token=tok-B", "").status == 403
    assert decide(circuit, "/", f"bai_app_{circuit.id}=permit-B").status == 403
    # Another circuit's permit cookie is not this circuit's cookie.
    assert decide(circuit, "/", f"bai_app_{uuid.uuid4()}=permit-A").status == 401
    assert decide(None, "/?token=tok-A", "").status == 404
    assert decide(_circuit(Protocol.TCP), "/", "").status == 404


def test_malformed_cookie_header_is_no_cookie() -> None:
    circuit = _circuit()
    assert decide(circuit, "/", f'bai_app_{circuit.id}="unterminated').status in (401, 403)
