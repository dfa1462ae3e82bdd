"""What a Dask worker keeps between tasks: its device and one loaded model."""

from __future__ import annotations

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


def pin_threads(threads: int | None) -> None:
    """Torch intra-op threads of this worker (local CPU workers split the cores between them)."""
    if threads:
        import torch

        torch.set_num_threads(threads)
