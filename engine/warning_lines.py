"""Python warnings shown as one ``warning: ...`` line each, never in Python's raw two-line form.

Which warnings are shown stays Python's choice (its filters: ``-W``, ``PYTHONWARNINGS``, and
by default each distinct warning once per place that raises it, deprecations of libraries
hidden); only how a shown warning reaches the user changes. The hook never records
warnings, so a warning raised while one is being shown cannot loop.
"""

from __future__ import annotations

import threading
import warnings
from contextlib import contextmanager
from typing import Callable, Iterator

from ..errors import InputWarning

_showing = threading.local()  # a warning raised while showing one is dropped, never shown again and again


def warning_text(message: Warning | str, category: type[Warning]) -> str:
    """One line for a warning: an input warning's own text, any other's text and its kind."""
    text = " ".join(str(message).split())
    return text if issubclass(category, InputWarning) else f"{text} ({category.__name__})"


@contextmanager
def warnings_as_lines(emit: Callable[[str], None]) -> Iterator[None]:
    """While inside, every warning Python shows goes to ``emit`` as one line (see ``warning_text``);
    the previous way of showing warnings is restored after. Process-wide: warnings of other
    threads (loader, writer) come here too."""

    def show(message, category, filename, lineno, file=None, line=None) -> None:
        if getattr(_showing, "active", False):
            return
        _showing.active = True
        try:
            emit(warning_text(message, category))
        finally:
            _showing.active = False

    with warnings.catch_warnings():
        warnings.showwarning = show
        yield
