"""Warnings about the input, shown as progress ``warning:`` lines instead of Python's warning text."""

from __future__ import annotations

import warnings
from contextlib import contextmanager
from typing import Iterator

from ...errors import InputWarning
from .core import Progress


@contextmanager
def input_warnings(progress: Progress) -> Iterator[None]:
    """Input warnings (e.g. a numbering gap) as one ``warning:`` each, through ``progress``; other
    warnings are shown as Python shows them, once the block is left (inside it, showing one
    would record it again)."""
    caught: list[warnings.WarningMessage] = []
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield
    finally:
        for w in caught:
            if issubclass(w.category, InputWarning):
                progress.warning(str(w.message))
            else:
                warnings.showwarning(w.message, w.category, w.filename, w.lineno)
