"""The worker runs below the web server's CPU priority (`gemini_clone.worker_priority`): every
thread of a real worker at WORKER_NICE, and its session's autogroup too when it leads one."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from testing.e2e import ManagedProcess, Stack, process_env


def _niceness(pid: int | str, thread_id: int | str) -> int:
    stat = Path(f"/proc/{pid}/task/{thread_id}/stat").read_text()
    return int(stat.rpartition(")")[2].split()[16])  # field 19, after the command's name


def _threads_niceness(process: ManagedProcess) -> set[int]:
    pid = process.popen.pid
    return {_niceness(pid, thread_id) for thread_id in os.listdir(f"/proc/{pid}/task")}


def _autogroup_niceness(process: ManagedProcess) -> int | None:
    autogroup = Path(f"/proc/{process.popen.pid}/autogroup")
    return int(autogroup.read_text().split()[-1]) if autogroup.exists() else None


@pytest.fixture
def stack(transactional_db: None, tmp_path: Path) -> Iterator[Stack]:
    stack = Stack(env=process_env(WORKER_NICE=7, LOG_LEVEL="INFO"), log_dir=tmp_path)
    try:
        yield stack
    finally:
        stack.close()


@pytest.mark.e2e
def test_a_worker_runs_below_the_web_servers_priority(stack: Stack) -> None:
    web = stack.start_web()
    worker = stack.start_worker(name="niced", concurrency=4)
    stack.wait_ready()

    ours = os.getpriority(os.PRIO_PROCESS, 0)  # what the processes start with
    lowered = max(7, ours)  # a niceness is only ever raised
    assert _threads_niceness(worker) == {lowered}  # every thread; those it starts later too
    assert _autogroup_niceness(worker) in (max(7, _autogroup_niceness(web) or 0), None)
    assert f"Worker CPU priority: nice {lowered}" in worker.log()
    assert _threads_niceness(web) == {ours}  # as started
