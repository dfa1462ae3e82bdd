"""The snippet scratch: where every decoded snippet map waits for its shot's co-alignment and merge.

Each snippet unit (batches ``[first, stop)`` of the stream) writes three arrays of its own
(``layout.snippet_scratch``), one shard each, rows in stream order, one row per snippet
*frame* (a snippet of length L gives L rows, slot 0 first):

- ``depth``  ``[n, H, W]``: full-resolution depth of the snippets of ``depth``-scratch shots,
  in the compute precision, losslessly compressed for smooth maps;
- ``latent`` ``[n, 4, h, w]``: the depth latents of ``latent``-scratch shots (a take too long
  for the scratch budget), decoded again at merge time;
- ``samples`` ``[n, P_h, P_w]``: the SPEC sample grid of every snippet frame (co-alignment).

``ScratchIndex`` knows from the plan alone where snippet ``i`` of group ``k`` lands (its batch
and its rows); which unit holds a batch comes from the unit records. ``SnippetMaps`` and
``SnippetSamples`` read one group's maps back as ``[N_g, L_g, ...]`` array-likes.
A unit's arrays are deleted once every shot with snippets in it is merged.
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass

import numpy as np
import torch

from ...storage import layout
from ...storage.run_store import SMOOTH_MAP_CODECS, CheckedArray, RunStore
from ..batching import SnippetUnit
from ..coalign import sample_pixels
from ..latents import decode_depth
from ..model import Model
from ..plan import RunPlan

KINDS = ("depth", "latent")
DECODE_BATCH = 8


@dataclass(frozen=True)
class UnitRows:
    """How many rows each array of one unit holds."""

    depth: int
    latent: int
    samples: int


class ScratchIndex:
    """Rows of every snippet frame in the scratch, from the plan (``plan.batches``, ``plan.scratch``).

    Row numbers are global along the stream (all units together): ``sample_row[k][i]`` is the
    ``samples`` row of slot 0 of snippet ``i`` of group ``k``, ``kind_row[k][i]`` its row in its
    kind's array; ``batch_of[k][i]`` its batch. ``first_rows[kind][b]``: the first row of batch ``b``.
    """

    def __init__(self, plan: RunPlan):
        shot_of = plan.shot_of_group()
        self.kind_of_group = [plan.scratch[shot_of[k]] for k in range(len(plan.groups))]
        self.batch_of = [np.zeros(g.count, np.int64) for g in plan.groups]
        self.sample_row = [np.zeros(g.count, np.int64) for g in plan.groups]
        self.kind_row = [np.zeros(g.count, np.int64) for g in plan.groups]
        counts = {"samples": 0, "depth": 0, "latent": 0}
        self.first_rows: dict[str, list[int]] = {name: [] for name in counts}
        for b, batch in enumerate(plan.batches):
            for name in counts:
                self.first_rows[name].append(counts[name])
            for k, i in batch.members:
                kind = self.kind_of_group[k]
                self.batch_of[k][i] = b
                self.sample_row[k][i] = counts["samples"]
                self.kind_row[k][i] = counts[kind]
                counts["samples"] += batch.length
                counts[kind] += batch.length
        for name in counts:
            self.first_rows[name].append(counts[name])

    def unit_rows(self, unit: SnippetUnit) -> UnitRows:
        rows = {name: firsts[unit.stop] - firsts[unit.first] for name, firsts in self.first_rows.items()}
        return UnitRows(**rows)


def scratch_arrays(store: RunStore, plan: RunPlan, index: ScratchIndex, unit: SnippetUnit,
                   dtype: str) -> dict[str, CheckedArray]:
    """Create (or reopen) the arrays of ``unit`` that have rows: ``depth``, ``latent``, ``samples``."""
    rows = index.unit_rows(unit)
    ph, pw = sample_pixels(np.zeros(plan.geometry.depth)).shape
    specs = {"depth": (rows.depth, plan.geometry.depth, ("y", "x"), SMOOTH_MAP_CODECS),
             "latent": (rows.latent, (4, *plan.geometry.latent), ("channel", "latent_y", "latent_x"), None),
             "samples": (rows.samples, (ph, pw), ("sample_y", "sample_x"), None)}
    arrays = {}
    for name, (n, trailing, dims, codecs) in specs.items():
        if n:
            arrays[name] = store.require(layout.snippet_scratch(unit.first, name), (n, *trailing), dtype,
                                         ("snippet_frame", *dims), n, inner=(1, *trailing), codecs=codecs)
    return arrays


class UnitLocator:
    """Which recorded unit holds a batch: ``unit_firsts`` sorted (the first batch of every unit)."""

    def __init__(self, unit_firsts: list[int]):
        self.firsts = sorted(unit_firsts)

    def unit_first(self, batch: int) -> int:
        at = bisect_right(self.firsts, batch) - 1
        if at < 0:
            raise KeyError(f"no snippet unit holds batch {batch}")
        return self.firsts[at]


def read_rows(store: RunStore, index: ScratchIndex, locator: UnitLocator, name: str, batches: np.ndarray,
              rows: np.ndarray) -> np.ndarray:
    """Global ``rows`` of array ``name`` (``depth``, ``latent`` or ``samples``), each in batch
    ``batches[j]``, read unit by unit: ``[len(rows), ...]``."""
    firsts = np.array([locator.unit_first(int(b)) for b in batches], dtype=np.int64)
    out = None
    for first in np.unique(firsts):
        picked = np.flatnonzero(firsts == first)
        array = store.array(layout.snippet_scratch(int(first), name))
        local = rows[picked] - index.first_rows[name][int(first)]
        values = array.rows(local)
        if out is None:
            out = np.empty((len(rows), *values.shape[1:]), dtype=values.dtype)
        out[picked] = values
    return out


class SnippetSamples:
    """Group ``k``'s SPEC samples as ``[N_g, L_g, P_h, P_w]`` (read by snippet, ``x[a:b]``)."""

    def __init__(self, store: RunStore, index: ScratchIndex, locator: UnitLocator, k: int, length: int,
                 sample_shape: tuple[int, int]):
        self.store, self.index, self.locator, self.k, self.length = store, index, locator, k, length
        self.shape = (len(index.sample_row[k]), length, *sample_shape)

    def __getitem__(self, rows: slice) -> np.ndarray:
        a, b, _ = rows.indices(self.shape[0])
        starts = self.index.sample_row[self.k][a:b]
        flat = (starts[:, None] + np.arange(self.length)[None, :]).ravel()
        batches = np.repeat(self.index.batch_of[self.k][a:b], self.length)
        values = read_rows(self.store, self.index, self.locator, "samples", batches, flat)
        return values.reshape(b - a, self.length, *self.shape[2:])


