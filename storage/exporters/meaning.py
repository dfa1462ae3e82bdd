"""What the exported values mean: one definition, written into every output.

The run's result is **relative inverse depth** (disparity-like): affine-invariant (each
shot has an unknown scale and shift of its own), near = large, each shot normalized to
[-1, 1] (or the whole video at once, ``--normalize global``; after refinement only
approximately, so ``range`` records the actual min and max). It is not metric.

On request (``--output depth``) exporters write **relative depth** instead::

    depth = 1 / (inverse - lo + shift)          shift = SHIFT_FRACTION * (hi - lo)

with ``lo, hi`` the min and max of the inverse depth over the shot (each shot is converted
with its own range: ``DepthMeaning.parts``). The farthest pixel
(``inverse == lo``) gets ``1 / shift``, the nearest ``1 / (hi - lo + shift)``: with the
default fraction 0.05 the farthest point lies 21x as far as the nearest (it caps the sky,
whose inverse depth is ~0). It is not metric, and it is true depth up to scale only if the
unknown shift of the inverse happens to equal ``shift - lo`` (true inverse depth is
``a * inverse + b``; the reciprocal does not commute with the unknown ``b``).
Back to inverse depth: ``inverse = 1 / depth + lo - shift``.

``DepthMeaning`` describes the values an output holds; ``to_output_values`` turns the
run's inverse depth into them, and every exporter calls it so all outputs agree.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Sequence

import numpy as np

INVERSE = "relative inverse depth"
DEPTH = "relative depth"
OUTPUT_KINDS = {"inverse": INVERSE, "depth": DEPTH}  # --output choice -> quantity
SHIFT_FRACTION = 0.05  # shift of the inverse before the reciprocal, as a fraction of its range
NORMALIZED_TO = (-1.0, 1.0)  # what the run normalizes its result to

_NOTES = {
    INVERSE: ("Relative inverse depth (disparity-like) from RollingDepth: affine-invariant, i.e. true inverse "
              "depth = a * value + b with unknown a > 0 and b per video; near = large; not metric."),
    DEPTH: ("Relative depth (not metric): depth = 1 / (inverse - inverse_range[0] + shift) of the relative "
            "inverse depth, which is itself known only up to an unknown scale and shift per video; near = small."),
}


@dataclass(frozen=True)
class DepthMeaning:
    """What an output's values are.

    ``range``: actual (min, max) of the written values over the whole video.
    ``inverse_range``: (min, max) of the run's relative inverse depth (equal to ``range``
    for inverse depth). ``normalized_to``: the interval the run normalized inverse depth
    to (``None`` if it did not). ``shift``: for relative depth, the amount added to
    ``inverse - inverse_range[0]`` before the reciprocal (``None`` for inverse depth).
    ``parts``: ``(first, stop, meaning)`` of every shot of a video of several shots, each
    with its own ranges (values are converted shot by shot); empty for one shot.
    """

    quantity: str
    range: tuple[float, float]
    inverse_range: tuple[float, float]
    normalized_to: tuple[float, float] | None = NORMALIZED_TO
    shift: float | None = None
    near: str = "large"
    affine_invariant: bool = True
    metric: bool = False
    notes: str = ""
    parts: tuple[tuple[int, int, "DepthMeaning"], ...] = ()

    @property
    def is_depth(self) -> bool:
        return self.quantity == DEPTH

    def at(self, index: int) -> "DepthMeaning":
        """The meaning of frame ``index``'s values: its shot's (itself for one shot)."""
        for first, stop, part in self.parts:
            if first <= index < stop:
                return part
        return self

    def to_inverse_rule(self) -> str:
        """How to get the run's relative inverse depth back from a written value."""
        if not self.is_depth:
            return "inverse = value"
        if self.parts:
            return "inverse = 1 / value + inverse_range[0] - shift, with the inverse_range and shift of the frame's shot"
        return f"inverse = 1 / value + {self.inverse_range[0]!r} - {self.shift!r}"

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        for k in ("range", "inverse_range", "normalized_to"):
            d[k] = None if d[k] is None else [float(v) for v in d[k]]
        d["to_inverse_depth"] = self.to_inverse_rule()
        d.pop("parts")
        if self.parts:
            d["shots"] = [{"frames": [first, stop], "range": [float(v) for v in part.range],
                           "inverse_range": [float(v) for v in part.inverse_range], "shift": part.shift}
                          for first, stop, part in self.parts]
        return d

    def as_depth(self, shift_fraction: float = SHIFT_FRACTION) -> "DepthMeaning":
        """The relative-depth meaning over the same inverse depth (itself if already depth)."""
        if self.is_depth:
            return self
        if self.parts:
            return describe_parts([(a, b, *part.inverse_range) for a, b, part in self.parts], "depth",
                                  self.normalized_to, shift_fraction)
        return describe(*self.inverse_range, output="depth", normalized_to=self.normalized_to,
                        shift_fraction=shift_fraction)


