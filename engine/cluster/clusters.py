"""Opening a Dask cluster for rdengine: a local one sized to the devices, or a running scheduler's workers.

``open_cluster`` yields a ``Cluster``: the client, the per-task resource (``GPU=1`` or
``slot=1``: one task per device at a time), torch threads per worker on CPU, and whether
worker ``i`` owns GPU ``i``. Local worker processes ignore Ctrl-C (the client shuts them
down), so an interrupt ends with one line instead of their tracebacks; closing is quiet.
"""

from __future__ import annotations

import logging
import os
import signal
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

from ..config import ConfigError
from ..errors import EngineError
from .workers import ProcessLocalLocks
from ..options import check_scheduler_address

QUIET_LOGGERS = ("distributed", "distributed.nanny", "distributed.worker", "distributed.scheduler",
                 "distributed.client", "distributed.core", "distributed.batched", "tornado")


@dataclass
class Cluster:
    """A connected client and how to place tasks on its workers."""

    client: object
    resources: dict | None
    threads: int | None  # torch threads per worker (local CPU workers), None: leave as is
    pin_gpu: bool  # worker ``i`` of our LocalCluster uses GPU ``i``
    where: str  # for messages: "local cluster, 2 workers (slot=1 each)" or "scheduler tcp://..."

    @property
    def workers(self) -> int:
        return len(self.client.scheduler_info(n_workers=-1)["workers"])


def local_cluster(workers: int | None, device: str):
    """(cluster, resources, threads per worker, pin_gpu): one worker per GPU, else ``workers`` on CPU."""
    import torch
    from distributed import LocalCluster

    gpus = torch.cuda.device_count() if device in ("auto", "cuda") and torch.cuda.is_available() else 0
    if gpus:
        n, resources, threads = min(workers or gpus, gpus), {"GPU": 1}, None
    else:
        n = workers or 1
        resources, threads = ({"GPU": 1}, None) if device.startswith("cuda") else \
            ({"slot": 1}, max(1, (os.cpu_count() or 1) // n))
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)  # inherited by the worker processes
    try:
        cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True, resources=resources,
                               host="127.0.0.1", dashboard_address=None, silence_logs=logging.ERROR)
    finally:
        signal.signal(signal.SIGINT, previous)
    return cluster, resources, threads, bool(gpus)


def cluster_resources(client, wait: float = 60) -> dict | None:
    """The per-task resource an existing cluster's workers advertise (GPU, else slot), or None."""
    try:
        client.wait_for_workers(1, timeout=wait)
    except (TimeoutError, OSError) as exc:
        raise EngineError(f"no Dask workers joined scheduler {client.scheduler.address} within {wait:.0f} s "
                          f"({type(exc).__name__})") from None
    workers = client.scheduler_info(n_workers=-1)["workers"].values()
    offered = set().union(*(w.get("resources", {}) for w in workers))
    for key in ("GPU", "slot"):
        if key in offered:
            return {key: 1}
    return None


def connect(address: str):
    """A client of the running scheduler at ``address``; unreachable: one clear error.

    It waits Dask's connect timeout (``distributed.comm.timeouts.connect``, 30 s unless set,
    e.g. by ``DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT=5s``)."""
    import dask.config
    from dask.utils import parse_timedelta
    from distributed import Client

    check_scheduler_address(address)
    timeout = parse_timedelta(dask.config.get("distributed.comm.timeouts.connect"), default="s")
    try:
        return Client(address, timeout=f"{timeout:.0f}s")
    except (OSError, TimeoutError) as exc:
        raise EngineError(f"cannot reach the Dask scheduler at {address} within {timeout:.0f} s "
                          f"({type(exc).__name__}); is it running, and is the address right?") from None


@contextmanager
def quiet_logs(level: int = logging.CRITICAL) -> Iterator[None]:
    """Silence Dask's own loggers (shutdown chatter: cancelled tasks, workers killed on close)."""
    loggers = [logging.getLogger(name) for name in QUIET_LOGGERS]
    levels = [log.level for log in loggers]
    for log in loggers:
        log.setLevel(level)
    try:
        yield
    finally:
        for log, old in zip(loggers, levels):
            log.setLevel(old)


@contextmanager
def open_cluster(workers: int | None, scheduler: str | None, device: str, wait: float = 60) -> Iterator[Cluster]:
    """A client of a new LocalCluster (``workers``) or of the running ``scheduler``; closed quietly after."""
    from distributed import Client

    if workers is not None and workers < 1:
        raise ConfigError("--workers must be >= 1")
    if workers is not None and scheduler:
        raise ConfigError("--workers starts a local cluster; it cannot be combined with --scheduler")
    local = None
    if scheduler:
        client = connect(scheduler)
        cluster = Cluster(client, cluster_resources(client, wait), None, False, f"scheduler {scheduler}")
    else:
        with quiet_logs(logging.ERROR):
            local, resources, threads, pin_gpu = local_cluster(workers, device)
        client = Client(local)
        cluster = Cluster(client, resources, threads, pin_gpu,
                          f"local cluster, {len(local.workers)} workers ({next(iter(resources))}=1 each)")
    cluster.client.register_plugin(ProcessLocalLocks())
    interrupted = False
    try:
        yield cluster
    except KeyboardInterrupt:
        interrupted = True
        raise
    finally:
        with quiet_logs(logging.CRITICAL if interrupted else logging.ERROR):
            # "still alive after 4 s, killing" is expected for workers that hold a model
            client.close()
            if local is not None:
                local.close()
