"""Who gets the cores during a benchmark: CPU of each part of the stack, once a second.

Reads /proc (Linux) and groups processes by what they run: the web server
(`gemini_clone.serve` and the processes it spawns), the Celery worker, the PostgreSQL
backends of one database, Redis and the Gemini stand-in. Prints one line a second, in
cores, then their mean over the seconds in which the web was busy.

    .venv/bin/python bench/cpu_split.py --seconds 40 --port 8077 --database gc_ours_bench

Start it as the load starts, once the stack is up (its start-up and a load generator's
logins count as busy seconds too): for one scenario, `bench/run.sh --only send32` after its
"Stack up" line (database `gemini_clone` with the embedded servers), or peer-bench's
instance `ours` as above. `--port` keeps the web server and worker started with that PORT
(read from each process's environment, which needs the same user or root), `--database`
the backends of that database. Redis and the stand-in are counted machine-wide: every
redis-server and every fake_gemini, other stacks' and tests' included. A process that ends
between two samples loses its last second, which pooled connections make rare.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

GROUPS = ("web", "worker", "postgres", "redis", "stand-in")
# (pid, start time) -> (group, CPU seconds so far)
Snapshot = dict[tuple[str, str], tuple[str, float]]
_TICKS_PER_SECOND = os.sysconf("SC_CLK_TCK")


def _command(pid: str) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return ""
    return raw.replace(b"\0", b" ").decode(errors="replace").strip()


def _stat(pid: str) -> list[str]:
    """The fields of /proc/PID/stat after the command name: [0] state, [1] ppid, [11] utime,
    [12] stime, [19] start time."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return []


def _environment(pid: str) -> dict[str, str]:
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return {}
    pairs = (item.split(b"=", 1) for item in raw.split(b"\0") if b"=" in item)
    return {key.decode(errors="replace"): value.decode(errors="replace") for key, value in pairs}


def _database_of_backend(command: str) -> str | None:
    """`postgres: [CLUSTER:] USER DATABASE HOST(PORT) STATE` -> DATABASE; None for the
    server's own processes (checkpointer, walwriter...)."""
    words = command.split()[1:]
    if words and words[0].endswith(":"):  # Debian's cluster name, "15/main:"
        words = words[1:]
    if words[:2] == ["autovacuum", "worker"]:
        return words[2] if len(words) > 2 else None
    return words[1] if len(words) > 2 and "(" in words[2] else None


def _group_of(
    pid: str, command: str, stat: list[str], *, port: str | None, database: str | None
) -> str | None:
    if command.startswith("postgres:"):
        if database is None or _database_of_backend(command) == database:
            return "postgres"
        return None
    if "redis-server" in command:
        return "redis"
    if "fake_gemini" in command:
        return "stand-in"
    if "gemini_clone.serve" in command:
        group = "web"
    elif "multiprocessing.spawn" in command and "gemini_clone.serve" in _command(stat[1]):
        group = "web"  # one of the server's processes
    elif "celery" in command and " worker" in command:
        group = "worker"
    else:
        return None
    if port is not None and _environment(pid).get("PORT") != port:
        return None
    return group


def _snapshot(*, port: str | None, database: str | None) -> Snapshot:
    """Every process of a group. The start time keeps a pid used again by a new process from
    counting as the old one."""
    found: Snapshot = {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        command = _command(pid)
        stat = _stat(pid)
        if not command or len(stat) < 20:
            continue
        group = _group_of(pid, command, stat, port=port, database=database)
        if group:
            found[(pid, stat[19])] = (group, (int(stat[11]) + int(stat[12])) / _TICKS_PER_SECOND)
    return found


def _used(before: Snapshot, after: Snapshot) -> dict[str, float]:
    used = dict.fromkeys(GROUPS, 0.0)
    for key, (group, seconds) in after.items():
        used[group] += seconds - before.get(key, (group, 0.0))[1]  # a new process: all of it
    return used


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seconds", type=int, default=30)
    parser.add_argument("--port", help="only the web server and worker started with this PORT")
    parser.add_argument("--database", help="only the PostgreSQL backends of this database")
    parser.add_argument(
        "--busy", type=float, default=0.2, help="cores of the web that make a second count"
    )
    args = parser.parse_args()

    print("time     " + "".join(f"{group:>10}" for group in GROUPS))
    busy = dict.fromkeys(GROUPS, 0.0)
    busy_seconds = 0
    previous = _snapshot(port=args.port, database=args.database)
    previous_at = start = time.monotonic()
    for second in range(1, args.seconds + 1):
        time.sleep(max(0.0, start + second - time.monotonic()))
        current = _snapshot(port=args.port, database=args.database)
        now = time.monotonic()
        # In cores: CPU seconds over the interval's real length (a little over a second).
        used = _used(previous, current)
        cores = {group: cpu / (now - previous_at) for group, cpu in used.items()}
        previous, previous_at = current, now
        print(time.strftime("%H:%M:%S") + "".join(f"{cores[group]:10.2f}" for group in GROUPS))
        if cores["web"] >= args.busy:
            for group in GROUPS:
                busy[group] += cores[group]
            busy_seconds += 1
    if busy_seconds:
        print(f"mean over the {busy_seconds} seconds the web was busy (cores):")
        print("         " + "".join(f"{busy[group] / busy_seconds:10.2f}" for group in GROUPS))


if __name__ == "__main__":
    main()
