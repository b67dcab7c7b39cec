"""Real processes for end-to-end tests: the web server as the Procfile runs it
(`gemini_clone.serve`, the same command as `./run.sh` and the Docker image), and Celery
workers.

    stack = Stack(env=process_env(GEMINI_BASE_URL=fake.url), log_dir=tmp_path)
    web = stack.start_web()
    worker = stack.start_worker(name="w1", beat=True)
    beat = stack.start_beat(name="beat")    # or beat on its own, to stop apart from the worker
    stack.wait_ready()                      # the server listens, the workers consume, beat beats
    httpx.get(f"{stack.url}/healthz")
    worker.kill()                           # SIGKILL, no goodbye
    stack.close()                           # stops whatever is still running

The processes get this process's environment (the test SECRET_KEY, DEBUG...), pointed at the
test database pytest-django made, so they must be stopped before that database is dropped:
the pytest fixtures close the stack on teardown, ahead of the database fixtures.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

from django.db import connection

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
T = TypeVar("T")

_running: set[ManagedProcess] = set()


def database_url() -> str:
    """The URL of the database this process uses (the test database, under pytest-django)."""
    params = connection.settings_dict
    credentials = quote(params["USER"] or "")
    if params["PASSWORD"]:
        credentials += ":" + quote(params["PASSWORD"])
    # A Unix socket directory (the embedded server) travels percent-encoded in the host part.
    host = quote(params["HOST"] or "127.0.0.1", safe="")
    port = params["PORT"] or "5432"
    return f"postgres://{credentials}@{host}:{port}/{quote(params['NAME'])}"


def process_env(**overrides: object) -> dict[str, str]:
    """The environment of a child process: ours, on the test database, plus `overrides`."""
    env = dict(os.environ)
    env.update(
        {
            "DATABASE_URL": database_url(),
            "ALLOWED_HOSTS": "127.0.0.1,localhost",
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update({name: str(value) for name, value in overrides.items()})
    return env


def wait_until(
    predicate: Callable[[], T | None],
    *,
    timeout: float,
    what: str,
    interval: float = 0.05,
    watch: list[ManagedProcess] | None = None,
) -> T:
    """Poll `predicate` until it returns something truthy; fail after `timeout` seconds, or
    at once if one of the `watch` processes died meanwhile."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        for process in watch or []:
            if not process.alive:
                raise AssertionError(
                    f"{process.name} exited while waiting for {what}:\n{process.log_tail()}"
                )
        if time.monotonic() >= deadline:
            logs = "\n".join(p.log_tail() for p in watch or [])
            raise AssertionError(f"Timed out after {timeout} s waiting for {what}\n{logs}")
        time.sleep(interval)


class ManagedProcess:
    """A child process in its own process group, its output in a log file."""

    def __init__(
        self,
        *,
        name: str,
        args: list[str],
        env: dict[str, str],
        log_path: Path,
        ready_line: str | None = None,
    ) -> None:
        self.name = name
        self.log_path = log_path
        self.ready_line = ready_line  # what its log says once it is ready
        self._log = log_path.open("wb")
        self.popen = subprocess.Popen(  # noqa: S603 (our own commands)
            args,
            cwd=ROOT,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its children (beat) share its group: one signal for all
        )
        _running.add(self)

    @property
    def alive(self) -> bool:
        return self.popen.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def log_tail(self, lines: int = 40) -> str:
        tail = "\n".join(self.log().splitlines()[-lines:])
        return f"--- {self.name} (last {lines} lines) ---\n{tail}"

    def kill(self) -> None:
        """SIGKILL the process and its children: no shutdown, no acknowledgements."""
        self._signal(signal.SIGKILL)
        self.popen.wait(timeout=10)
        self._forget()

    def stop(self, *, signum: int = signal.SIGTERM, grace: float = 5.0) -> None:
        """`signum`, then SIGKILL if it is still running after `grace` seconds."""
        if self.alive:
            self._signal(signum)
            try:
                self.popen.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                self._signal(signal.SIGKILL)
                self.popen.wait(timeout=10)
        else:
            # The leader is gone; children it left behind are still in the group.
            self._signal(signal.SIGKILL)
        self._forget()

    def _signal(self, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signum)

    def _forget(self) -> None:
        _running.discard(self)
        self._log.close()


@atexit.register
def _stop_leftovers() -> None:
    for process in list(_running):
        process.stop(grace=1)


_LISTENING = re.compile(r"Listening on http://[\d.]+:(\d+)")


