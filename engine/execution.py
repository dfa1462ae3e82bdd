"""Where the units of a run are computed: in this process, or as tasks on a Dask cluster.

Stages hand their unit work to an executor as *task functions*: top-level functions
``fn(ctx, item, *args)`` that read and write the run store through ``ctx.store``, compute
with ``ctx.model``, record a finished unit with ``ctx.done(stage, unit, record)`` and count
progress with ``ctx.advance(n)``. The same function runs in both places:

- ``LocalExecutor`` calls it here with the run's store and model: records are written at
  once, progress advances as it goes.
- ``cluster.executor.ClusterExecutor`` runs it on a worker (which opens the store by path
  and keeps one model): the worker writes its unit's shards only, and the client writes
  the records and advances progress when the task's result arrives.

A unit writes whole shards that no other unit writes, so tasks never touch the same file.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, Protocol

from ..storage.run_store import RunStore
from .model import Model
from .progress import StageTimer


@dataclass(frozen=True)
class ModelFacts:
    """What the client needs to know of the model without holding it: its weights' identity, how
    it stores arrays, and its device (type and free memory in bytes, CUDA only)."""

    identity: dict
    storage_dtype: str
    device_type: str
    free_memory: int | None

    @classmethod
    def of(cls, model: Model) -> "ModelFacts":
        import torch

        free = torch.cuda.mem_get_info(model.device)[0] if model.device.type == "cuda" else None
        return cls(model.identity, model.storage_dtype, model.device.type, free)

    @property
    def itemsize(self) -> int:
        return 2 if self.storage_dtype == "float16" else 4


class UnitContext(Protocol):
    """What a task function sees: the store, the model, and where records and progress go."""

    store: RunStore
    model: Model

    def done(self, stage: str, unit: str, record: dict | None = None) -> None: ...

    def advance(self, n: int) -> None: ...


class Executor(Protocol):
    """Runs task functions (see the module docstring)."""

    workers: int  # how many run at once
    facts: ModelFacts

    def bind(self, store: RunStore) -> None: ...

    def map(self, fn: Callable, items: Iterable, *args, timer: StageTimer | None = None) -> Iterator[tuple]: ...

    def submit(self, fn: Callable, item: Any, *args) -> Any: ...

    def result(self, handle: Any, timer: StageTimer | None = None) -> Any: ...


@contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """Torch intra-op threads pinned to ``threads`` inside the block (None: unchanged). CPU results
    depend on the thread count, so runs compare byte for byte only at the same count."""
    import torch

    previous = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


class LocalContext:
    """A task function's view of this process's run: records written at once."""

    def __init__(self, store: RunStore, model: Model, timer: StageTimer | None):
        self.store, self.model, self.timer = store, model, timer

    def done(self, stage: str, unit: str, record: dict | None = None) -> None:
        self.store.mark_done(stage, unit, record)

    def advance(self, n: int) -> None:
        if self.timer is not None:
            self.timer.advance(n)


class LocalExecutor:
    """Task functions called in this process, in order, with the run's store and model."""

    workers = 1

    def __init__(self, model: Model):
        self.model, self.store = model, None
        self.facts = ModelFacts.of(model)

    def bind(self, store: RunStore) -> None:
        """The run store task functions read and write."""
        self.store = store

    def map(self, fn: Callable, items: Iterable, *args, timer: StageTimer | None = None) -> Iterator[tuple]:
        """``(item, fn(ctx, item, *args))`` for each item, in order."""
        ctx = LocalContext(self.store, self.model, timer)
        for item in items:
            yield item, fn(ctx, item, *args)

    def submit(self, fn: Callable, item: Any, *args) -> Any:
        """``fn(ctx, item, *args)`` now; its result is the handle."""
        return fn(LocalContext(self.store, self.model, None), item, *args)

    def result(self, handle: Any, timer: StageTimer | None = None) -> Any:
        return handle
