"""The Python API (issue 25): the CLI's depth from a path, an array, PIL images and a generator with
the model loaded once; the CLI's bytes and resumption with an output folder; the CLI's options
and one-line errors as exceptions; lazy results; shots streamed as they finish; the session in
docs/api.md run as written; and a command line that answers without loading torch."""

from __future__ import annotations

import gc
import io
import re
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

import rdengine
from rdengine.cli import cli, join_list_options
from rdengine.engine import model as models
from rdengine.engine.options import OPTIONS, RunOptions
from rdengine.engine.progress import Progress
from rdengine.engine.testing.processes import run_rdengine
from rdengine.engine.testing.synthetic_clip import synthetic_edit
from rdengine.errors import ConfigError, EngineError, InputError, RdengineError
from rdengine.storage.exporters.colour_video import colour_table, colourize
from rdengine.storage.inputs.in_memory import FrameSequence, open_frames

FAST = dict(device="cpu", dtype="fp32", res=64, dilations=(1, 4))
CLI_FAST = ("--device", "cpu", "--dtype", "fp32", "--res", "64", "--dilations", "1", "4")
DOCS = Path(__file__).resolve().parents[1] / "docs" / "api.md"


@pytest.fixture(scope="module")
def edit(tmp_path_factory):
    """Two clearly different shots of 12 frames (64x48: 0.5 s, the shortest shot detected at 24 fps),
    and the same frames as a PNG sequence."""
    frames, cuts = synthetic_edit([12, 12], 64, 48)
    folder = tmp_path_factory.mktemp("edit")
    for i, frame in enumerate(frames):
        Image.fromarray(frame).save(folder / f"f_{i:04d}.png")
    return frames, cuts, str(folder / "f_%04d.png")


@pytest.fixture(scope="module")
def cli_out(edit, tiny_checkpoint, tmp_path_factory) -> Path:
    """``rdengine process`` on the PNG sequence, in a child process as a user runs it."""
    out = tmp_path_factory.mktemp("cli")
    proc = run_rdengine("process", edit[2], "-o", out, "--checkpoint", tiny_checkpoint, *CLI_FAST,
                        "--save", "npy", "--save", "png16", "--quiet")
    assert proc.returncode == 0, proc.stderr
    return out


@pytest.fixture(scope="module")
def loads():
    """Every ``load_model`` call from here on (the real function, counted)."""
    calls = []
    real = models.load_model
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(models, "load_model", lambda *args, **kw: calls.append(args) or real(*args, **kw))
        yield calls


@pytest.fixture(scope="module")
def rd(tiny_checkpoint, loads):
    return rdengine.RollingDepth.from_pretrained(tiny_checkpoint, progress=False, **FAST)


def test_every_kind_of_input_gives_the_cli_depth_with_one_model_load(rd, loads, edit, cli_out):
    frames, cuts, pattern = edit
    expected = np.load(cli_out / "f_depth.npy")
    inputs = {"path": pattern, "array": frames, "pil": [Image.fromarray(f) for f in frames],
              "generator": (frame for frame in frames)}
    for kind, given in inputs.items():
        result = rd(given)
        assert np.array_equal(np.asarray(result.depth), expected), kind
        assert [s.start for s in result.shots[1:]] == cuts, kind
        assert result.frame_numbers.tolist() == list(range(24)) and result.fps == 24
    assert len(loads) == 1


def files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and "run.zarr" not in p.relative_to(root).parts}


def test_with_an_output_folder_the_api_writes_the_cli_bytes_and_resumes(rd, edit, cli_out, tmp_path):
    out = tmp_path / "api"
    result = rd(edit[2], out, save=("npy", "png16"))
    assert sorted(files(out)) == sorted(files(cli_out))
    assert files(out) == files(cli_out)
    import zarr

    assert np.array_equal(zarr.open_group(str(out / "run.zarr"), mode="r")["depth"][:], np.asarray(result.depth))
    again = rd(edit[2], out, save=("npy", "png16"))
    assert all(stage["computed"] == 0 for stage in again.run.stages), again.run.stages
    assert files(out) == files(cli_out)


def cli_form(name: str, value) -> list[str]:
    text = ",".join(map(str, value)) if isinstance(value, tuple) else str(value)
    return ["--" + name.replace("_", "-"), text]


