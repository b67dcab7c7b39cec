"""Who gets the cores during a benchmark: CPU of each part of the stack, once a second.

Reads /proc (Linux) and groups processes by what they run: the web server
(`gemini_clone.serve` and the processes it spawns), the Celery worker, the PostgreSQL
backends of one database, Redis and the Gemini stand-in. Prints one line a second, in
cores, then their mean over the seconds in which the web was busy: the load's window, without
the worker's drain after it.

    .venv/bin/python bench/cpu_split.py --seconds 40 --port 8077 --database gc_ours_bench

Start it, then the load (bench/run.sh, or ../shared/peer-bench/bench.sh). With several
stacks on the machine, `--port` keeps the web server and worker started with that PORT
(read from each process's environment, which needs the same user or root).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

GROUPS = ("web", "worker", "postgres", "redis", "stand-in")
_TICKS_PER_SECOND = os.sysconf("SC_CLK_TCK")


def _group_of(pid: str, command: str, *, port: str | None, database: str | None) -> str | None:
    if command.startswith("postgres:"):
        # "postgres: [CLUSTER:] USER DATABASE HOST(PORT) STATE"; background processes name none
        return "postgres" if database is None or database in command.split() else None
    if "redis-server" in command:
        return "redis"
    if "fake_gemini" in command:
        return "stand-in"
    if "gemini_clone.serve" in command or "multiprocessing.spawn" in command:
        group = "web"
    elif "celery" in command and " worker" in command:
        group = "worker"
    else:
        return None
    if port is not None and _environment(pid).get("PORT") != port:
        return None
    return group


def _environment(pid: str) -> dict[str, str]:
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return {}
    pairs = (item.split(b"=", 1) for item in raw.split(b"\0") if b"=" in item)
    return {key.decode(errors="replace"): value.decode(errors="replace") for key, value in pairs}


def _cpu_seconds(pid: str) -> float | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / _TICKS_PER_SECOND  # utime + stime


def _snapshot(*, port: str | None, database: str | None) -> dict[str, tuple[str, float]]:
    """pid -> (group, CPU seconds so far) for every process of a group."""
    found: dict[str, tuple[str, float]] = {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            raw = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        command = raw.replace(b"\0", b" ").decode(errors="replace").strip()
        group = _group_of(pid, command, port=port, database=database)
        seconds = _cpu_seconds(pid) if group else None
        if group and seconds is not None:
            found[pid] = (group, seconds)
    return found


def _used(
    before: dict[str, tuple[str, float]], after: dict[str, tuple[str, float]]
) -> dict[str, float]:
    used: dict[str, float] = dict.fromkeys(GROUPS, 0.0)
    for pid, (group, seconds) in after.items():
        used[group] += seconds - before.get(pid, (group, 0.0))[1]  # a new process: all of it
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
    for _ in range(args.seconds):
        time.sleep(1)
        current = _snapshot(port=args.port, database=args.database)
        used = _used(previous, current)
        previous = current
        print(time.strftime("%H:%M:%S") + "".join(f"{used[group]:10.2f}" for group in GROUPS))
        if used["web"] >= args.busy:
            for group in GROUPS:
                busy[group] += used[group]
            busy_seconds += 1
    if busy_seconds:
        print(f"mean over the {busy_seconds} seconds the web was busy (cores):")
        print("         " + "".join(f"{busy[group] / busy_seconds:10.2f}" for group in GROUPS))


if __name__ == "__main__":
    main()
