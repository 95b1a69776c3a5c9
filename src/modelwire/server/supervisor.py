"""`modelwire serve --workers N`: N server processes on the same ports, one supervisor.

One Python process serves only as fast as one core runs grpc.aio's per-call work, so
this runs N whole servers (engine, batchers, gRPC and REST) that share the ports
through SO_REUSEPORT: the kernel spreads new connections across them. The supervisor
reserves the ports first (so port 0 resolves to one port for all), starts the workers,
starts a new one when one dies, and on SIGTERM/SIGINT passes SIGTERM on and waits for
every worker's graceful drain. Workers reach each other as modelwire.server.peers says;
their Prometheus metrics are summed through prometheus-client's multiprocess mode.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import queue
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
from multiprocessing.connection import wait
from multiprocessing.context import SpawnProcess
from pathlib import Path
from typing import Any

from prometheus_client import multiprocess

from modelwire.errors import ModelwireError
from modelwire.logs import configure_logging
from modelwire.server.peers import WorkerRole
from modelwire.server.security import check_exposure
from modelwire.settings import Settings

__all__ = ["check_reuse_port", "supervise"]

log = logging.getLogger(__name__)

#: A worker that dies sooner than this after starting is restarted after a growing delay.
_QUICK_DEATH_S = 5.0
_MAX_RESTART_DELAY_S = 10.0
_START_TIMEOUT_S = 300.0

_Event = tuple[Any, ...]


def check_reuse_port() -> None:
    """Several workers share a port only where the OS has SO_REUSEPORT."""
    if not hasattr(socket, "SO_REUSEPORT"):
        raise OSError(
            "--workers above 1 needs SO_REUSEPORT, which this operating system lacks: "
            "run one worker per port behind a load balancer instead"
        )


def supervise(settings: Settings) -> None:
    """Serve with `settings.worker_count` worker processes until SIGTERM/SIGINT."""
    check_reuse_port()
    check_exposure(settings)
    count = settings.worker_count
    run_dir = Path(tempfile.mkdtemp(prefix="modelwire-workers-"))  # mode 0700
    metrics_dir = run_dir / "metrics"
    metrics_dir.mkdir()
    reserved: list[socket.socket] = []
    try:
        from modelwire.assembly import rest_gateway_port

        update: dict[str, Any] = {"port": _reserve(settings.hosts, settings.port, reserved)}
        # None where the REST extra is missing and --rest-port was not given.
        rest_port = rest_gateway_port(settings)
        update["rest_port"] = None
        if rest_port is not None:
            update["rest_port"] = _reserve(settings.hosts, rest_port, reserved)
        for name in ("metrics_port", "health_port"):
            if (port := getattr(settings, name)) is not None:
                update[name] = _reserve(settings.hosts, port, reserved)
        if "threads" not in settings.model_fields_set:
            update["threads"] = max(1, (os.cpu_count() or 1) // count)
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
        _Supervisor(settings.model_copy(update=update), count, run_dir).run()
    finally:
        os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
        for sock in reserved:
            sock.close()
        shutil.rmtree(run_dir, ignore_errors=True)


def _reserve(hosts: list[str], port: int, reserved: list[socket.socket]) -> int:
    """Bind (not listen) SO_REUSEPORT sockets on the hosts, so the port is ours for the
    supervisor's life and port 0 becomes one port every worker binds."""
    bound_any = False
    for host in hosts:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        try:
            sock = socket.socket(family, socket.SOCK_STREAM)
        except OSError:
            if host == "::1" and bound_any:
                continue  # no IPv6 here; the workers skip it the same way
            raise
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind((host, port))
        except OSError as error:
            sock.close()
            if host == "::1" and bound_any:
                continue
            raise OSError(
                f"cannot listen on {host}:{port}: is the port in use or the address wrong? "
                f"({error.strerror})"
            ) from None
        reserved.append(sock)
        bound_any = True
        port = sock.getsockname()[1]
    return port


