"""The production web server (`gemini_clone.serve`), started as the Procfile starts it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from testing.e2e import ROOT, Stack, process_env, wait_until

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def two_process_server(tmp_path: Path) -> Iterator[Stack]:
    stack = Stack(env=process_env(WEB_CONCURRENCY=2), log_dir=tmp_path)
    stack.start_web()
    stack.wait_ready()
    yield stack
    stack.close()


def _worker_pids(parent: int) -> list[int]:
    """The processes whose parent is `parent` and that listen (the uvicorn workers, not
    multiprocessing's helpers)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == parent and _socket_inodes(int(entry.name)):
            pids.append(int(entry.name))
    return pids


def _socket_inodes(pid: int) -> set[str]:
    inodes = set()
    try:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            target = os.readlink(fd)
            if target.startswith("socket:["):
                inodes.add(target[len("socket:[") : -1])
    except OSError:
        pass
    return inodes


def _server_side_connections(port: int) -> set[str]:
    """Inodes of the established TCP connections whose local port is `port` and that a
    process accepted (one still in the listen queue has inode 0 until then)."""
    inodes = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local_port = int(fields[1].split(":")[1], 16)
        if local_port == port and fields[3] == "01" and fields[9] != "0":  # 01: ESTABLISHED
            inodes.add(fields[9])
    return inodes


def _workers_when_two(parent: int, *, not_in: tuple[int, ...] = ()) -> list[int] | None:
    pids = _worker_pids(parent)
    return pids if len(pids) == 2 and not set(pids) & set(not_in) else None


def _connections_when(port: int, count: int) -> set[str] | None:
    connections = _server_side_connections(port)
    return connections if len(connections) == count else None


def _server_process(stack: Stack) -> int:
    """The pid of `python -m gemini_clone.serve` (proc.sh execs bash, which execs it)."""
    assert stack.web is not None
    return stack.web.popen.pid


def test_connections_opened_at_once_are_spread_over_the_processes(two_process_server):
    stack = two_process_server
    port = int(stack.url.rsplit(":", 1)[1])
    workers = wait_until(
        lambda: _workers_when_two(_server_process(stack)), timeout=10, what="2 workers"
    )
    # A burst of keep-alive connections, as a load generator or a proxy opens them.
    clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(32)]
    try:
        accepted = wait_until(
            lambda: _connections_when(port, 32), timeout=10, what="32 connections accepted"
        )
        owners: Counter[int] = Counter()

        def every_connection_owned() -> bool:
            owners.clear()
            for pid in workers:
                owners[pid] = len(_socket_inodes(pid) & accepted)
            return sum(owners.values()) == 32

        wait_until(every_connection_owned, timeout=10, what="each connection in a worker")
    finally:
        for client in clients:
            client.close()
    # With one socket shared by both (uvicorn --workers 2) all 32 often went to one process.
    # Spread by the kernel's hash, fewer than 4 on one side has odds of about 3 in a million.
    assert min(owners.values()) >= 4, owners


def test_a_killed_worker_is_started_again_and_the_server_keeps_answering(two_process_server):
    stack = two_process_server
    parent = _server_process(stack)
    before = wait_until(lambda: _workers_when_two(parent), timeout=10, what="2 workers")
    os.kill(before[0], signal.SIGKILL)
    after = wait_until(
        lambda: _workers_when_two(parent, not_in=(before[0],)),
        timeout=20,
        what="the killed worker replaced",
    )
    assert before[1] in after
    for _ in range(20):  # both sockets' connections are answered again
        assert httpx.get(f"{stack.url}/healthz", timeout=10).status_code == 200
    assert stack.web is not None
    assert "exited with code -9; starting it again" in stack.web.log()


def test_sigterm_stops_the_server_and_its_workers(two_process_server):
    stack = two_process_server
    parent = _server_process(stack)
    workers = wait_until(lambda: _workers_when_two(parent), timeout=10, what="2 workers")
    os.kill(parent, signal.SIGTERM)  # the parent only, as a process manager does
    assert stack.web is not None
    assert stack.web.popen.wait(timeout=40) == 0
    for pid in workers:
        assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text()


def test_a_second_server_on_a_taken_port_refuses_to_start(two_process_server):
    """SO_REUSEPORT would otherwise let it join the port and take half the traffic."""
    port = two_process_server.url.rsplit(":", 1)[1]
    second = subprocess.run(
        [sys.executable, "-m", "gemini_clone.serve", "--host", "127.0.0.1", "--port", port],
        cwd=ROOT,
        env=process_env(),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert second.returncode == 1
    assert "Address already in use" in second.stderr


def test_a_forged_x_forwarded_for_does_not_change_the_client_address(tmp_path):
    """The server reads no proxy headers (the application alone trusts `TRUSTED_PROXIES`,
    none here): a client cannot dodge the per-address send limit by forging the header.
    With `uvicorn --proxy-headers`, which trusted loopback peers, every forged address got
    a limit of its own."""
    stack = Stack(
        env=process_env(OTP_MAX_SENDS_PER_IP_PER_HOUR=3, TRUSTED_PROXIES=""), log_dir=tmp_path
    )
    stack.start_web()
    stack.wait_ready()
    try:
        statuses = [
            httpx.post(
                f"{stack.url}/api/auth/send-otp",
                json={"phone": f"+91987650{n:04d}"},
                headers={"X-Forwarded-For": f"203.0.113.{n + 1}"},
                timeout=10,
            ).status_code
            for n in range(4)
        ]
    finally:
        stack.close()
    assert statuses == [200, 200, 200, 429]
