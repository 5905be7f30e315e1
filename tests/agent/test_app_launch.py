"""Which apps a kernel offers: the built-ins and those an image's service-ports label declares."""

from __future__ import annotations

import pytest
from bai.agent.domain.apps import ServicePort, launch_for, parse_service_ports
from bai.common.errors import FailedPrecondition, NotFound

LABEL = "ai.backend.service-ports"


def test_label_entries_parse_like_backend_ai() -> None:
    label = "jupyter:http:8081, sshd:tcp:2200,web:http:[8000,8001],desk:vnc:5901"
    assert parse_service_ports(label) == [
        ServicePort("jupyter", "http", (8081,)),
        ServicePort("sshd", "tcp", (2200,)),
        ServicePort("web", "http", (8000, 8001)),
        ServicePort("desk", "vnc", (5901,)),
    ]
    assert parse_service_ports("") == []


@pytest.mark.parametrize(
    ("label", "why"),
    [
        ("web:http", "expected name:protocol:port"),
        ("web:ftp:8000", "protocol must be one of"),
        ("web:http:eighty", "ports must be integers"),
        ("web:http:[]", "at least one port"),
        ("../x:http:8000", "bad app name"),
    ],
)
def test_malformed_labels_name_the_entry(label: str, why: str) -> None:
    with pytest.raises(FailedPrecondition, match=why) as caught:
        parse_service_ports(label)
    assert caught.value.reason == "BAD_SERVICE_PORTS_LABEL"


def test_custom_apps_come_from_the_label_and_a_service_definition() -> None:
    labels = {LABEL: "jupyter:http:8081,web:http:8000,db:tcp:5432,desk:vnc:5901,open:preopen:9000"}
    web = launch_for("web", ["--x", "1"], labels)
    assert (web.protocol, web.argv, web.bridge_port) == ("http", ["--x", "1"], 8000)
    assert web.service_def == "/etc/backend.ai/service-defs/web.json"
    assert web.socket_name == "web.sock"
    assert launch_for("db", [], labels).protocol == "tcp"
    assert launch_for("desk", [], labels).protocol == "tcp"  # raw TCP to the proxy
    # built-ins bind their own sockets: no bridge, whatever the label says about them
    jupyter = launch_for("jupyter", [], labels)
    assert jupyter.bridge_port is None and jupyter.service_def == ""
    with pytest.raises(FailedPrecondition, match="preopen"):
        launch_for("open", [], labels)
    with pytest.raises(NotFound, match="known: db, desk, jupyter, open, sshd, ttyd, web"):
        launch_for("nope", [], labels)
    with pytest.raises(NotFound):
        launch_for("web", [], {})  # not declared by this image


def test_reserved_names_and_ports_are_refused() -> None:
    with pytest.raises(FailedPrecondition, match="reserved"):
        launch_for("runner", [], {LABEL: "runner:http:8000"})
    with pytest.raises(FailedPrecondition, match="reserved port 2000"):
        launch_for("web", [], {LABEL: "web:http:2000"})
