#!/usr/bin/env python3
"""bai kernel runner: lets the agent run code inside a kernel container over a Unix socket.

Mounted read-only into every kernel container and started as
``python3 /opt/bai-runner/runner.py --socket /run/bai/runner.sock``. Standard library only.
The wire protocol is described in protocol.md next to this file.

Query mode runs Python in a persistent worker process (worker.py, next to this file) whose
fds 1/2 are pipes read here; batch mode runs ``/bin/bash -c`` in its own process group.
The runner also reaps every child, so it can serve as PID 1 of the container.

Both files run as scripts (never imported), so Python writes no bytecode cache next to them:
the directory may be mounted read-only.
"""

from __future__ import annotations

import argparse
import asyncio
import codecs
import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

PROTOCOL_VERSION = 1
READ_CHUNK = 65536
# How long a query worker gets to react to SIGINT (or a batch job to SIGTERM) after a timeout.
KILL_GRACE_S = 2.0
# A request line carries the whole code to run, so allow large ones.
REQUEST_LIMIT = 64 * 1024 * 1024
# Bounded drain: a background process that writes forever must not stall the event loop.
MAX_DRAIN_READS = 256
# A worker that dies sooner than this after its start is restarted only after a pause.
WORKER_MIN_LIFETIME_S = 1.0
# App names become file names (<name>.sock, <name>.log) next to the runner's socket.
SERVICE_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
# A bridged app is polled this often until its TCP port accepts connections.
BRIDGE_POLL_S = 0.05
WORKER_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "worker.py")

Event = dict[str, Any]
OutputSink = Callable[[str, str], None]


def _exit_code(status_code: int) -> int:
    """os.waitstatus_to_exitcode() gives -N for a signal; report 128+N like a shell does."""
    return 128 - status_code if status_code < 0 else status_code


def _work_dir() -> str:
    for candidate in (os.environ.get("HOME"), "/home/work"):
        if candidate and os.path.isdir(candidate):
            return candidate
    return os.getcwd()


def _signal_group(pgid: int, signum: int) -> bool:
    try:
        os.killpg(pgid, signum)
    except (ProcessLookupError, PermissionError):
        return False
    return True


class ChildReaper:
    """Reaps every exited child and hands the exit status to whoever watches that pid.

    One waitpid(-1) loop instead of asyncio's child watchers: as PID 1 the runner inherits
    orphans, which must be reaped too, and a per-pid watcher would not see them.
    """

    def __init__(self) -> None:
        self._watchers: dict[int, Callable[[int], None]] = {}

    def watch(self, pid: int, callback: Callable[[int], None]) -> None:
        self._watchers[pid] = callback

    def reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            callback = self._watchers.pop(pid, None)
            if callback is not None:
                callback(_exit_code(os.waitstatus_to_exitcode(status)))


class OutputPipe:
    """Non-blocking reader of a child's stdout or stderr pipe, decoded as UTF-8."""

    def __init__(self, fd: int, stream: str, sink: OutputSink) -> None:
        self.fd = fd
        self.stream = stream
        self._sink = sink
        # Incremental, so a multi-byte character split across two reads survives.
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._open = True
        os.set_blocking(fd, False)
        asyncio.get_running_loop().add_reader(fd, self._read_once)

    def _read_once(self) -> bool:
        """Forward one chunk; False when nothing more is readable right now."""
        if not self._open:
            return False
        try:
            data = os.read(self.fd, READ_CHUNK)
        except BlockingIOError:
            return False
        except OSError:
            data = b""
        if not data:
            self._stop_reading()
            return False
        text = self._decoder.decode(data)
        if text:
            self._sink(self.stream, text)
        return True

    def drain(self) -> None:
        """Forward whatever already sits in the pipe (the writer reported it is done)."""
        for _ in range(MAX_DRAIN_READS):
            if not self._read_once():
                return

    def _stop_reading(self) -> None:
        if self._open:
            self._open = False
            asyncio.get_running_loop().remove_reader(self.fd)

    def close(self) -> None:
        self._stop_reading()
        with contextlib.suppress(OSError):
            os.close(self.fd)


