"""How the Backend.AI-compatible app routes read the official client's arguments and list apps."""

from __future__ import annotations

import json

import pytest
from bai.common.errors import InvalidArgument
from bai.gateway.compat.tcpproxy import apps_of, arguments_argv


def test_arguments_as_the_official_client_sends_them() -> None:
    # ProxyRunnerContext / ComputeSession.start_service: an option map, as JSON text
    options = {"--flag": None, "--opt": "v", "--multi": ["a", "b"]}
    assert arguments_argv(json.dumps(options)) == ["--flag", "--opt", "v", "--multi", "a", "b"]
    assert arguments_argv(json.dumps({})) == []
    assert arguments_argv(["x", 1]) == ["x", "1"]
    assert arguments_argv(None) == arguments_argv("") == []
    for bad in ("{not json", "3", 3):
        with pytest.raises(InvalidArgument):
            arguments_argv(bad)


def test_apps_are_the_builtins_plus_the_image_label() -> None:
    names = [a["name"] for a in apps_of({})]
    assert names == ["jupyter", "ttyd", "sshd"]
    labels = {"ai.backend.service-ports": "jupyter:http:8081,web:http:[8000,8001],db:tcp:5432"}
    apps = apps_of(labels)
    assert apps[3:] == [
        {"name": "web", "protocol": "http", "ports": [8000, 8001]},
        {"name": "db", "protocol": "tcp", "ports": [5432]},
    ]