class _Supervisor:
    def __init__(self, settings: Settings, count: int, run_dir: Path) -> None:
        self._settings = settings
        self._count = count
        self._run_dir = run_dir
        self._context = multiprocessing.get_context("spawn")
        self._events: multiprocessing.Queue[_Event] = self._context.Queue()
        self._workers: dict[int, SpawnProcess] = {}
        self._started: dict[int, float] = {}
        self._delays: dict[int, float] = {}
        self._stop = threading.Event()

    def run(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: self._stop.set())
        try:
            for index in range(self._count):
                self._start(index)
            if self._wait_until_ready():
                self._watch()
        finally:
            self._shut_down()

    def _start(self, index: int) -> None:
        role = WorkerRole(index, self._count, self._run_dir)
        process = self._context.Process(
            target=_worker_main,
            args=(self._settings, role, self._events),
            name=f"modelwire-worker-{index}",
        )
        process.start()
        self._workers[index] = process
        self._started[index] = time.monotonic()

    def _wait_until_ready(self) -> bool:
        ready: dict[int, _Event] = {}
        deadline = time.monotonic() + _START_TIMEOUT_S
        while len(ready) < self._count:
            if self._stop.is_set():
                return False
            if time.monotonic() > deadline:
                raise OSError(f"the workers did not start in {_START_TIMEOUT_S:.0f}s")
            try:
                event = self._events.get(timeout=0.2)
            except queue.Empty:
                self._check_alive(ready)
                continue
            if event[0] == "failed":
                raise OSError(event[2])
            ready[event[1]] = event
        _, _, models, addresses, rest = ready[0]
        if rest:
            log.info("REST gateway on %s", ", ".join(rest))
        settings = self._settings
        for port, what in [(settings.health_port, "gRPC health (plaintext)"),
                           (settings.metrics_port, "metrics")]:  # fmt: skip
            if port is not None:
                hosts = [f"[{h}]:{port}" if ":" in h else f"{h}:{port}" for h in settings.hosts]
                log.info("%s on %s", what, ", ".join(hosts))
        log.info(
            "modelwire serving model(s) %s on %s with %d workers",
            ", ".join(models) or "(none)",
            ", ".join(addresses),
            self._count,
        )
        return True

    def _check_alive(self, ready: dict[int, _Event]) -> None:
        for index, process in self._workers.items():
            if process.exitcode is not None and index not in ready:
                raise OSError(f"worker {index} exited with code {process.exitcode}")

    def _watch(self) -> None:
        restart_at: dict[int, float] = {}
        while not self._stop.is_set():
            wait([p.sentinel for p in self._workers.values()], timeout=0.5)
            self._log_events()
            now = time.monotonic()
            for index, process in self._workers.items():
                if process.exitcode is None or index in restart_at or self._stop.is_set():
                    continue
                multiprocess.mark_process_dead(process.pid)  # type: ignore[no-untyped-call]
                quick = now - self._started[index] < _QUICK_DEATH_S
                delay = min(2 * self._delays.get(index, 0.5), _MAX_RESTART_DELAY_S) if quick else 0
                self._delays[index] = delay
                log.warning(
                    "worker %d (pid %s) exited with code %s; starting a new one in %.1fs",
                    index,
                    process.pid,
                    process.exitcode,
                    delay,
                )
                restart_at[index] = now + delay
            for index, when in list(restart_at.items()):
                if now >= when:
                    del restart_at[index]
                    self._start(index)

    def _log_events(self) -> None:
        with contextlib.suppress(queue.Empty):
            while True:
                event = self._events.get_nowait()
                if event[0] == "failed":
                    log.error("worker %d failed to start: %s", event[1], event[2])

    def _shut_down(self) -> None:
        alive = [p for p in self._workers.values() if p.exitcode is None]
        for process in alive:
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid or 0, signal.SIGTERM)
        deadline = time.monotonic() + self._settings.grace_period_s + 15
        for process in alive:
            process.join(max(0.1, deadline - time.monotonic()))
            if process.exitcode is None:
                log.warning("worker pid %s did not stop in time; killing it", process.pid)
                process.kill()
                process.join()
        for process in self._workers.values():
            if process.pid is not None:
                multiprocess.mark_process_dead(process.pid)  # type: ignore[no-untyped-call]
        log.info("stopped")


def _worker_main(
    settings: Settings, role: WorkerRole, events: multiprocessing.Queue[_Event]
) -> None:
    from modelwire.assembly import loop_factory

    configure_logging(settings.log_format, worker=role.index)
    try:
        with asyncio.Runner(loop_factory=loop_factory(settings)) as runner:
            runner.run(_run_worker(settings, role, events))
    except (ModelwireError, OSError) as error:
        events.put(("failed", role.index, str(error)))
        sys.exit(1)


async def _run_worker(
    settings: Settings, role: WorkerRole, events: multiprocessing.Queue[_Event]
) -> None:
    from modelwire.assembly import start_worker
    from modelwire.tracing import from_environment

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    supervisor = os.getppid()
    running = await start_worker(settings, role, tracing=from_environment())
    rest = running.rest.addresses if running.rest is not None else []
    events.put(("ready", role.index, running.engine.models.names(), running.addresses, rest))
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 1.0)
        if os.getppid() != supervisor:
            log.warning("the supervisor is gone; stopping")
            break
    await running.stop(settings.grace_period_s)
