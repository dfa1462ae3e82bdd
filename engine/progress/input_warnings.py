"""Warnings during a run as progress ``warning:`` lines instead of Python's warning text."""

from __future__ import annotations

import warnings
from contextlib import contextmanager
from typing import Iterator

from ...errors import InputWarning
from ..warning_lines import warnings_as_lines
from .core import Progress


@contextmanager
def input_warnings(progress: Progress) -> Iterator[None]:
    """Every warning shown while inside as one ``warning:`` line through ``progress`` (input
    warnings such as a numbering gap always, others as Python's filters decide)."""
    with warnings_as_lines(progress.warning), warnings.catch_warnings():
        warnings.simplefilter("always", InputWarning)
        yield