@pytest.mark.parametrize("bad", [dict(res="abc"), dict(fps=0), dict(colormap="NoSuchMap"), dict(dilations=(10, 25)),
                                 dict(exr_dtype="int8"), dict(seed=-1), dict(fov=180),
                                 dict(workers=2, scheduler="tcp://10.0.0.5:8786"), dict(scheduler="nowhere")])
def test_option_errors_are_exceptions_with_the_cli_message(bad, tiny_checkpoint, tmp_path):
    with pytest.raises(ConfigError) as caught:
        rdengine.RollingDepth(tiny_checkpoint, **bad)
    assert isinstance(caught.value, RdengineError) and "\n" not in str(caught.value)
    args = ["process", "clip.mp4", "-o", str(tmp_path / "out"), *[a for k, v in bad.items() for a in cli_form(k, v)]]
    result = CliRunner().invoke(cli, join_list_options(args))
    assert result.exit_code == 2, result.output
    assert [line for line in result.stderr.splitlines() if line.startswith("error:")] == [f"error: {caught.value}"]


def test_run_errors_are_exceptions_never_exits(rd, tiny_checkpoint, tmp_path):
    with pytest.raises(ConfigError, match="did you mean 'res'"):
        rdengine.RollingDepth(tiny_checkpoint, rez=64)
    unloaded = rdengine.RollingDepth(tiny_checkpoint, **FAST)
    with pytest.raises(InputError, match="missing.mp4"):
        unloaded(tmp_path / "missing.mp4")
    assert unloaded.model is None  # a bad input is said before the model loads
    with pytest.raises(InputError, match="frame 1 is 64x40"):
        rd([np.zeros((48, 64, 3), np.uint8), np.zeros((40, 64, 3), np.uint8)])
    with pytest.raises(ConfigError, match="holds a model"):
        rd(np.zeros((4, 48, 64, 3), np.uint8), dtype="fp16")
    with pytest.raises(EngineError, match="checkpoint folder not found"):
        rdengine.RollingDepth(tmp_path / "no-checkpoint", **FAST)(np.zeros((4, 48, 64, 3), np.uint8))


def test_results_are_read_lazily_and_save_show_and_open_as_xarray(rd, edit, tmp_path):
    result = rd(edit[0])
    full = np.asarray(result.depth)
    assert full.shape == result.depth.shape == (24, 48, 64) and full.dtype == np.float32
    for key in (3, -1, slice(2, 9, 3), slice(None, None, -1), [5, 1, 7], (4, slice(0, 10), 7), (slice(1, 3), ...)):
        assert np.array_equal(result.depth[key], full[key]), key
    assert result.meaning.range == (float(full.min()), float(full.max()))
    assert result.meaning.quantity == "relative inverse depth" and not result.meaning.metric
    npy = result.save("npy", tmp_path / "saved")
    assert np.array_equal(np.load(npy), full)
    as_depth = np.load(result.save("npy", tmp_path / "depth", output="depth"))
    assert np.argmax(as_depth) == np.argmin(full)  # relative depth: near = small
    sbs = result.save("sbs", tmp_path / "saved", name="side")
    with av.open(str(sbs)) as video:
        assert [f.width for f in video.decode(video=0)] == [128] * 24
    with pytest.raises(ConfigError, match="--colormap"):
        result.save("mp4", tmp_path / "saved", colormap="NoSuchMap")
    lo, hi = result.meaning.range
    assert np.array_equal(result.visualize(slice(0, 3), colormap="turbo"),
                          colourize(full[0:3], lo, hi, colour_table("turbo")))
    assert result.visualize(0).shape == (48, 64, 3)
    array = result.to_xarray()
    assert array.dims == ("frame", "y", "x") and np.array_equal(array.values, full)
    assert np.array_equal(array["frame"].values, result.frame_numbers)
    folder = result.store.parent
    depth = result.depth
    del result
    gc.collect()
    assert folder.exists()  # the depth array still refers to it
    del depth
    gc.collect()
    assert not folder.exists()


def test_stream_yields_each_shot_once_final(rd, edit, cli_out):
    expected = np.load(cli_out / "f_depth.npy")
    stream = rd.stream(edit[0])
    shots = list(stream)
    assert [s.shot for s in shots] == stream.result.shots and len(shots) == 2
    for s in shots:
        assert np.array_equal(np.asarray(s.depth), expected[s.shot.start:s.shot.stop])
        assert s.frame_numbers.tolist() == list(s.shot.frames)


