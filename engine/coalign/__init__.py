"""Co-alignment: one scale and shift per snippet, solved on the snippet graph (SPEC.md).

``solve`` works on the SPEC samples of every snippet map, ``align`` on full-resolution
snippets; ``objective`` evaluates the published objective for given parameters.
"""

from .objective import objective
from .sampling import BORDER, STRIDE, frames_from_shapes, sample_pixels
from .solve import SOLVERS, AlignResult, align, solve

__all__ = ["AlignResult", "BORDER", "SOLVERS", "STRIDE", "align", "frames_from_shapes", "objective",
           "sample_pixels", "solve"]
