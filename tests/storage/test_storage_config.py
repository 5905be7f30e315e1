"""Storage proxy configuration: flags, BAI_STORAGE_* fallbacks and the volumes TOML file."""

from __future__ import annotations

from pathlib import Path

import pytest
from bai.storage.config import (
    DEFAULT_VOLUMES,
    VolumeConfig,
    build_parser,
    config_from_args,
    load_volumes_file,
)


def test_defaults_and_env_fallbacks() -> None:
    env = {"BAI_STORAGE_SERVICE_TOKEN": "tok", "BAI_STORAGE_LISTEN": "127.0.0.1:7000"}
    args = build_parser(env).parse_args(["serve", "--transfer-listen", "127.0.0.1:0"])
    config = config_from_args(args)
    assert (config.service_token, config.listen) == ("tok", "127.0.0.1:7000")
    assert config.transfer_listen == "127.0.0.1:0"
    assert config.volumes == DEFAULT_VOLUMES
    assert DEFAULT_VOLUMES[0].options["path"] == ".bai/vfroot/local"


def test_service_token_is_required() -> None:
    with pytest.raises(SystemExit):
        build_parser({}).parse_args(["serve"])


def test_volumes_file(tmp_path: Path) -> None:
    path = tmp_path / "v.toml"
    path.write_text(
        'transfer_secret = "sek"\n'
        "[[volumes]]\n"
        'name = "local"\nbackend = "fs"\noptions = { path = "/srv/a" }\n'
        "[[volumes]]\n"
        'name = "bucket"\nbackend = "s3"\n'
        '[volumes.options]\nbucket = "b"\nendpoint_url = "http://127.0.0.1:9000"\n'
    )
    volumes, settings = load_volumes_file(path)
    assert volumes == (
        VolumeConfig("local", "fs", {"path": "/srv/a"}),
        VolumeConfig("bucket", "s3", {"bucket": "b", "endpoint_url": "http://127.0.0.1:9000"}),
    )
    assert settings == {"transfer_secret": "sek"}
    args = build_parser({}).parse_args(
        ["serve", "--service-token", "t", "--volumes-config", str(path)]
    )
    assert config_from_args(args).transfer_secret == "sek"


@pytest.mark.parametrize(
    "text",
    [
        "",
        '[[volumes]]\nname = "x"\nbackend = "nfs"\n',
        '[[volumes]]\nbackend = "fs"\n',
        '[[volumes]]\nname = "x"\nbackend = "fs"\n[[volumes]]\nname = "x"\nbackend = "fs"\n',
    ],
)
def test_bad_volumes_file(tmp_path: Path, text: str) -> None:
    path = tmp_path / "v.toml"
    path.write_text(text)
    with pytest.raises(ValueError):
        load_volumes_file(path)
