"""What a Dask worker keeps between tasks: its device and one loaded model."""

from __future__ import annotations

from distributed.diagnostics.plugin import WorkerPlugin

_MODELS: dict[tuple, object] = {}


def worker_model(checkpoint: str, device: str, dtype: str, attention: str):
    """The model for this worker process, loaded on first use and reused across tasks."""
    from ..model import load_model

    key = (checkpoint, device, dtype, attention)
    if key not in _MODELS:
        _MODELS.clear()  # one model per worker: a different config replaces it
        _MODELS[key] = load_model(checkpoint, device, dtype, attention)
    return _MODELS[key]


def worker_device(requested: str, pin_gpu: bool) -> str:
    """On our LocalCluster, worker ``i`` owns GPU ``i``; otherwise the requested device as is."""
    import torch

    if pin_gpu and requested in ("auto", "cuda") and torch.cuda.is_available():
        try:
            from distributed import get_worker

            index = int(get_worker().name) % torch.cuda.device_count()
        except (ValueError, TypeError):
            return requested
        torch.cuda.set_device(index)
        return f"cuda:{index}"
    return requested


class ClusterShardLocks:
    """Shard locks every worker of the cluster shares (``distributed.Lock``, held by the scheduler):
    two tasks writing parts of one shard (the end of one shot, the start of the next) take turns."""

    def __init__(self, store_path: str):
        self.prefix = f"rdengine:{store_path}"

    def lock(self, name: str, shard: int):
        from distributed import Lock

        return Lock(f"{self.prefix}:{name}:{shard}")


def pin_threads(threads: int | None) -> None:
    """Torch intra-op threads of this worker (local CPU workers split the cores between them)."""
    if threads:
        import torch

        torch.set_num_threads(threads)


def process_local_codec_lock() -> None:
    """Give numcodecs' Blosc lock to this process alone before any chunk is compressed.

    numcodecs makes that lock with ``multiprocessing.Lock()``, which in a spawned worker is a
    named semaphore registered with the resource tracker of the process that started the
    cluster; a worker killed while it holds work (Ctrl-C, a close under load) never
    unregisters it, and the tracker then prints a "leaked semaphore" warning after the run.
    The lock only guards Blosc's global state within one process, so a thread lock is the
    same guard without the registration."""
    import threading

    import numcodecs.blosc as blosc

    if hasattr(blosc, "_MUTEX") and not getattr(blosc, "_MUTEX_IS_INIT", True):
        blosc._MUTEX, blosc._MUTEX_IS_INIT = threading.Lock(), True


class ProcessLocalLocks(WorkerPlugin):
    """Worker plugin: ``process_local_codec_lock`` as each worker starts (ours and a scheduler's)."""

    name = "rdengine-process-local-locks"

    def setup(self, worker) -> None:
        process_local_codec_lock()