def test_a_stream_hands_errors_to_the_consumer_and_stopping_it_leaves_a_resumable_run(rd, edit, tmp_path):
    broken = rd.stream([np.zeros((48, 64, 3), np.uint8), np.zeros((40, 64, 3), np.uint8)])
    with pytest.raises(InputError, match="frame 1"):
        next(broken)
    out = tmp_path / "stopped"
    stream = rd.stream(edit[0], out, buffer=1)
    first = next(stream)
    stream.close()
    assert first.shot.index == 0 and not (out / "run.zarr.lock").exists()
    resumed = rd(edit[0], out)
    assert all(s["computed"] == 0 for s in resumed.run.stages if s["name"] in ("ingest", "snippets", "merge"))
    assert np.array_equal(np.asarray(resumed.depth)[:12], np.asarray(first.depth))


def test_in_memory_frames_are_identified_by_their_bytes_and_checked(tmp_path):
    frames = np.random.default_rng(0).integers(0, 256, (5, 8, 6, 3), dtype=np.uint8)
    array = open_frames(frames)
    spooled = open_frames(iter(frames), spool_folder=tmp_path)
    assert array.identity() == spooled.identity() == FrameSequence(list(frames)).identity()
    assert np.array_equal(np.stack(list(spooled.frames())), frames) and spooled.files() == []
    changed = frames.copy()
    changed[4, 0, 0, 0] ^= 1
    assert open_frames(changed).identity() != array.identity()
    assert open_frames(frames[:4]).identity() != array.identity()
    floats = open_frames(frames / 255.0)
    assert next(floats.frames()).dtype == np.float32
    for bad, message in [(frames[..., :2], r"\[T, H, W, 3\]"), (frames * 2.0, r"\[0, 1\]"),
                         (frames.astype(np.int32), "dtype int32"), (42, "cannot read frames from a int"),
                         ([], "no frames")]:
        with pytest.raises(InputError, match=message):
            open_frames(bad)


def test_the_cli_options_are_the_table_and_the_api_keywords():
    table = {o.name for o in OPTIONS if o.cli}
    assert {p.name for p in cli.commands["process"].params} - {"video", "out_dir"} == table
    assert {o.name for o in OPTIONS if o.cli and o.batch} <= {p.name for p in cli.commands["batch"].params}
    import inspect

    keywords = set(inspect.signature(rdengine.RollingDepth).parameters)
    assert {o.name for o in OPTIONS} <= keywords
    import pydoc

    shown = pydoc.render_doc(rdengine.RollingDepth, renderer=pydoc.plaintext)
    assert all(re.search(rf"\b{o.name} \(", shown) for o in OPTIONS if o.name != "checkpoint")
    assert "from_pretrained" in shown and "stream" in shown and "DepthResult" in shown
    assert RunOptions({"quiet": True}).execution().progress == "quiet"
    assert RunOptions({"progress": False, "log_format": "json"}).execution().progress == "quiet"
    assert RunOptions({"log_format": "json"}).execution().progress == "json"


def test_the_command_line_loads_nothing_heavy_and_says_its_version():
    heavy = ("torch", "diffusers", "transformers", "zarr", "av", "scenedetect", "dask", "distributed", "matplotlib",
             "scipy", "xarray")
    code = f"import sys, rdengine, rdengine.cli; print([m for m in {heavy!r} if m in sys.modules])"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "[]"
    shown = run_rdengine("--version")
    assert shown.returncode == 0 and shown.stdout.strip() == f"rdengine {rdengine.__version__}"


def test_notebook_progress_draws_stage_bars_through_tqdm_auto():
    stream = io.StringIO()
    with Progress("notebook", stream=stream) as progress:
        with progress.stage("ingest", 3) as timer:
            progress.note("loading model x ...")
            timer.advance(3)
    shown = stream.getvalue()
    assert "[ingest]" in shown and "3/3 frames" in shown and "note: loading model x ..." in shown


def test_the_docs_session_runs_as_written(tmp_path):
    blocks = re.findall(r"```python\n(.*?)```", DOCS.read_text(), re.S)
    assert len(blocks) >= 5
    script = tmp_path / "session.py"
    script.write_text("\n".join(blocks))
    proc = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "relative inverse depth" in proc.stdout and "Shot(index=0" in proc.stdout
