"""Shot by shot: a shot's stages finish while later shots are still ahead, its outputs are final early,
the snippet scratch holds only the shots in flight, every snippet frame is decoded once (latents kept
only for a take too long for the scratch budget), and host work on a thread gives the same bytes."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest

from rdengine.engine.config import ExecutionOptions, resolve_config
from rdengine.engine.facts import RunFacts
from rdengine.engine.ledger import recorded_work
from rdengine.engine.pipeline import process_video
from rdengine.engine.testing.synthetic_clip import encode_frames, synthetic_edit
from rdengine.storage import layout
from rdengine.storage.run_store import RunStore

SHOTS = (12, 10, 40, 12)
W, H = 64, 48


@pytest.fixture(scope="module")
def edit(tmp_path_factory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("edit")
    frames, cuts = synthetic_edit(SHOTS, W, H, seed=3)
    clip = encode_frames(folder / "edit.mkv", frames, codec="ffv1", pix_fmt="yuv444p")
    (folder / "cuts.txt").write_text("\n".join(map(str, cuts)))
    return clip, folder / "cuts.txt"


def run(edit, ckpt, out, *, on_shot=None, stream=None, **options):
    clip, cuts = edit
    cfg = resolve_config("fast", res=W, dtype="fp32", checkpoint=str(ckpt), dilations=(1, 4), shots=str(cuts),
                         normalize=options.pop("normalize", "shot"))
    opts = ExecutionOptions(**{"device": "cpu", "batch_size": 4, "save": ("npy", "exr"), "threads": 1,
                               "progress": "json" if stream else "quiet", "unit_seconds": 0.01, **options})
    return process_video(str(clip), out, cfg, opts, progress_stream=stream, on_shot=on_shot)


@pytest.fixture(scope="module")
def reference(edit, tiny_checkpoint, tmp_path_factory):
    """A run watched shot by shot: at each shot's final depth, which scratch units and outputs exist."""
    out = tmp_path_factory.mktemp("reference")
    seen = []

    def on_shot(shot):
        units = sorted(p.name for p in (out / "run.zarr" / "snippets").glob("b*"))
        exr = sorted(p.name for p in (out / "exr").glob("*.exr")) if (out / "exr").is_dir() else []
        seen.append((shot.index, units, exr))

    stream = io.StringIO()
    result = run(edit, tiny_checkpoint, out, on_shot=on_shot, stream=stream)
    events = [json.loads(line) for line in stream.getvalue().splitlines() if line.startswith("{")]
    return result, seen, events


def test_the_first_shot_is_final_before_the_last_shot_starts(reference):
    result, seen, events = reference
    assert [k for k, _, _ in seen] == [0, 1, 2, 3]  # on_shot: each shot once, in order
    shot_events = [(e["shot"], e["state"], e["t"]) for e in events if e["event"] == "shot"]
    done = {k: t for k, state, t in shot_events if state == "done"}
    started = {k: t for k, state, t in shot_events if state == "snippets"}
    assert sorted(done) == sorted(started) == [0, 1, 2, 3]
    assert done[0] < started[3] and done[1] < started[3]
    _, _, exr_at_last = seen[3]  # when the last shot's depth is final, the first shots' EXRs are written
    assert {f"edit_{i:06d}.exr" for i in range(22)} <= set(exr_at_last)
    assert len(list(Path(result.outputs["exr"]).glob("*.exr"))) == sum(SHOTS)


def test_the_scratch_holds_only_the_shots_in_flight(reference):
    result, seen, _ = reference
    store = RunStore(result.store, mode="r")
    shots_of = {unit: sorted(int(k) for k in record["min"]) for unit, record in store.done_units(layout.SNIPPETS).items()}
    assert len(shots_of) > 8  # many small units
    for k, units, _ in seen:  # at shot k's final depth, the units kept hold a later shot's snippets
        assert all(max(shots_of[u]) > k for u in units), (k, units)
    assert 0 < max(len(units) for _, units, _ in seen) < len(shots_of) / 2
    assert not (Path(result.store) / "snippets").exists()  # all released at the end


def test_each_snippet_frame_is_decoded_once_and_a_long_take_over_budget_keeps_latents(edit, reference,
                                                                                      tiny_checkpoint, tmp_path):
    result, _, _ = reference
    work = recorded_work(RunStore(result.store, mode="r"))
    snippet_frames = work["snippets"]["unet"]
    assert work["snippets"]["decode"] == snippet_frames and "merge" not in work or not work["merge"]["decode"]
    # a budget that fits every shot but the 40-frame take: that take alone keeps latents, decoded again at merge
    map_bytes = 4 * W * H
    budget = int(0.6 * map_bytes * 2 * 12 * 3 + 1)  # depth scratch of a 12-frame shot, stored
    mixed = run(edit, tiny_checkpoint, tmp_path / "mixed", scratch_budget=budget)
    facts = RunFacts.read(RunStore(mixed.store, mode="r"))
    assert facts.plan.scratch == ("depth", "depth", "latent", "depth")
    work = recorded_work(RunStore(mixed.store, mode="r"))
    take_frames = (40 - 2) * 3 + (40 - 8) * 3  # dilations 1 and 4, 3 frames each
    assert work["merge"]["decode"] == take_frames and work["snippets"]["decode"] == snippet_frames
    np.testing.assert_allclose(np.load(mixed.outputs["npy"]), np.load(result.outputs["npy"]), atol=2e-5)


def test_host_work_on_a_thread_gives_the_same_bytes(edit, reference, tiny_checkpoint, tmp_path):
    result, _, _ = reference
    threaded = run(edit, tiny_checkpoint, tmp_path / "threaded", host_thread=True)
    assert np.load(threaded.outputs["npy"]).tobytes() == np.load(result.outputs["npy"]).tobytes()


def test_global_normalization_waits_for_every_shot(edit, reference, tiny_checkpoint, tmp_path):
    depth = np.load(run(edit, tiny_checkpoint, tmp_path / "global", normalize="global").outputs["npy"])
    assert depth.min() == -1 and depth.max() == 1
    bounds = np.cumsum((0,) + SHOTS)
    shot_ranges = [(depth[a:b].min(), depth[a:b].max()) for a, b in zip(bounds[:-1], bounds[1:])]
    assert sum(lo == -1 for lo, _ in shot_ranges) == 1 and sum(hi == 1 for _, hi in shot_ranges) == 1
    per_shot = np.load(reference[0].outputs["npy"])
    assert all(per_shot[a:b].min() == -1 and per_shot[a:b].max() == 1 for a, b in zip(bounds[:-1], bounds[1:]))
