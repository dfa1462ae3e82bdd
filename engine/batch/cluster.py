"""Dask clusters for ``rdengine batch``: a local one sized to the devices, or a running scheduler's workers."""

from __future__ import annotations

import os

from ..errors import EngineError


def local_cluster(workers: int | None, device: str):
    """(cluster, resources, threads per worker, pin_gpu): one worker per GPU, else ``workers`` on CPU."""
    import torch
    from distributed import LocalCluster

    gpus = torch.cuda.device_count() if device in ("auto", "cuda") and torch.cuda.is_available() else 0
    if gpus:
        n, resources, threads = min(workers or gpus, gpus), {"GPU": 1}, None
    else:
        n = workers or 1
        resources, threads = ({"GPU": 1}, None) if device.startswith("cuda") else ({"slot": 1}, max(1, (os.cpu_count() or 1) // n))
    cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True, resources=resources,
                           host="127.0.0.1", dashboard_address=None)
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

