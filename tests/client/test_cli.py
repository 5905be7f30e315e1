"""``bai`` argument parsing, help, and how failures are reported."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from bai.client import cli
from bai.client.run import Output, load_code


def test_session_create_collects_slots_and_environment() -> None:
    args = cli.parse_args(
        [
            "session", "create", "--name", "s1", "--image", "python:3.11",
            "-r", "cpu=1", "-r", "mem=512m", "-e", "A=B", "-e", "EMPTY=",
            "--type", "batch", "-c", "echo hi", "--enqueue-only",
        ]
    )  # fmt: skip
    assert args.handler is cli._session_create
    assert (args.name, args.image, args.type) == ("s1", "python:3.11", "batch")
    assert dict(args.resources) == {"cpu": "1", "mem": "512m"}
    assert dict(args.environ) == {"A": "B", "EMPTY": ""}
    assert args.startup_command == "echo hi" and args.enqueue_only


@pytest.mark.parametrize(
    "argv",
    [
        ["-o", "json", "session", "list"],
        ["session", "-o", "json", "list"],
        ["session", "list", "--output", "json"],
    ],
)
def test_output_json_is_global(argv: list[str]) -> None:
    assert cli.parse_args(argv).output == "json"


def test_defaults() -> None:
    args = cli.parse_args(["session", "list"])
    assert (args.output, args.manager, args.timeout, args.all) == ("table", None, None, False)
    run = cli.parse_args(["run", "print(1)"])
    assert (run.image, run.session, run.keep, run.code) == ("python", None, False, "print(1)")
    assert cli.parse_args(["run", "x", "--manager", "h:1", "--keep", "-s", "n"]).manager == "h:1"


@pytest.mark.parametrize(
    ("argv", "handler"),
    [
        (["session", "list", "--all"], cli._session_list),
        (["session", "info", "x"], cli._session_info),
        (["session", "logs", "x", "--follow"], cli._session_logs),
        (["session", "destroy", "x", "--forced"], cli._session_destroy),
        (["image", "list"], cli._image_list),
        (["run", "f.py", "--session", "s"], cli._run),
    ],
)
def test_every_command_has_a_handler(argv: list[str], handler: object) -> None:
    assert cli.parse_args(argv).handler is handler


@pytest.mark.parametrize(
    "argv",
    [
        ["session", "create", "-r", "cpu"],
        ["session", "create", "-e", "=v"],
        ["session", "info"],
        ["session"],
        ["-o", "yaml", "image", "list"],
        [],
    ],
)
def test_bad_usage_exits_2(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.parse_args(argv)
    assert exit_info.value.code == 2


def test_help_lists_commands_and_configuration(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.parse_args(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for word in ("session", "run", "image", "--output", "BAI_MANAGER_ADDR", "BACKEND_ACCESS_KEY"):
        assert word in text


def test_errors_print_message_and_reason_and_exit_1(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("BACKEND_ACCESS_KEY", raising=False)
    monkeypatch.delenv("BACKEND_SECRET_KEY", raising=False)
    assert cli.main(["session", "list"]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == (
        "error: set BACKEND_ACCESS_KEY and BACKEND_SECRET_KEY (MISSING_CREDENTIALS)\n"
    )


def test_run_reads_a_file_argument(tmp_path: Path) -> None:
    script = tmp_path / "job.py"
    script.write_text("print('from file')\n")
    assert load_code(str(script)) == "print('from file')\n"
    assert load_code("print(1)") == "print(1)"
    assert load_code(str(tmp_path)) == str(tmp_path)  # a directory is not code


def test_output_writes_through_and_collects() -> None:
    out, err = io.StringIO(), io.StringIO()
    output = Output(out, err)
    for stream, data in (("stdout", "a"), ("stderr", "b"), ("html", "<p>"), ("stdout", "c")):
        output.write(stream, data)
    assert out.getvalue() == "a[html] <p>\nc" and err.getvalue() == "b"
    assert output.console == [("stdout", "a"), ("stderr", "b"), ("html", "<p>"), ("stdout", "c")]


def test_public_surface_is_exactly_all() -> None:
    import types

    import bai.client

    public = {
        name
        for name, value in vars(bai.client).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }
    assert public == set(bai.client.__all__)