def describe(lo: float, hi: float, output: str = "inverse", normalized_to: tuple[float, float] | None = NORMALIZED_TO,
             shift_fraction: float = SHIFT_FRACTION) -> DepthMeaning:
    """The meaning of ``output`` ("inverse" or "depth") for a run whose inverse depth spans ``[lo, hi]``.

    A constant video (``hi == lo``) gets ``shift = 1``, so its relative depth is 1.
    """
    if output not in OUTPUT_KINDS:
        raise ValueError(f"unknown output '{output}' (choose from {', '.join(OUTPUT_KINDS)})")
    lo, hi = float(lo), float(hi)
    if not (np.isfinite(lo) and np.isfinite(hi) and hi >= lo):
        raise ValueError(f"bad inverse depth range ({lo}, {hi})")
    norm = None if normalized_to is None else (float(normalized_to[0]), float(normalized_to[1]))
    quantity = OUTPUT_KINDS[output]
    if quantity == INVERSE:
        return DepthMeaning(INVERSE, (lo, hi), (lo, hi), norm, None, "large", notes=_NOTES[INVERSE])
    if shift_fraction <= 0:
        raise ValueError("shift_fraction must be > 0")
    shift = shift_fraction * (hi - lo) if hi > lo else 1.0
    partial = DepthMeaning(DEPTH, (0.0, 0.0), (lo, hi), norm, shift, "small", notes=_NOTES[DEPTH])
    ends = to_output_values(np.array([hi, lo], dtype=np.float32), partial)  # decreasing: nearest first
    return dataclasses.replace(partial, range=(float(ends[0]), float(ends[1])))


def describe_parts(shots: Sequence[tuple[int, int, float, float]], output: str = "inverse",
                   normalized_to: tuple[float, float] | None = NORMALIZED_TO,
                   shift_fraction: float = SHIFT_FRACTION) -> DepthMeaning:
    """The meaning of a video of shots ``(first, stop, lo, hi)`` (frames ``[first, stop)`` whose
    inverse depth spans ``[lo, hi]``), each converted with its own range; one shot: ``describe``."""
    parts = [(int(a), int(b), describe(lo, hi, output, normalized_to, shift_fraction)) for a, b, lo, hi in shots]
    if len(parts) == 1:
        return parts[0][2]
    first = parts[0][2]
    whole = describe(min(p.inverse_range[0] for _, _, p in parts), max(p.inverse_range[1] for _, _, p in parts),
                     "inverse", normalized_to)
    return dataclasses.replace(whole, quantity=first.quantity, near=first.near, notes=first.notes,
                               range=(min(p.range[0] for _, _, p in parts), max(p.range[1] for _, _, p in parts)),
                               shift=None, parts=tuple(parts))


def to_output_values(depth_chunk: np.ndarray, meaning: DepthMeaning, first: int = 0) -> np.ndarray:
    """The run's relative inverse depth -> the values ``meaning`` describes, float32.

    ``depth_chunk`` is one frame ``[H, W]`` or frames ``[n, H, W]`` starting at frame ``first``
    (which shot's range converts them, when the meaning has ``parts``). Inverse depth passes
    through (no copy if already float32). Relative depth is computed in float64; inverse
    values below ``inverse_range[0]`` (only if the range was not the shot's true minimum) are
    clamped to it, so the result is always finite and positive.
    """
    inv = np.asarray(depth_chunk, dtype=np.float32)
    if not meaning.is_depth:
        return inv
    if meaning.parts:
        if inv.ndim == 2:
            return to_output_values(inv, meaning.at(first))
        return np.stack([to_output_values(frame, meaning.at(first + i)) for i, frame in enumerate(inv)]) \
            if len(inv) else inv
    x = np.maximum(inv.astype(np.float64) - meaning.inverse_range[0], 0.0) + meaning.shift
    return (1.0 / x).astype(np.float32)


def describe_numbers(numbers: Sequence[int] | None, frames: int) -> dict:
    """How frames are numbered, for sidecars: evenly spaced numbers as first/step/count, else the list."""
    if numbers is None:
        numbers = range(frames)
    numbers = [int(n) for n in numbers]
    step = numbers[1] - numbers[0] if len(numbers) > 1 else 1
    if numbers and step and numbers == list(range(numbers[0], numbers[0] + step * len(numbers), step)):
        return {"first": numbers[0], "step": step, "count": len(numbers)}
    return {"numbers": numbers, "count": len(numbers)}


def sidecar_json(meaning: DepthMeaning, extra: dict) -> str:
    """The ``depth.json`` sidecar: what the values are, how to convert them back, plus ``extra``.

    ``extra`` carries facts of the run, e.g. ``frames`` (count), ``frame_numbers``
    (``describe_numbers``), ``fps``, ``size`` ([H, W]) and ``outputs``; its keys win.
    """
    doc = {
        "format": "rdengine depth sidecar",
        "version": 1,
        **meaning.to_dict(),
        "units": "none",
        "frame_numbering": ("frames keep the input's frame numbers (an image sequence's own, a video's frame "
                            "index from 0; --start and --stride keep them too): per-frame files are named by "
                            "them (frame_name), array outputs are indexed 0..frames-1 along axis 0 with the "
                            "numbers in frame_numbers"),
        **extra,
    }
    return json.dumps(doc, indent=2, sort_keys=False) + "\n"
