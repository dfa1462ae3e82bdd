"""The Python front door: load RollingDepth once, then run it on videos, image sequences or frames
in memory, as ``rdengine process`` does (the command is a thin shell over this class).

Every option of ``rdengine process`` is a keyword here, with the same name (``-`` as ``_``),
default, rule and error (``rdengine.errors.ConfigError``): see ``engine.options``. Importing
this module is cheap; torch and the model load when first needed.
"""

from __future__ import annotations

import ctypes
import inspect
import os
import queue
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Sequence

from .engine.config import DEFAULT_CHECKPOINT, PRESETS
from .engine.options import OPTIONS, RunOptions, describe_options, signature_parameters
from .errors import ConfigError, EngineError
from .result import DepthArray, DepthResult, ShotDepth, TemporaryFolders
from .storage import layout

if TYPE_CHECKING:
    import numpy as np
    from PIL.Image import Image

    from .engine.model import Model
    from .engine.progress import Progress
    from .engine.shots.model import Shot

    Input = str | os.PathLike | np.ndarray | Sequence[np.ndarray | Image] | Iterable[np.ndarray]  # see RollingDepth


class RollingDepth:
    """RollingDepth video depth: the model loaded once, run on any number of inputs.

    ``RollingDepth.from_pretrained(checkpoint, device=..., dtype=..., preset=..., **options)``
    checks the options and loads the model; ``RollingDepth(checkpoint, **options)`` only
    checks them (the model loads at the first call). Calling it runs every stage on one input
    and returns a ``DepthResult``; ``stream`` yields each shot's depth as soon as it is final.

    Inputs: a path (a video file, or an image sequence: a folder, ``shot_%04d.png``, a glob),
    a numpy array ``[T, H, W, 3]`` (``uint8``, ``uint16``, or float in [0, 1]), a list of such
    frames or of PIL images, or an iterator of frames (read once, spooled losslessly to disk,
    never all in memory). ``fps`` gives in-memory frames and image sequences their rate
    (default 24).

    With ``out`` a run writes ``out/run.zarr`` and the ``save`` outputs exactly as
    ``rdengine process IN -o out`` (same bytes) and resumes like it; without, it runs in a
    temporary folder that lives as long as the result and writes only the store (pass
    ``save=...`` for files there, or call ``result.save``).

    Options (keyword, type, default; the same as ``rdengine process --OPTION``; each can be
    given when constructing and overridden per call, except those the loaded model fixes:
    ``checkpoint``, ``device``, ``attention`` and the compute dtype):

{options}

    Errors are ``rdengine.errors.RdengineError`` subclasses with the one-line messages the
    command prints (``ConfigError`` for options, ``InputError`` for inputs, ``EngineError``
    for runs). One call at a time per instance.
    """

    def __init__(self, checkpoint: str | os.PathLike = DEFAULT_CHECKPOINT, **options: Any):
        self.options = RunOptions({**options, "checkpoint": checkpoint})
        self.model: Model | None = None
        self.model_settings: tuple[str, str, str, str] | None = None  # checkpoint, device, dtype, attention
        self._busy = threading.Lock()

    @classmethod
    def from_pretrained(cls, checkpoint: str | os.PathLike = DEFAULT_CHECKPOINT, *, device: str = "auto",
                        dtype: str | None = None, preset: str = "fast", **options: Any) -> "RollingDepth":
        """Check the options and load the model from ``checkpoint`` (a hub id, or a local folder in
        the same layout) onto ``device`` in ``dtype`` (default: the preset's; fp32 on CPU for
        fp16 presets). Runs whose units go to a cluster (``workers``, ``scheduler``) load it on
        the workers instead."""
        rolling_depth = cls(checkpoint, device=device, dtype=dtype, preset=preset, **options)
        rolling_depth.load()
        return rolling_depth

    def load(self) -> Model | None:
        """Load the model for this instance's options now (once; ``None`` for cluster runs)."""
        from .engine.progress import Progress

        with Progress(self.options.progress_mode) as progress:
            return self._model_for(self.options, progress)[0]

    def __call__(self, input: Input, out: str | os.PathLike | None = None, **options: Any) -> DepthResult:
        """Estimate depth for every frame of ``input``; returns the ``DepthResult``.

        ``out``: the output folder (a resumable run store and the ``save`` outputs, as
        ``rdengine process``); None: a temporary folder kept while the result lives.
        ``options``: any option, overriding this instance's for this call.
        """
        self._claim()
        try:
            return self._run(input, out, options)
        finally:
            self._busy.release()

    def stream(self, input: Input, out: str | os.PathLike | None = None, *, buffer: int = 2,
               **options: Any) -> "ShotStream":
        """Run on ``input`` in a background thread and yield each shot's ``ShotDepth`` as soon as
        its depth is final (in shot order), before the exports; at most ``buffer`` finished
        shots wait for the consumer (the run pauses meanwhile). Arguments as for calling.

        Errors of the run (and Ctrl-C) are raised in the consumer. Stopping early (``break``,
        an exception, ``close()``) interrupts the run as Ctrl-C would: with ``out`` it resumes
        on the next call. After the last shot, ``.result`` holds the ``DepthResult``.
        """
        if buffer < 1:
            raise ConfigError(f"buffer must be >= 1, not {buffer}")
        self._claim()
        folders = TemporaryFolders()
        store = (Path(out) if out is not None else folders.temporary()) / layout.STORE_NAME

        def run(on_shot: Callable[[Shot], None]) -> DepthResult:
            try:
                return self._run(input, out, options, on_shot, folders)
            finally:
                self._busy.release()

        return ShotStream(run, store, folders, buffer)

    # -- one run ----------------------------------------------------------------------------

    def _claim(self) -> None:
        """Take the instance for one run (released by the caller when the run ends)."""
        if not self._busy.acquire(blocking=False):
            raise EngineError("this RollingDepth is already running an input (one call or stream at a time)")

    def _run(self, input: Input, out: str | os.PathLike | None, overrides: dict,
             on_shot: Callable[[Shot], None] | None = None, folders: TemporaryFolders | None = None) -> DepthResult:
        from .engine.progress import Progress
        from .engine.progress.input_warnings import input_warnings
        from .storage.inputs.in_memory import open_frames

        options = self.options.replace(**overrides)
        folders = folders or TemporaryFolders()
        if out is None and "save" not in options.given:
            options = options.replace(save=("zarr",))  # no output folder: the store only
        out_dir = Path(out) if out is not None else folders.temporary()
        opts = options.execution()
        try:
            with Progress(opts.progress) as progress, input_warnings(progress):
                source = open_frames(input, stream=options["stream"], fps=options["fps"], spool_folder=out_dir)
                folders.add(getattr(source, "spool_folder", None))
                model, dtype = self._model_for(options, progress)
                from .engine.pipeline import process_video

                run = process_video(source, out_dir, options.run_config(dtype), opts, model=model,
                                    progress=progress, on_shot=on_shot)
        except BaseException:
            folders.close()
            raise
        return DepthResult(run, source, options, folders)

    def _model_for(self, options: RunOptions, progress: Progress) -> tuple[Model | None, str]:
        """The model a run with ``options`` computes with (loaded on first use, then kept) and its
        dtype; ``(None, dtype)`` when the units run on a cluster (its workers load the model)."""
        on_cluster = bool(options["workers"] or options["scheduler"])
        if self.model is None and not on_cluster:
            progress.note(f"loading model {options['checkpoint']} ...")  # torch and diffusers load first: seconds
        from .engine import model as models

        device = models.resolve_device(options["device"])
        dtype, note = options.compute_dtype(device.type)
        dtype = dtype or PRESETS[options["preset"]]["dtype"]
        wanted = (options["checkpoint"], str(device), dtype, options["attention"])
        if note and (self.model is None or on_cluster):
            progress.note(note)
        if on_cluster:
            return None, dtype
        if self.model is None:
            self.model = models.load_model(options["checkpoint"], options["device"], dtype, options["attention"])
            self.model_settings = wanted
        elif wanted != self.model_settings:
            raise ConfigError(f"this RollingDepth holds a model for {describe_model(self.model_settings)}; this call "
                              f"needs {describe_model(wanted)}: make another RollingDepth for it")
        return self.model, dtype

    def __repr__(self) -> str:
        loaded = f"model loaded ({describe_model(self.model_settings)})" if self.model else "model not loaded"
        given = ", ".join(f"{name}={self.options[name]!r}" for name in sorted(self.options.given))
        return f"RollingDepth({given}; {loaded})"


