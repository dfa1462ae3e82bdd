"""The 16-bit mapping shared by ``png16`` and ``gray16``: values over ``[min, max]`` <-> codes 0..65535."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..files import write_text_atomically
from .meaning import DepthMeaning, to_output_values

MAX_CODE = 65535


@dataclass(frozen=True)
class Scale16:
    """Linear map of ``[lo, hi]`` onto 0..65535 (rounded to nearest, clipped); ``hi == lo`` maps to 0."""

    lo: float
    hi: float

    @classmethod
    def of(cls, meaning: DepthMeaning) -> "Scale16":
        """The mapping of the values ``meaning`` describes (its ``range``)."""
        return cls(*meaning.range)

    @property
    def span(self) -> float:
        return self.hi - self.lo if self.hi > self.lo else 1.0

    def encode(self, values: np.ndarray) -> np.ndarray:
        """Output values -> ``uint16`` codes."""
        return np.clip(np.rint((values - self.lo) / self.span * MAX_CODE), 0, MAX_CODE).astype(np.uint16)

    def decode(self, codes: np.ndarray) -> np.ndarray:
        """``uint16`` codes -> output values (float64), within half a step of what was encoded."""
        return self.lo + np.asarray(codes, dtype=np.float64) / MAX_CODE * self.span

    def codes(self, depth_chunk: np.ndarray, meaning: DepthMeaning, first: int = 0) -> np.ndarray:
        """The run's inverse depth (frames from ``first``) -> codes of the values ``meaning`` describes."""
        return self.encode(to_output_values(depth_chunk, meaning, first))

    def to_dict(self, meaning: DepthMeaning, per_shot: bool = False) -> dict:
        """The mapping file's contents: ``min``, ``max``, ``rule``, and what the values are;
        ``per_shot``: codes map each shot's own range (``shots``: frames ``[first, stop)``, min, max)."""
        if per_shot and meaning.parts:
            return {"rule": f"value = min + code / {MAX_CODE} * (max - min), with the min and max of the frame's shot",
                    "shots": [{"frames": [a, b], "min": part.range[0], "max": part.range[1]}
                              for a, b, part in meaning.parts],
                    "quantity": meaning.quantity, "meaning": meaning.to_dict()}
        return {"min": self.lo, "max": self.hi, "rule": f"value = min + code / {MAX_CODE} * (max - min)",
                "quantity": meaning.quantity, "meaning": meaning.to_dict()}

    def write(self, path: Path, meaning: DepthMeaning, per_shot: bool = False) -> None:
        write_text_atomically(path, json.dumps(self.to_dict(meaning, per_shot), indent=2) + "\n")
