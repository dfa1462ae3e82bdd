"""The runner: walks (shot, stage) tasks whose inputs are ready, so shots finish one by one.

After ingest and the plan, the device runs the snippet stream unit by unit. A shot whose
snippets are all recorded enters its stages (``stages.table``, in order): co-alignment,
merge, normalization, refinement, export. Each stage runs on a lane:

- the *device lane* is this thread: snippet units and the shots' device stages
  (refinement, the merge of a latent-scratch shot), a finishing shot before more snippets;
- the *host lane* runs co-alignment, merge, normalization and exports. On a GPU or a
  cluster it is a thread beside the device work (the device never waits for host work);
  on a CPU it runs between device work on this thread, because CPU results depend on how
  many threads each operation gets and the solver changes that while it runs.

The snippet scratch of the shots in flight stays within the plan's budget: before starting
the snippets of a new shot the runner lets earlier shots merge. Intermediates are released
as soon as every stage reading them is done for the shots they hold (the table says which).
A finished shot's outputs are final; ``ctx.on_shot(shot)`` is called when its depth is.
"""

from __future__ import annotations

import queue
import threading
from typing import Callable

from ..storage import layout
from .run_context import RunContext
from .shots.model import Shot
from .stages import table
from .stages.coalign import solved_note


class HostLane:
    """Host tasks: run at once here (``threaded=False``), or one at a time on a thread, in order."""

    def __init__(self, threaded: bool):
        self.threaded = threaded
        self._todo: queue.Queue = queue.Queue()
        self._done: queue.Queue = queue.Queue()
        self._busy = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._work, daemon=True, name="host-lane") if threaded else None
        if self._thread:
            self._thread.start()

    def submit(self, key, fn: Callable[[], None]) -> None:
        self._busy += 1
        if self.threaded:
            self._todo.put((key, fn))
        else:
            self._done.put((key, self._call(fn)))

    @staticmethod
    def _call(fn: Callable[[], None]) -> BaseException | None:
        try:
            fn()
            return None
        except BaseException as exc:  # re-raised on the run's thread
            return exc

    def _work(self) -> None:
        while not self._stop.is_set():
            try:
                key, fn = self._todo.get(timeout=0.1)
            except queue.Empty:
                continue
            self._done.put((key, self._call(fn)))

    @property
    def busy(self) -> bool:
        return self._busy > 0

    def finished(self, wait: bool = False) -> list:
        """Keys of the tasks finished since the last call (``wait``: at least one); a task's
        exception is raised here."""
        out = []
        try:
            while True:
                key, error = self._done.get(block=wait and not out, timeout=None)
                self._busy -= 1
                if error is not None:
                    raise error
                out.append(key)
        except queue.Empty:
            return out

    def close(self) -> None:
        """Stop taking tasks; a task still running finishes its unit in flight (it writes whole files)."""
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=30)


