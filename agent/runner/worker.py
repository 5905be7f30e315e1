"""Query-mode worker of the bai kernel runner (stdlib only).

The runner starts this file as ``python3 -u worker.py --ctl-in R --ctl-out W``. It keeps ONE
interpreter namespace alive across executions. Its file descriptors 1 and 2 are pipes read by
the runner, so output of subprocesses started by user code is captured too. Control messages
travel as JSON lines over a separate pipe pair:

runner -> worker: ``{"op": "exec", "code": "..."}`` and ``{"op": "input", "data": "..."}``
worker -> runner: ``{"ev": "waiting_input", "prompt": "..."}``,
                  ``{"ev": "output", "stream": "html"|"media", "data": "..."}``,
                  ``{"ev": "done", "exit_code": N, "exception": "Type: msg" | null}``

Before every control message the worker flushes stdout/stderr, so when the runner sees the
message all earlier output already sits in the pipes and it can drain them first (ordering).
"""

from __future__ import annotations

import argparse
import builtins
import contextlib
import json
import linecache
import os
import signal
import sys
import traceback
import types
from collections.abc import Iterator
from typing import Any, BinaryIO

_THIS_FILE = os.path.abspath(__file__)


class _Control:
    """The control pipe pair towards the runner."""

    def __init__(self, fd_in: int, fd_out: int, interrupts: _Interrupts) -> None:
        # User code must not inherit these: a lingering child holding them would confuse the
        # runner (and could forge control messages by accident).
        os.set_inheritable(fd_in, False)
        os.set_inheritable(fd_out, False)
        self._in: BinaryIO = os.fdopen(fd_in, "rb")
        self._fd_out = fd_out
        self._interrupts = interrupts

    def send(self, message: dict[str, Any]) -> None:
        _flush_std_streams()
        data = (json.dumps(message) + "\n").encode()
        with self._interrupts.deferred():
            view = memoryview(data)
            while view:
                view = view[os.write(self._fd_out, view) :]

    def receive(self) -> dict[str, Any] | None:
        """The next well-formed message, or None at EOF (the runner went away)."""
        while True:
            line = self._in.readline()
            if not line:
                return None
            try:
                message = json.loads(line)
            except ValueError:
                continue
            if isinstance(message, dict):
                return message


def _flush_std_streams() -> None:
    # User code may have replaced sys.stdout; flush both the current and the original objects.
    for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        try:
            if stream is not None:
                stream.flush()
        except Exception:
            pass


class _Interrupts:
    """SIGINT raises KeyboardInterrupt only while user code runs.

    A SIGINT that lands while the worker talks to the runner (e.g. an interrupt racing with the
    end of an execution) must not tear a control message in half: between executions it is
    dropped, and inside a control write called from user code (input()) it is deferred.
    """

    def __init__(self) -> None:
        self.user_code_running = False
        self._pending = False
        signal.signal(signal.SIGINT, self._handle)

    def _handle(self, signum: int, frame: types.FrameType | None) -> None:
        if self.user_code_running:
            raise KeyboardInterrupt
        self._pending = True

    @contextlib.contextmanager
    def deferred(self) -> Iterator[None]:
        was_running = self.user_code_running
        self.user_code_running = False
        self._pending = False
        try:
            yield
        finally:
            self.user_code_running = was_running
        if was_running and self._pending:
            self._pending = False
            raise KeyboardInterrupt


