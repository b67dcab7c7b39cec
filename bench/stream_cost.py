"""What open reply streams cost a running web process: threads, memory, connections.

Opens N streams of one reply (raw sockets, each reading the SSE response as a client
would), waits, and reads the web process's threads and RSS from /proc, its Redis and
PostgreSQL connections from the servers.

    .venv/bin/python bench/stream_cost.py --base-url http://127.0.0.1:8000 \\
        --token ACCESS --path /api/chatroom/1/message/2/stream --pid WEB_PID \\
        --redis-url redis://127.0.0.1:6379/0 --database-url postgres://... --streams 0,100,300

The reply should still be streaming (or pending) while it runs, so the streams stay open.
Set MAX_OPEN_STREAMS_PER_USER on the server above the largest count.
"""

from __future__ import annotations

import argparse
import socket
import time
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
import redis


def _open_stream(host: str, port: int, path: str, token: str) -> socket.socket:
    sock = socket.create_connection((host, port))
    request = (
        f"GET {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\n"
        "Accept: text/event-stream\r\n\r\n"
    )
    sock.sendall(request.encode())
    head = sock.recv(65536)
    if not head.startswith(b"HTTP/1.1 200"):
        raise SystemExit(f"stream refused: {head[:200]!r}")
    return sock


def _process(pid: int) -> tuple[int, int]:
    """Threads and RSS (KiB) of one process."""
    status = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
    )
    return int(status["Threads"]), int(status["VmRSS"].split()[0])


def _postgres_connections(database_url: str, pid: int) -> int:
    """Connections from the web process: PostgreSQL does not know client pids, so count the
    database's connections other than this one."""
    with psycopg.connect(database_url) as connection:
        row = connection.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid()"
        ).fetchone()
    return int(row[0]) if row else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--path", required=True)
    parser.add_argument("--pid", type=int, required=True, help="the web process")
    parser.add_argument("--redis-url", required=True)
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--streams", default="0,100,300")
    parser.add_argument("--settle", type=float, default=3.0)
    args = parser.parse_args()

    url = urlsplit(args.base_url)
    host, port = url.hostname or "127.0.0.1", url.port or 80
    redis_client = redis.Redis.from_url(args.redis_url)
    opened: list[socket.socket] = []
    print("streams  threads  rss_MiB  redis_clients  postgres_connections")
    try:
        for target in (int(count) for count in args.streams.split(",")):
            while len(opened) < target:
                opened.append(_open_stream(host, port, args.path, args.token))
            time.sleep(args.settle)
            threads, rss = _process(args.pid)
            clients = len(redis_client.client_list())
            postgres = _postgres_connections(args.database_url, args.pid)
            print(f"{target:7}  {threads:7}  {rss / 1024:7.1f}  {clients:13}  {postgres:20}")
    finally:
        for sock in opened:
            sock.close()


if __name__ == "__main__":
    main()