class Runner:
    """Walks every shot through ``table.shot_stages`` (see the module docstring)."""

    def __init__(self, ctx: RunContext, threaded_host: bool):
        self.ctx = ctx
        self.plan = ctx.plan
        self.stages = table.shot_stages(ctx.cfg)
        self.final = self.stages.index(table.final_depth_stage(ctx.cfg))
        self.next = [self._first_undone(shot) for shot in self.plan.shots]  # per shot: stage index to do
        self.running: set[int] = set()  # shots with a stage queued or running
        self.device_ready: list[int] = []
        self.host = HostLane(threaded_host)
        self.solved: set[int] = set()
        self.last_reader = {family: max((self.stages.index(s) for s in table.readers(family, ctx.cfg)
                                         if s in self.stages), default=-1)
                            for family in (table.SCRATCH, table.RGB_LATENTS, table.REFINE_LATENTS)}
        self.released_shots = {family: 0 for family in (table.RGB_LATENTS, table.REFINE_LATENTS)}
        self.released_units: set[int] = set()
        self.in_flight = {k for k in ctx.stream.shot_units if not self._done_with(table.SCRATCH, k)}
        for k, shot in enumerate(self.plan.shots):
            if self.next[k] > self.final:
                self._shot_final(shot)
            if self.next[k] == len(self.stages):
                ctx.timers["shots"].advance(1, reused=True)
        self._release(range(len(self.plan.shots)))  # what a killed run had no time to release

    # ------------------------------------------------------------ state

    def _stage_done(self, stage: table.Stage, shot: Shot) -> bool:
        if stage.is_done is not None:
            return stage.is_done(self.ctx, shot)
        return all(self.ctx.store.is_done(stage.name, unit) for unit in stage.units(self.plan, shot))

    def _first_undone(self, shot: Shot) -> int:
        for i, stage in enumerate(self.stages):
            if not self._stage_done(stage, shot):
                return i
        return len(self.stages)

    def _ready(self, k: int) -> bool:
        """Whether shot ``k``'s next stage may start now."""
        i = self.next[k]
        if i >= len(self.stages) or k in self.running:
            return False
        stage = self.stages[i]
        if table.SCRATCH in stage.reads and not self.ctx.stream.shot_done(k):
            return False
        if stage.after_all(self.plan) and any(n < i for n in self.next):
            return False
        if stage.in_order and k > 0 and self.next[k - 1] <= i:
            return False
        return True

    @property
    def finished(self) -> bool:
        return all(n == len(self.stages) for n in self.next)

    # ------------------------------------------------------------ the walk

    def run(self) -> None:
        stream = self.ctx.stream
        try:
            while not self.finished or self.host.busy:
                self._schedule()
                if self.device_ready:
                    k = self.device_ready.pop(0)
                    self._run_stage(k)
                    self._advance(k)
                    continue
                units = stream.next_units()
                if units and self._scratch_allows(units):
                    self._run_snippets(units)
                    continue
                if self.host.busy:
                    for k in self.host.finished(wait=True):
                        self._advance(k)
                    continue
                if units:  # nothing else can free scratch: go on
                    self._run_snippets(units)
                    continue
                raise RuntimeError(f"runner stuck: shot stages {self.next}, snippets finished {stream.finished}")
        finally:
            self.host.close()
        if stream.widened:
            self.ctx.progress.note(f"{stream.widened} snippet batch(es) gave non-finite depth in the compute "
                                   "dtype (overflow) and were computed again in float32")
        note = solved_note(self.ctx.store, self.plan, self.solved)
        if note:
            self.ctx.progress.note(note)

    def _schedule(self) -> None:
        """Queue every shot whose next stage is ready on its lane (host tasks in shot order)."""
        for k in self.host.finished():
            self._advance(k)
        for k, shot in enumerate(self.plan.shots):
            if not self._ready(k):
                continue
            self.running.add(k)
            if self.stages[self.next[k]].lane(self.plan, shot) == table.DEVICE:
                self.device_ready.append(k)
            else:
                self.host.submit(k, lambda k=k: self._run_stage(k))

    def _run_snippets(self, units) -> None:
        touched = self.ctx.stream.shots_touched(units)
        for k in sorted(touched - self.in_flight):
            if not self.ctx.stream.shot_started(k):
                self.ctx.progress.event("shot", shot=k, state="snippets")
        with self.ctx.timers[layout.SNIPPETS].working():
            self.ctx.stream.run(units, self.ctx.cfg.seed, self.ctx.device_timer)
        self.in_flight |= touched

    def _run_stage(self, k: int) -> None:
        stage = self.stages[self.next[k]]
        with self.ctx.timers[stage.name].working():
            stage.run(self.ctx, self.plan.shots[k])
        if stage.name == layout.COALIGN:
            self.solved.add(k)

    def _advance(self, k: int) -> None:
        """Shot ``k``'s stage is done: the next one may start; release what nobody reads now."""
        self.running.discard(k)
        shot = self.plan.shots[k]
        self.next[k] += 1
        if self.next[k] == self.final + 1:
            self._shot_final(shot)
        if self.next[k] == len(self.stages):
            self.ctx.timers["shots"].advance(1)
            self.ctx.progress.event("shot", shot=k, state="done")
        self._release({j for j in self.in_flight if self._done_with(table.SCRATCH, j)})

    def _shot_final(self, shot: Shot) -> None:
        self.ctx.progress.event("shot", shot=shot.index, state="final")
        if self.ctx.on_shot is not None:
            self.ctx.on_shot(shot)

    # ------------------------------------------------------------ scratch and releases

    def _done_with(self, family: str, k: int) -> bool:
        """Whether every stage reading ``family`` is done for shot ``k``."""
        return self.ctx.stream.shot_done(k) and self.next[k] > self.last_reader[family]

    def _scratch_allows(self, units) -> bool:
        """Whether starting ``units`` keeps the scratch of the shots in flight within the budget."""
        stream, plan = self.ctx.stream, self.plan
        held = sum(max(stream.stored_bytes(k), plan.scratch_estimate(k)) for k in self.in_flight)
        held += sum(plan.scratch_estimate(k) for k in stream.shots_touched(units) - self.in_flight)
        return held <= plan.scratch_budget or not self.in_flight

    def _release(self, merged) -> None:
        """Release the scratch units of the ``merged`` shots no other shot needs, and the rows of
        the per-frame intermediates of the shots done with them (in order)."""
        ctx, plan, stream = self.ctx, self.plan, self.ctx.stream
        self.in_flight -= set(merged)
        for k in merged:
            for first in stream.units_of_shot(k):
                if first not in self.released_units and all(self._done_with(table.SCRATCH, j)
                                                            for j in stream.unit_shots[first]):
                    ctx.release_scratch_unit(first)
                    self.released_units.add(first)
        for family, names in ((table.RGB_LATENTS, (layout.RGB_LATENTS,)),
                              (table.REFINE_LATENTS, (layout.refine_latents(0), layout.refine_latents(1)))):
            if family == table.REFINE_LATENTS and not ctx.cfg.refine_steps:
                continue
            done = self.released_shots[family]
            while done < len(plan.shots) and self._done_with(family, done):
                done += 1
            if done > self.released_shots[family]:
                for name in names:
                    ctx.release_rows(name, plan.shots[self.released_shots[family]].start, plan.shots[done - 1].stop)
                self.released_shots[family] = done