class Stack:
    """The web server and Celery workers sharing one environment, stopped together."""

    def __init__(self, *, env: dict[str, str], log_dir: Path) -> None:
        self.env = env
        self.log_dir = log_dir
        self.processes: list[ManagedProcess] = []
        self.web: ManagedProcess | None = None
        self._url: str | None = None

    @property
    def url(self) -> str:
        if self._url is None:
            raise RuntimeError("The web server is not ready; call wait_ready() first.")
        return self._url

    def start_web(self) -> ManagedProcess:
        """The Procfile's `web:` line, the production command (one process here), on a free
        port of loopback."""
        env = {
            **self.env,
            "HOST": "127.0.0.1",
            "PORT": str(_free_port()),
            "WEB_CONCURRENCY": self.env.get("WEB_CONCURRENCY", "1"),
            # Its `python` is this interpreter.
            "PATH": f"{Path(PYTHON).parent}{os.pathsep}{self.env.get('PATH', os.environ['PATH'])}",
        }
        self.web = self._spawn("web", ["bash", str(_PROC_SH), "web"], env=env)
        return self.web

    def start_worker(
        self, *, name: str, concurrency: int = 16, beat: bool = False
    ) -> ManagedProcess:
        args = [
            PYTHON, "-m", "celery", "-A", "gemini_clone", "worker",
            "--pool", "threads", "--concurrency", str(concurrency),
            "--hostname", f"{name}@%h",
            "--without-gossip", "--without-mingle", "--without-heartbeat",
        ]  # fmt: skip
        if beat:
            args += ["--beat", "--schedule", str(self.log_dir / f"{name}-beat-schedule")]
        return self._spawn(name, args, ready_line=" ready.")

    def start_beat(self, *, name: str) -> ManagedProcess:
        args = [
            PYTHON, "-m", "celery", "-A", "gemini_clone", "beat",
            "--schedule", str(self.log_dir / f"{name}-schedule"),
        ]  # fmt: skip
        return self._spawn(name, args, ready_line="beat: Starting...")

    def wait_ready(self, *, timeout: float = 30) -> None:
        """Until the web server listens, every worker started so far consumes its queue and every
        beat started so far runs its schedule."""
        if self.web is not None and self._url is None:
            web = self.web
            port = wait_until(
                lambda: _first_match(_LISTENING, web.log()),
                timeout=timeout,
                what="the web server to listen",
                watch=[web],
            )
            self._url = f"http://127.0.0.1:{port}"
        for process in self.processes:
            if process.ready_line is not None and process.alive:
                wait_until(
                    lambda p=process: p.ready_line in p.log(),  # type: ignore[misc]
                    timeout=timeout,
                    what=f"{process.name} to be ready",
                    watch=[process],
                )

    def logs(self) -> str:
        return "\n".join(process.log_tail() for process in self.processes)

    def close(self) -> None:
        for process in reversed(self.processes):
            if process is self.web:
                process.stop()
            elif process.alive:
                process.kill()  # a test leaves no task worth finishing; a warm stop takes 1 s+

    def _spawn(
        self,
        name: str,
        args: list[str],
        ready_line: str | None = None,
        env: dict[str, str] | None = None,
    ) -> ManagedProcess:
        process = ManagedProcess(
            name=name,
            args=args,
            env=env if env is not None else self.env,
            log_path=self.log_dir / f"{name}.log",
            ready_line=ready_line,
        )
        self.processes.append(process)
        return process


_PROC_SH = Path(__file__).resolve().parents[1] / "scripts" / "proc.sh"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _first_match(pattern: re.Pattern[str], text: str) -> str | None:
    match = pattern.search(text)
    return match.group(1) if match else None


# --- Server-Sent Events ----------------------------------------------------------------------


def sse_parse(lines: Iterator[str]) -> Iterator[tuple[str, Any]]:
    """(event, data) for each event of an SSE body given line by line; comments come as
    ("comment", text). Data is decoded from JSON."""
    name: str | None = None
    data: list[str] = []
    for line in lines:
        if line == "":
            if name is not None or data:
                yield name or "message", json.loads("\n".join(data))
            name, data = None, []
        elif line.startswith(":"):
            yield "comment", line[1:].strip()
        else:
            field, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if field == "event":
                name = value
            elif field == "data":
                data.append(value)


def sse_parse_body(body: bytes) -> list[tuple[str, Any]]:
    return list(sse_parse(iter(body.decode().split("\n"))))
