"""``ClusterExecutor``: a run's task functions as Dask tasks (see ``engine.execution``).

Each task runs ``fn(ctx, item, *args)`` on a worker: the worker opens the run store by its
path (a folder every worker reaches), keeps one model (``workers.worker_model``), writes the
shards of its unit and returns the unit records it would have written; this client writes
them to the store and advances progress, so records (and the run lock) stay with the
client. Arguments other than small scalars (the plan, co-alignment scales) are scattered to
every worker once. A task whose worker dies is run again elsewhere by Dask; one that keeps
killing workers ends the run with one line. ``submit`` (ingest's batches of frames) sends its
item to one worker only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator

from ...storage.run_store import RunStore
from ..errors import EngineError
from ..execution import ModelFacts
from ..progress import StageTimer
from .clusters import Cluster
from .workers import ClusterShardLocks, pin_threads, worker_device, worker_model

SCALARS = (int, float, str, bool, type(None))


@dataclass(frozen=True)
class ModelSpec:
    """How a worker loads (once) the run's model: checkpoint, device, dtype, attention, the
    ``--reproduce`` embedding, its torch threads and whether worker ``i`` owns GPU ``i``."""

    checkpoint: str
    device: str
    dtype: str
    attention: str
    reproduce: bool
    threads: int | None
    pin_gpu: bool

    def model(self):
        pin_threads(self.threads)
        model = worker_model(self.checkpoint, worker_device(self.device, self.pin_gpu), self.dtype, self.attention)
        return model.as_published() if self.reproduce else model


class WorkerContext:
    """A task function's view on a worker: records and progress collected for the client."""

    def __init__(self, store: RunStore | None, model):
        self.store, self.model = store, model
        self.records: list[tuple[str, str, dict | None]] = []
        self.advanced = 0

    def done(self, stage: str, unit: str, record: dict | None = None) -> None:
        self.records.append((stage, unit, record))

    def advance(self, n: int) -> None:
        self.advanced += n


def run_task(spec: ModelSpec, store_path: str | None, fn: Callable, item: Any, *args) -> tuple:
    """On a worker: ``fn(ctx, item, *args)``; returns (result, records, progress)."""
    store = RunStore(store_path, locks=ClusterShardLocks(store_path)) if store_path else None
    ctx = WorkerContext(store, spec.model())
    result = fn(ctx, item, *args)
    return result, ctx.records, ctx.advanced


def probe(spec: ModelSpec) -> ModelFacts:
    """On a worker: load the model (kept for the tasks to come) and describe it."""
    return ModelFacts.of(spec.model())


class ClusterExecutor:
    """Runs task functions on the workers of ``cluster``; records land in the bound store."""

    def __init__(self, cluster: Cluster, spec: ModelSpec, every_worker: bool = True):
        """Load the model on a worker to learn its ``facts``; with ``every_worker``, on every
        worker before returning (a cluster opened for this run: the first stage's time is then
        its own work, not start-up; a shared cluster's busy workers load it on their first task)."""
        self.cluster, self.spec, self.client = cluster, spec, cluster.client
        self.workers = max(1, cluster.workers)
        self.store: RunStore | None = None
        self._shared: dict[int, tuple[Any, Any]] = {}
        addresses = list(self.client.scheduler_info(n_workers=-1)["workers"]) if every_worker else []
        probes = [self.client.submit(probe, spec, pure=False, resources=cluster.resources,
                                     workers=[address] if address else None,
                                     allow_other_workers=bool(address))
                  for address in addresses or [None]]
        self.facts: ModelFacts = [self._wait(future) for future in probes][0]

    def bind(self, store: RunStore) -> None:
        """The run store tasks read and write (by path) and records go to."""
        self.store = store

    def _wait(self, future):
        from distributed import KilledWorker

        try:
            return future.result()
        except KilledWorker as exc:
            raise EngineError(f"a Dask worker died again and again running {exc.task}: check the workers' "
                              "memory and logs; rerun the same command to resume") from None

    def _share(self, value: Any) -> Any:
        """``value`` as a future every worker holds: scattered once per object (the plan and the
        scratch index serve every shot's tasks)."""
        if isinstance(value, SCALARS):
            return value
        if id(value) not in self._shared:  # the object is kept too, so its id stays its own
            self._shared[id(value)] = (value, self.client.scatter([value], broadcast=True, hash=False)[0])
        return self._shared[id(value)][1]

    def _submit(self, fn: Callable, item: Any, args: tuple):
        path = str(self.store.path) if self.store is not None else None
        return self.client.submit(run_task, self.spec, path, fn, item, *args, pure=False,
                                  resources=self.cluster.resources)

    def _receive(self, future, timer: StageTimer | None) -> Any:
        result, records, advanced = self._wait(future)
        for stage, unit, record in records:
            self.store.mark_done(stage, unit, record)
        if timer is not None and advanced:
            timer.advance(advanced)
        return result

    def map(self, fn: Callable, items: Iterable, *args, timer: StageTimer | None = None) -> Iterator[tuple]:
        """``(item, result)`` as tasks finish (any order); every item is a task."""
        from distributed import as_completed

        items = list(items)
        if not items:
            return
        shared = tuple(self._share(a) for a in args)
        futures = {self._submit(fn, item, shared): index for index, item in enumerate(items)}
        try:
            for future in as_completed(futures):
                yield items[futures[future]], self._receive(future, timer)
        finally:
            self.client.cancel([f for f in futures if not f.done()])

    def submit(self, fn: Callable, item: Any, *args):
        """A task now (``item``, e.g. a batch of frames, sent to one worker; ``args`` small); ``result``
        waits for it."""
        data = self.client.scatter(item, direct=True, hash=False) if not isinstance(item, SCALARS) else item
        return self._submit(fn, data, args)

    def result(self, handle, timer: StageTimer | None = None) -> Any:
        return self._receive(handle, timer)
