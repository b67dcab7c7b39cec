"""The production web server: `python -m gemini_clone.serve --host H --port P --workers N`.

N uvicorn processes, each accepting on a listening socket of its own, all bound to the same
address with SO_REUSEPORT, so the kernel spreads new connections evenly over them. With
one socket shared by every process (`uvicorn --workers N`), the process that wakes first
accepts a whole burst of connections: measured here, a client opening 32 keep-alive
connections at once often got all 32 on one process, leaving the other core idle and the
throughput halved, at random from one run to the next (README, "Serving").

This parent process binds the sockets before it starts any worker and keeps them: a worker
that dies is started again on the same socket, and the connections waiting in that
socket's queue meanwhile are served by it, not refused. SIGTERM or SIGINT stops the workers
gracefully (uvicorn finishes the requests in flight) and then the parent.

Proxy headers are not read by the server: the application alone decides which peers are
proxies (`TRUSTED_PROXIES`, `USE_X_FORWARDED_PROTO`), so there is one place to configure.
"""

from __future__ import annotations

import argparse
import logging
import multiprocessing
import signal
import socket
import sys
import threading
import time
from dataclasses import dataclass
from multiprocessing.context import SpawnProcess
from multiprocessing.synchronize import Event

from core.metrics import live_gauges_of_host_forget, process_dead

APPLICATION = "gemini_clone.asgi:application"
STOP_GRACE_SECONDS = 30.0
BACKLOG = 2048

logger = logging.getLogger("gemini_clone.serve")


@dataclass
class Worker:
    """One uvicorn process and the socket it accepts on."""

    index: int
    listener: socket.socket
    process: SpawnProcess | None = None
    ready: Event | None = None


def bind_listener(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    listener.bind((host, port))
    listener.listen(BACKLOG)
    listener.set_inheritable(True)
    return listener


def refuse_a_taken_port(host: str, port: int) -> None:
    """SO_REUSEPORT would let a second server join the first one's port silently and take
    half its traffic; a plain bind fails with EADDRINUSE while any server listens there."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind((host, port))


def run_worker(listener: socket.socket, ready: Event, log_level: str) -> None:
    """The body of one worker process: load the application, then serve `listener`."""
    import uvicorn

    config = uvicorn.Config(
        APPLICATION,
        loop="uvloop",
        http="httptools",
        lifespan="off",
        access_log=False,
        proxy_headers=False,
        server_header=False,
        log_level=log_level,
    )
    config.load()
    ready.set()
    uvicorn.Server(config).run(sockets=[listener])


class Server:
    def __init__(self, *, host: str, port: int, workers: int, log_level: str) -> None:
        self.host = host
        self.port = port
        self.log_level = log_level
        self.context = multiprocessing.get_context("spawn")
        self.stopping = threading.Event()
        refuse_a_taken_port(host, port)
        first = bind_listener(host, port)
        self.port = first.getsockname()[1]  # port 0: the kernel's choice, shared by all
        self.workers = [Worker(0, first)] + [
            Worker(index, bind_listener(host, self.port)) for index in range(1, workers)
        ]

    def run(self) -> int:
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: self.stopping.set())
        live_gauges_of_host_forget()
        for worker in self.workers:
            self._start(worker)
        if not self._wait_until_ready():
            self._stop_all()
            return 1
        logger.info(
            "Listening on http://%s:%d (%d processes)",
            self.host, self.port, len(self.workers),
        )  # fmt: skip
        exit_code = self._supervise()
        self._stop_all()
        return exit_code

    def _start(self, worker: Worker) -> None:
        worker.ready = self.context.Event()
        worker.process = self.context.Process(
            target=run_worker,
            args=(worker.listener, worker.ready, self.log_level),
            name=f"web-{worker.index}",
        )
        worker.process.start()

    def _wait_until_ready(self) -> bool:
        for worker in self.workers:
            assert worker.process is not None and worker.ready is not None
            while not worker.ready.wait(0.1):
                if self.stopping.is_set():
                    return False
                if not worker.process.is_alive():
                    logger.error("web worker %d failed to start", worker.index)
                    return False
        return True

    def _supervise(self) -> int:
        """Until a stop signal: a worker that dies is started again on its socket. One that
        dies before it loaded the application (an import error, a bad setting) would fail
        the same way again: that stops the server."""
        while not self.stopping.wait(0.5):
            for worker in self.workers:
                assert worker.process is not None and worker.ready is not None
                if worker.process.is_alive():
                    continue
                code = worker.process.exitcode
                if not worker.ready.is_set():
                    logger.error(
                        "web worker %d exited with code %s while starting; stopping",
                        worker.index, code,
                    )  # fmt: skip
                    return 1
                logger.warning(
                    "web worker %d exited with code %s; starting it again", worker.index, code
                )
                _forget_metrics_of(worker.process)
                self._start(worker)
        return 0

    def _stop_all(self) -> None:
        running = [w.process for w in self.workers if w.process is not None]
        for process in running:
            if process.is_alive() and process.pid is not None:
                process.terminate()
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        for process in running:
            process.join(max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                process.kill()
                process.join()
            _forget_metrics_of(process)
        for worker in self.workers:
            worker.listener.close()


def _forget_metrics_of(process: SpawnProcess) -> None:
    """Its live gauges (open streams) no longer count; its counters still do."""
    if process.pid is not None:
        process_dead(process.pid)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gemini_clone.serve", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--workers", type=int, default=1, help="web processes (default 1)")
    parser.add_argument("--log-level", default="info")
    options = parser.parse_args(argv)
    if options.workers < 1:
        parser.error("--workers must be at least 1")
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        server = Server(
            host=options.host,
            port=options.port,
            workers=options.workers,
            log_level=options.log_level,
        )
    except OSError as error:
        logger.error("cannot listen on %s:%d: %s", options.host, options.port, error)
        return 1
    return server.run()


if __name__ == "__main__":
    sys.exit(main())