class Worker:
    def __init__(self, control: _Control, interrupts: _Interrupts) -> None:
        self._control = control
        self._interrupts = interrupts
        self._counter = 0
        self.namespace: dict[str, Any] = {
            "__name__": "__main__",
            "__doc__": None,
            "__builtins__": builtins,
        }
        builtins.input = self._input
        sys.modules["bai_display"] = self._display_module()

    def serve(self) -> None:
        while True:
            message = self._control.receive()
            if message is None:
                return
            # Stale "input" lines (an input racing with the end of a run) are dropped here.
            if message.get("op") == "exec" and isinstance(message.get("code"), str):
                self._execute(message["code"])

    def _execute(self, source: str) -> None:
        self._counter += 1
        filename = f"<input-{self._counter}>"
        # Registering the source lets tracebacks show the offending lines, like a REPL cell.
        # An mtime of None keeps linecache.checkcache() from evicting the entry.
        linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
        exit_code = 0
        exception: str | None = None
        try:
            self._interrupts.user_code_running = True
            try:
                exec(compile(source, filename, "exec"), self.namespace)
            finally:
                self._interrupts.user_code_running = False
        except SystemExit as exc:
            # sys.exit() ends the run, not the interpreter: the namespace stays usable.
            exit_code = _system_exit_code(exc)
        except BaseException as exc:
            exit_code = 1
            exception = _describe(exc)
            _print_traceback(exc)
        self._control.send({"ev": "done", "exit_code": exit_code, "exception": exception})

    def _input(self, prompt: object = "") -> str:
        """Replacement for builtins.input(): ask the runner (and so the agent) for a line."""
        self._control.send({"ev": "waiting_input", "prompt": str(prompt)})
        while True:
            message = self._control.receive()
            if message is None:
                raise EOFError
            if message.get("op") == "input":
                data = message.get("data")
                return str(data).removesuffix("\n") if data is not None else ""

    def _display_module(self) -> types.ModuleType:
        """``import bai_display`` gives user code a way to emit html/media events."""
        module = types.ModuleType("bai_display", "Rich output for the bai kernel runner.")
        control = self._control

        def html(data: str) -> None:
            control.send({"ev": "output", "stream": "html", "data": str(data)})

        def media(mime_type: str, data: str) -> None:
            payload = json.dumps({"type": str(mime_type), "data": str(data)})
            control.send({"ev": "output", "stream": "media", "data": payload})

        module.html = html  # type: ignore[attr-defined]
        module.media = media  # type: ignore[attr-defined]
        return module


def _system_exit_code(exc: SystemExit) -> int:
    if exc.code is None:
        return 0
    if isinstance(exc.code, int):
        return exc.code
    print(exc.code, file=sys.stderr)
    return 1


def _describe(exc: BaseException) -> str:
    """``Type: message`` the way the last line of a Python traceback names it."""
    kind = type(exc)
    name = kind.__qualname__
    if kind.__module__ not in ("builtins", "__main__"):
        name = f"{kind.__module__}.{name}"
    # SyntaxError's str() repeats the location that the traceback already shows.
    message = exc.msg if isinstance(exc, SyntaxError) and exc.msg else str(exc)
    return f"{name}: {message}" if message else name


def _print_traceback(exc: BaseException) -> None:
    report = traceback.TracebackException.from_exception(exc)
    _hide_worker_frames(report, set())
    text = "".join(report.format())
    try:
        sys.stderr.write(text)
    except Exception:
        os.write(2, text.encode(errors="replace"))


def _hide_worker_frames(report: traceback.TracebackException, seen: set[int]) -> None:
    """Drop this file's frames (the exec() call, input(), the SIGINT handler) everywhere in
    the report, chained and grouped exceptions included, so the user sees only their code."""
    if id(report) in seen:
        return
    seen.add(id(report))
    kept = [frame for frame in report.stack if os.path.abspath(frame.filename) != _THIS_FILE]
    report.stack = traceback.StackSummary.from_list(kept)
    related = [report.__cause__, report.__context__, *(report.exceptions or [])]
    for other in related:
        if other is not None:
            _hide_worker_frames(other, seen)


def _setup_std_streams() -> None:
    # Pipes would otherwise take the locale's encoding; the runner decodes UTF-8.
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            reconfigure(
                encoding="utf-8",
                errors="backslashreplace",
                line_buffering=True,
                write_through=False,
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--ctl-in", type=int, required=True)
    parser.add_argument("--ctl-out", type=int, required=True)
    args = parser.parse_args()
    # User code should see the interpreter much like `python3 -c`: a clean argv, cwd on sys.path,
    # and not this runner directory.
    sys.argv = [""]
    script_dir = os.path.dirname(_THIS_FILE)
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != script_dir]
    sys.path.insert(0, "")
    _setup_std_streams()
    interrupts = _Interrupts()
    Worker(_Control(args.ctl_in, args.ctl_out, interrupts), interrupts).serve()


if __name__ == "__main__":
    main()