def _spawn(
    argv: list[str], sink: OutputSink, pass_fds: tuple[int, ...] = ()
) -> tuple[int, OutputPipe, OutputPipe]:
    """Start a child in its own process group with stdout/stderr piped to us."""
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    try:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out_w,
            stderr=err_w,
            pass_fds=pass_fds,
            cwd=_work_dir(),
            # Its own group: interrupts and kills reach the children it starts too.
            process_group=0,
        )
    except BaseException:
        for fd in (out_r, err_r):
            os.close(fd)
        raise
    finally:
        os.close(out_w)
        os.close(err_w)
    # The reaper collects the exit status; stop Popen from ever polling this pid itself.
    proc.returncode = 0
    return proc.pid, OutputPipe(out_r, "stdout", sink), OutputPipe(err_r, "stderr", sink)


def _spawn_service(argv: list[str], env: dict[str, str], log_path: str) -> subprocess.Popen[bytes]:
    """Start an app in its own process group, its output appended to ``log_path``."""
    with open(log_path, "ab") as log_file:
        return subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            cwd=_work_dir(),
            env={**os.environ, **env},
            process_group=0,
        )


class QueryWorker:
    """The persistent Python interpreter process that holds the query-mode namespace."""

    def __init__(self, on_output: OutputSink, on_control: Callable[[Event], None]) -> None:
        ctl_in_r, self._ctl_in = os.pipe()
        self._ctl_out, ctl_out_w = os.pipe()
        argv = [sys.executable, "-u", WORKER_PATH]
        argv += ["--ctl-in", str(ctl_in_r), "--ctl-out", str(ctl_out_w)]
        try:
            self.pid, self.stdout, self.stderr = _spawn(argv, on_output, (ctl_in_r, ctl_out_w))
        except BaseException:
            os.close(self._ctl_in)
            os.close(self._ctl_out)
            raise
        finally:
            os.close(ctl_in_r)
            os.close(ctl_out_w)
        self.started_at = time.monotonic()
        self._on_control = on_control
        self._ctl_buffer = b""
        self._ctl_open = True
        os.set_blocking(self._ctl_out, False)
        asyncio.get_running_loop().add_reader(self._ctl_out, self._read_control)

    async def send(self, message: Event) -> None:
        data = (json.dumps(message) + "\n").encode()
        # Code can exceed the pipe buffer; a thread keeps the loop free while the worker reads.
        try:
            await asyncio.to_thread(_write_all, self._ctl_in, data)
        except OSError:
            pass  # the worker died; the reaper reports it

    def signal(self, signum: int) -> bool:
        return _signal_group(self.pid, signum)

    def _read_control(self) -> bool:
        try:
            data = os.read(self._ctl_out, READ_CHUNK)
        except BlockingIOError:
            return False
        except OSError:
            data = b""
        if not data:
            self._stop_control()
            return False
        self._ctl_buffer += data
        *lines, self._ctl_buffer = self._ctl_buffer.split(b"\n")
        for line in lines:
            try:
                message = json.loads(line)
            except ValueError:
                continue
            if isinstance(message, dict):
                self._on_control(message)
        return True

    def drain(self) -> None:
        """Handle everything the worker wrote before it exited."""
        for _ in range(MAX_DRAIN_READS):
            if not self._ctl_open or not self._read_control():
                break
        self.stdout.drain()
        self.stderr.drain()

    def _stop_control(self) -> None:
        if self._ctl_open:
            self._ctl_open = False
            asyncio.get_running_loop().remove_reader(self._ctl_out)

    def close(self) -> None:
        self._stop_control()
        for fd in (self._ctl_in, self._ctl_out):
            with contextlib.suppress(OSError):
                os.close(fd)
        self.stdout.close()
        self.stderr.close()


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


class BatchJob:
    """One ``/bin/bash -c`` command in its own process group."""

    def __init__(self, code: str, on_output: OutputSink) -> None:
        self.pid, self.stdout, self.stderr = _spawn(["/bin/bash", "-c", code], on_output)

    def signal(self, signum: int) -> bool:
        return _signal_group(self.pid, signum)

    def close(self) -> None:
        self.stdout.close()
        self.stderr.close()


class Execution:
    """One exec request: its event queue and its state."""

    def __init__(self, mode: str, owner: QueryWorker | BatchJob) -> None:
        self.mode = mode
        self.owner = owner
        self.events: asyncio.Queue[Event] = asyncio.Queue()
        self.timed_out = False
        self.waiting_input = False
        self.finished = False
        self.timer: asyncio.Task[None] | None = None

    def emit(self, event: Event) -> None:
        if not self.finished:
            self.events.put_nowait(event)