def describe_model(settings: tuple[str, str, str, str]) -> str:
    checkpoint, device, dtype, attention = settings
    return f"checkpoint {checkpoint} on {device} in {dtype} (attention {attention})"


class ShotStream(Iterator[ShotDepth]):
    """The shots of a run going on in a background thread (see ``RollingDepth.stream``).

    Iterate for ``ShotDepth``s; ``result`` is the ``DepthResult`` once the run has finished;
    ``close()`` (also on ``with`` exit, or when the stream is dropped) stops an unfinished run.
    """

    def __init__(self, run: Callable[[Callable[[Shot], None]], DepthResult], store: Path, folders: TemporaryFolders,
                 buffer: int):
        self.result: DepthResult | None = None
        self._store, self._folders = store, folders
        self._handoff: queue.Queue = queue.Queue(maxsize=buffer)
        self._finished = False
        self._thread = threading.Thread(target=self._work, args=(run,), name="rdengine-stream", daemon=True)
        self._thread.start()

    def _work(self, run) -> None:
        try:
            try:
                outcome = ("done", run(lambda shot: self._handoff.put(("shot", shot))))
            except BaseException as exc:  # handed to the consumer, Ctrl-C included
                outcome = ("error", exc)
            self._handoff.put(outcome)
        except BaseException:  # stopped while handing over: the consumer is gone
            pass

    def __next__(self) -> ShotDepth:
        if self._finished:
            raise StopIteration
        while True:
            try:
                kind, value = self._handoff.get(timeout=0.2)  # a timeout keeps Ctrl-C responsive
                break
            except queue.Empty:
                continue
            except KeyboardInterrupt:  # the consumer was interrupted: so is the run
                self.close()
                raise
        if kind == "shot":
            return self._shot(value)
        self._finished = True
        self._thread.join()
        if kind == "error":
            raise value
        self.result = value
        raise StopIteration

    def _shot(self, shot: Shot) -> ShotDepth:
        from .storage.run_store import RunStore

        numbers = RunStore(self._store, mode="r").array(layout.FRAME)[shot.start:shot.stop]
        return ShotDepth(shot, DepthArray(self._store, shot.start, shot.stop, keep=self._folders), numbers)

    def close(self) -> None:
        """Stop the run if it is still going (as Ctrl-C would: an ``out`` store stays resumable)."""
        if self._finished:
            return
        self._finished = True
        if self._thread.is_alive():
            ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(self._thread.ident),
                                                       ctypes.py_object(KeyboardInterrupt))
        while self._thread.is_alive():  # empty the hand-over so a waiting run thread can see the interrupt
            try:
                self._handoff.get_nowait()
            except queue.Empty:
                self._thread.join(0.05)

    def __enter__(self) -> "ShotStream":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:
        if not getattr(self, "_finished", True):
            self.close()


def _document() -> None:
    """Fill the option list into the docstring and give the API's signatures every option as a
    typed keyword (from the table, so ``help(rdengine.RollingDepth)`` shows them all)."""
    options = [o for o in OPTIONS if o.name != "checkpoint"]
    RollingDepth.__doc__ = RollingDepth.__doc__.replace("{options}", describe_options(options))
    keywords = signature_parameters(options)
    for fn in (RollingDepth.__init__, RollingDepth.__call__, RollingDepth.stream,
               RollingDepth.from_pretrained.__func__):
        signature = inspect.signature(fn)
        named = [p for p in signature.parameters.values() if p.kind != inspect.Parameter.VAR_KEYWORD]
        fn.__signature__ = signature.replace(
            parameters=named + [p for p in keywords if p.name not in signature.parameters])


_document()

__all__ = ["RollingDepth", "ShotStream", "DepthResult", "ShotDepth", "DepthArray"]
