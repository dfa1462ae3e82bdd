"""Stage bars for notebooks: drawn by ``tqdm.auto``, i.e. HTML widgets in a Jupyter kernel (text
bars elsewhere, or where ipywidgets is missing). The ``notebook`` progress mode, chosen by
``auto`` inside a kernel."""

from __future__ import annotations

from tqdm.auto import tqdm as auto_tqdm

from .sinks import StageFormat


class NotebookStageBar(StageFormat, auto_tqdm):
    """A stage's bar as ``tqdm.auto`` draws it, showing what ``StageFormat`` reads from the stage."""