class Runner:
    def __init__(self, socket_path: str) -> None:
        self.socket_path = socket_path
        self.reaper = ChildReaper()
        self.worker: QueryWorker | None = None
        self.current: Execution | None = None
        self.shutting_down = False
        self.services: dict[str, int] = {}  # app name -> pid of its running process group
        self._bridges: set[asyncio.Task[None]] = set()  # socket->TCP relays of bridged apps
        self._stop = asyncio.Event()

    # ----- lifecycle -----------------------------------------------------------------

    async def serve(self) -> None:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGCHLD, self.reaper.reap)
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self._stop.set)
        self._restart_worker()  # started ahead, so the first query exec does not wait for it
        server = await self._listen()
        print(f"bai-runner: listening on {self.socket_path} (pid {os.getpid()})", file=sys.stderr)
        try:
            await self._stop.wait()
        finally:
            self.shutting_down = True
            server.close()
            with contextlib.suppress(OSError):
                os.unlink(self.socket_path)
            self._kill_children()

    async def _listen(self) -> asyncio.AbstractServer:
        directory = os.path.dirname(self.socket_path)
        if directory:
            os.makedirs(directory, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.socket_path)  # stale socket of an earlier run
        server = await asyncio.start_unix_server(
            self._handle_connection, path=self.socket_path, limit=REQUEST_LIMIT
        )
        # The agent may run as another user than the kernel (and the reverse).
        os.chmod(self.socket_path, 0o666)
        return server

    def _kill_children(self) -> None:
        for pid in self.services.values():
            _signal_group(pid, signal.SIGKILL)
        if self.worker is not None:
            self.worker.signal(signal.SIGKILL)
        if self.current is not None and isinstance(self.current.owner, BatchJob):
            self.current.owner.signal(signal.SIGKILL)

    # ----- query worker --------------------------------------------------------------

    def _ensure_worker(self) -> QueryWorker:
        if self.worker is None:
            worker: QueryWorker | None = None

            def on_output(stream: str, text: str) -> None:
                self._route_output(worker, stream, text)

            def on_control(message: Event) -> None:
                self._on_worker_message(worker, message)

            worker = QueryWorker(on_output, on_control)
            self.worker = worker
            self.reaper.watch(worker.pid, lambda code: self._on_worker_exit(worker, code))
        return self.worker

    def _restart_worker(self) -> None:
        if self.shutting_down:
            return
        try:
            self._ensure_worker()
        except OSError as exc:
            # Not fatal: the next query exec tries again (and reports the error if it fails).
            print(f"bai-runner: cannot start the Python worker: {exc}", file=sys.stderr)

    def _on_worker_message(self, worker: QueryWorker | None, message: Event) -> None:
        ex = self.current
        if ex is None or ex.owner is not worker or worker is None:
            return
        kind = message.get("ev")
        # Output the worker wrote before this message is in the pipes already: forward it first.
        worker.stdout.drain()
        worker.stderr.drain()
        if kind == "done":
            if message.get("exception"):
                ex.emit({"stream": "exception", "data": str(message["exception"])})
            code = message.get("exit_code")
            self._finish(ex, code if isinstance(code, int) else 1)
        elif kind == "waiting_input":
            ex.waiting_input = True
            ex.emit({"waiting_input": True, "prompt": str(message.get("prompt", ""))})
        elif kind == "output" and message.get("stream") in ("html", "media"):
            ex.emit({"stream": message["stream"], "data": str(message.get("data", ""))})

    def _on_worker_exit(self, worker: QueryWorker, code: int) -> None:
        worker.drain()  # may deliver a final "done"
        worker.close()
        if self.worker is worker:
            self.worker = None
        ex = self.current
        if ex is not None and ex.owner is worker and not ex.finished:
            ex.emit(
                {
                    "stream": "stderr",
                    "data": f"[bai-runner] the Python worker exited with code {code}; "
                    "a fresh interpreter was started and the namespace is lost\n",
                }
            )
            self._finish(ex, code)
        lived = time.monotonic() - worker.started_at
        delay = 0.0 if lived >= WORKER_MIN_LIFETIME_S else WORKER_MIN_LIFETIME_S
        asyncio.get_running_loop().call_later(delay, self._restart_worker)

    # ----- executions ----------------------------------------------------------------

    def _route_output(self, owner: QueryWorker | BatchJob | None, stream: str, text: str) -> None:
        # Output produced between executions (e.g. by a background thread) has no reader.
        ex = self.current
        if ex is not None and ex.owner is owner:
            ex.emit({"stream": stream, "data": text})

    def _finish(self, ex: Execution, exit_code: int) -> None:
        if ex.finished:
            return
        if ex.timed_out and exit_code == 0:
            exit_code = 124  # the code swallowed the interrupt; a timeout is still a failure
        ex.emit({"finished": True, "exit_code": exit_code, "timed_out": ex.timed_out})
        ex.finished = True
        ex.waiting_input = False
        if ex.timer is not None and ex.timer is not asyncio.current_task():
            ex.timer.cancel()
        if self.current is ex:
            self.current = None

    async def _start_query(self, code: str) -> Execution:
        worker = self._ensure_worker()
        ex = Execution("query", worker)
        self.current = ex
        await worker.send({"op": "exec", "code": code})
        return ex

    def _start_batch(self, code: str) -> Execution:
        job: BatchJob | None = None

        def on_output(stream: str, text: str) -> None:
            # Batch output also goes to the container log, so `session logs` shows what a batch
            # session printed (query output stays with its caller only).
            _write_all(1 if stream == "stdout" else 2, text.encode("utf-8", "backslashreplace"))
            self._route_output(job, stream, text)

        job = BatchJob(code, on_output)
        ex = Execution("batch", job)
        self.current = ex

        def on_exit(code: int) -> None:
            assert job is not None
            job.stdout.drain()
            job.stderr.drain()
            job.close()
            self._finish(ex, code)

        self.reaper.watch(job.pid, on_exit)
        return ex

    async def _enforce_timeout(self, ex: Execution, seconds: float) -> None:
        await asyncio.sleep(seconds)
        if ex.finished:
            return
        ex.timed_out = True
        owner = ex.owner
        first, last = (
            (signal.SIGINT, signal.SIGKILL)
            if isinstance(owner, QueryWorker)
            else (signal.SIGTERM, signal.SIGKILL)
        )
        owner.signal(first)
        await asyncio.sleep(KILL_GRACE_S)
        if not ex.finished:
            # A killed query worker is replaced by _on_worker_exit (namespace lost).
            owner.signal(last)

    # ----- connections ---------------------------------------------------------------

    async def _handle_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        try:
            request = await self._read_request(reader)
            if isinstance(request, str):
                await _send(writer, {"error": request})
            else:
                await self._dispatch(request, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the client went away; nothing to answer
        except Exception as exc:  # the runner must survive any request
            with contextlib.suppress(Exception):
                await _send(writer, {"error": f"internal error: {type(exc).__name__}: {exc}"})
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _read_request(self, reader: asyncio.StreamReader) -> Event | str:
        """The request object, or an error message."""
        try:
            line = await reader.readline()
        except ValueError:
            return "request too large"
        if not line.strip():
            return "empty request"
        try:
            request = json.loads(line)
        except ValueError as exc:
            return f"malformed JSON: {exc}"
        if not isinstance(request, dict):
            return "a request must be a JSON object"
        return request

    async def _dispatch(self, request: Event, writer: asyncio.StreamWriter) -> None:
        handlers: dict[str, Callable[[Event, asyncio.StreamWriter], Awaitable[None]]] = {
            "ping": self._op_ping,
            "exec": self._op_exec,
            "interrupt": self._op_interrupt,
            "input": self._op_input,
            "service": self._op_service,
        }
        op = request.get("op")
        handler = handlers.get(op) if isinstance(op, str) else None
        if handler is None:
            await _send(writer, {"error": f"unknown op: {op!r}"})
            return
        await handler(request, writer)

    async def _op_ping(self, request: Event, writer: asyncio.StreamWriter) -> None:
        await _send(writer, {"ok": True, "pid": os.getpid(), "version": PROTOCOL_VERSION})

    async def _op_interrupt(self, request: Event, writer: asyncio.StreamWriter) -> None:
        ex = self.current
        interrupted = ex is not None and not ex.finished and ex.owner.signal(signal.SIGINT)
        await _send(writer, {"ok": True, "interrupted": interrupted})

    async def _op_input(self, request: Event, writer: asyncio.StreamWriter) -> None:
        data = request.get("data")
        if not isinstance(data, str):
            await _send(writer, {"error": "input: 'data' must be a string"})
            return
        ex = self.current
        if ex is None or not ex.waiting_input or not isinstance(ex.owner, QueryWorker):
            await _send(writer, {"ok": False, "error": "not-waiting"})
            return
        ex.waiting_input = False
        await ex.owner.send({"op": "input", "data": data})
        await _send(writer, {"ok": True})

    async def _op_service(self, request: Event, writer: asyncio.StreamWriter) -> None:
        name, argv, env = request.get("name"), request.get("argv"), request.get("env") or {}
        service_def = request.get("service_def") or ""
        bridge_port = request.get("bridge_port")
        if (
            not isinstance(name, str)
            or not SERVICE_NAME_RE.match(name)
            or not isinstance(argv, list)
            or not all(isinstance(a, str) for a in argv)
            or not (argv or service_def)
            or not isinstance(service_def, str)
            or not isinstance(env, dict)
            or not all(isinstance(k, str) and isinstance(v, str) for k, v in env.items())
            or not (bridge_port is None or _is_port(bridge_port))
        ):
            await _send(writer, {"error": "service: 'name', 'argv' (strings, or 'service_def') "
                                          "and 'env' required; 'bridge_port' a TCP port"})
            return
        pid = self.services.get(name)
        if pid is not None:
            await _send(writer, {"ok": True, "pid": pid, "started": False})
            return
        if service_def:
            try:
                command, def_env = _load_service_def(service_def, bridge_port)
            except ValueError as exc:
                await _send(writer, {"error": f"service: {name}: {exc}"})
                return
            argv, env = [*command, *argv], {**def_env, **env}
        log_path = os.path.join(os.path.dirname(self.socket_path) or ".", f"{name}.log")
        try:
            proc = _spawn_service(argv, env, log_path)
        except (OSError, ValueError) as exc:
            await _send(writer, {"error": f"service: cannot start {name}: {exc}"})
            return
        proc.returncode = 0  # the reaper collects the exit status
        self.services[name] = proc.pid
        exited = asyncio.Event()

        def on_exit(code: int) -> None:
            if self.services.get(name) == proc.pid:
                del self.services[name]
            exited.set()
            print(f"bai-runner: service {name} exited with {code}", file=sys.stderr)

        self.reaper.watch(proc.pid, on_exit)
        self.reaper.reap()  # it may have exited already
        if bridge_port is not None:
            sock = os.path.join(os.path.dirname(self.socket_path) or ".", f"{name}.sock")
            task = asyncio.create_task(_bridge(name, sock, bridge_port, exited))
            self._bridges.add(task)
            task.add_done_callback(self._bridges.discard)
        await _send(writer, {"ok": True, "pid": proc.pid, "started": True})

    async def _op_exec(self, request: Event, writer: asyncio.StreamWriter) -> None:
        problem = _check_exec_request(request)
        if problem is not None:
            await _send(writer, {"error": problem})
            return
        if self.current is not None or self.shutting_down:
            await _send(writer, {"error": "busy"})
            return
        code: str = request["code"]
        mode: str = request["mode"]
        try:
            ex = await self._start_query(code) if mode == "query" else self._start_batch(code)
        except (OSError, ValueError) as exc:  # e.g. the pids limit, or a NUL byte in a command
            await _send(writer, {"error": f"exec: cannot start the {mode} process: {exc}"})
            return
        timeout = request.get("timeout")
        if timeout is not None and not ex.finished:
            ex.timer = asyncio.create_task(self._enforce_timeout(ex, float(timeout)))
        await self._stream(ex, writer)

    async def _stream(self, ex: Execution, writer: asyncio.StreamWriter) -> None:
        # The execution goes on if the client leaves; its events are then dropped.
        while True:
            event = await ex.events.get()
            await _send(writer, event)
            if event.get("finished"):
                return


def _check_exec_request(request: Event) -> str | None:
    if request.get("mode") not in ("query", "batch"):
        return "exec: 'mode' must be 'query' or 'batch'"
    if not isinstance(request.get("code"), str):
        return "exec: 'code' must be a string"
    timeout = request.get("timeout")
    if timeout is not None and (
        isinstance(timeout, bool) or not isinstance(timeout, int | float) or not timeout > 0
    ):
        return "exec: 'timeout' must be a positive number of seconds or null"
    return None


def _encode(event: Event) -> bytes:
    try:
        return (json.dumps(event, ensure_ascii=False) + "\n").encode()
    except UnicodeEncodeError:  # lone surrogates: fall back to \u escapes
        return (json.dumps(event) + "\n").encode()


async def _send(writer: asyncio.StreamWriter, event: Event) -> None:
    writer.write(_encode(event))
    await writer.drain()


# ----- bridged apps ---------------------------------------------------------------------
# Containers have no network: an app that listens on a TCP port inside the container's own
# network namespace is reached through a Unix socket the runner relays to that port.


def _is_port(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 65535


def _load_service_def(path: str, port: int | None) -> tuple[list[str], dict[str, str]]:
    """Command line and environment of a Backend.AI service definition (JSON file).

    ``command`` items are formatted with ``ports`` (``{ports[0]}``), ``port`` and
    ``runtime_path``, like Backend.AI's service-defs; ``env`` values likewise.
    """
    try:
        with open(path, encoding="utf-8") as file:
            doc = json.load(file)
    except FileNotFoundError:
        raise ValueError(f"no service definition {path}") from None
    except (OSError, ValueError) as exc:
        raise ValueError(f"unreadable service definition {path}: {exc}") from None
    command = doc.get("command") if isinstance(doc, dict) else None
    env = doc.get("env", {}) if isinstance(doc, dict) else None
    if (
        not isinstance(command, list)
        or not command
        or not all(isinstance(c, str) for c in command)
        or not isinstance(env, dict)
        or not all(isinstance(k, str) and isinstance(v, str) for k, v in env.items())
    ):
        raise ValueError(f"{path}: 'command' must be a list of strings, 'env' an object")
    values = {"ports": [port] if port else [], "port": port, "runtime_path": sys.executable}
    try:
        return [c.format(**values) for c in command], {
            k: v.format(**values) for k, v in env.items()
        }
    except (KeyError, IndexError, ValueError) as exc:
        raise ValueError(f"{path}: bad placeholder in 'command' or 'env': {exc}") from None


def _accepts_tcp(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.settimeout(1.0)
        try:
            probe.connect(("127.0.0.1", port))
        except OSError:
            return False
    return True


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(READ_CHUNK):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except OSError:
        writer.close()


async def _bridge(name: str, sock: str, port: int, exited: asyncio.Event) -> None:
    """Relays ``sock`` to 127.0.0.1:``port`` while the app runs.

    The socket is bound only once the port accepts connections, so a client that can connect
    to the socket reaches a listening app; it is removed when the app exits.
    """
    loop = asyncio.get_running_loop()
    while not await loop.run_in_executor(None, _accepts_tcp, port):
        if exited.is_set():
            return
        await asyncio.sleep(BRIDGE_POLL_S)

    async def relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            writer.close()
            return
        up_sock = up_writer.get_extra_info("socket")
        if up_sock is not None:
            up_sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        finally:
            up_writer.close()
            writer.close()

    with contextlib.suppress(FileNotFoundError):
        os.unlink(sock)  # a stale socket of an earlier run of the app
    try:
        server = await asyncio.start_unix_server(relay, path=sock)
    except OSError as exc:
        print(f"bai-runner: service {name}: cannot bind {sock}: {exc}", file=sys.stderr)
        return
    os.chmod(sock, 0o666)
    print(f"bai-runner: service {name}: {sock} relays to port {port}", file=sys.stderr)
    try:
        await exited.wait()
    finally:
        server.close()
        with contextlib.suppress(OSError):
            os.unlink(sock)


def main() -> None:
    parser = argparse.ArgumentParser(description="bai kernel runner")
    parser.add_argument("--socket", required=True, help="path of the Unix socket to listen on")
    args = parser.parse_args()
    asyncio.run(Runner(args.socket).serve())


if __name__ == "__main__":
    main()