class SnippetMaps:
    """Group ``k``'s full-resolution snippet depth as ``[N_g, L_g, H, W]``, read as ``x[lo:hi, slot]``:
    from the ``depth`` scratch, or decoded from the ``latent`` scratch on ``model``'s device."""

    def __init__(self, store: RunStore, index: ScratchIndex, locator: UnitLocator, k: int, length: int,
                 depth_shape: tuple[int, int], model: Model | None, geometry):
        self.store, self.index, self.locator, self.k = store, index, locator, k
        self.kind = index.kind_of_group[k]
        self.model, self.geometry = model, geometry
        self.shape = (len(index.kind_row[k]), length, *depth_shape)
        self.decoded = 0  # maps decoded from latents (device work)

    def __getitem__(self, selection: tuple[slice, int]) -> np.ndarray:
        rows, slot = selection
        a, b, _ = rows.indices(self.shape[0])
        flat = self.index.kind_row[self.k][a:b] + slot
        values = read_rows(self.store, self.index, self.locator, self.kind, self.index.batch_of[self.k][a:b], flat)
        return values if self.kind == "depth" else self._decode(values)

    def _decode(self, latents: np.ndarray) -> np.ndarray:
        model = self.model
        z = torch.from_numpy(latents).to(model.device, model.dtype)
        self.decoded += len(z)
        with torch.inference_mode():
            maps = [decode_depth(model.vae, z[i:i + DECODE_BATCH], self.geometry)
                    for i in range(0, len(z), DECODE_BATCH)]
        return torch.cat(maps).to(model.storage_torch_dtype).cpu().numpy()


def group_scratch(store: RunStore, plan: RunPlan, k: int, model: Model | None = None) -> np.ndarray:
    """Group ``k``'s whole snippet scratch read back as ``[N_g, L_g, H, W]`` depth (latents decoded
    with ``model``): for inspection and tests, while the scratch is kept."""
    firsts = [layout.batch_unit_first(unit) for unit in store.done_units(layout.SNIPPETS)]
    group = plan.groups[k]
    maps = SnippetMaps(store, ScratchIndex(plan), UnitLocator(firsts), k, group.length, plan.geometry.depth, model,
                       plan.geometry)
    return np.stack([maps[0:group.count, slot] for slot in range(group.length)], axis=1)
