"""`rdengine eval` from the command line on a real run store and on .npy stacks."""

from __future__ import annotations

import json
import shutil

import numpy as np

from rdengine.engine.testing.processes import run_rdengine


def test_eval_scores_an_affine_prediction_perfectly_and_writes_plots(tmp_path):
    rng = np.random.default_rng(0)
    gt = rng.uniform(1.0, 5.0, size=(6, 24, 32)).astype(np.float32)
    pred = (2.5 / gt - 0.3).astype(np.float32)  # inverse depth up to an affine map
    np.save(tmp_path / "gt.npy", gt)
    np.save(tmp_path / "pred.npy", pred)
    proc = run_rdengine("eval", tmp_path / "pred.npy", tmp_path / "gt.npy", "-o", tmp_path / "ev")
    assert proc.returncode == 0, proc.stderr
    metrics = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert metrics["abs_rel"] < 1e-5 and metrics["delta1"] == 1.0
    assert (tmp_path / "ev" / "profile.png").stat().st_size > 0


def test_eval_bad_input_is_one_line(tmp_path):
    np.save(tmp_path / "gt.npy", np.ones((3, 8, 8), np.float32))
    proc = run_rdengine("eval", tmp_path / "missing.npy", tmp_path / "gt.npy")
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().startswith("error:") and "missing.npy" in proc.stderr


def test_eval_refuses_an_unfinished_run_store(tmp_path, clip, tiny_checkpoint):
    out = tmp_path / "run"
    proc = run_rdengine("process", clip, "-o", out, "--checkpoint", tiny_checkpoint, "--res", "64", "--quiet",
                        "--save", "npy")
    assert proc.returncode == 0, proc.stderr
    gt = np.random.default_rng(0).uniform(1.0, 10.0, (24, 48, 64)).astype(np.float32)
    np.save(tmp_path / "gt.npy", gt)
    assert run_rdengine("eval", out, tmp_path / "gt.npy").returncode == 0
    shutil.rmtree(out / "run.zarr" / "_units" / "complete")  # as if killed before the end
    proc = run_rdengine("eval", out, tmp_path / "gt.npy")
    assert proc.returncode != 0 and "not complete" in proc.stderr and "Traceback" not in proc.stderr


def test_per_shot_prints_every_shot_and_a_file_as_out_is_one_line(tmp_path):
    from rdengine.engine.shots.model import shots_from_cuts
    from rdengine.engine.shots.shots_json import write_shots_json

    rng = np.random.default_rng(1)
    gt = rng.uniform(1.0, 5.0, size=(6, 24, 32)).astype(np.float32)
    pred = np.concatenate([2.0 / gt[:3] - 0.1, 0.5 / gt[3:] + 0.4]).astype(np.float32)  # each shot its own affine
    np.save(tmp_path / "gt.npy", gt)
    np.save(tmp_path / "pred.npy", pred)
    write_shots_json(tmp_path / "pred_shots.json", shots_from_cuts([3], 6), fps=24.0)
    proc = run_rdengine("eval", tmp_path / "pred.npy", tmp_path / "gt.npy", "--per-shot", "-o", tmp_path / "ev")
    assert proc.returncode == 0, proc.stderr
    rows = [line.split() for line in proc.stdout.splitlines() if line.startswith("pred ") and "-" in line.split()[2]]
    assert [row[1:3] for row in rows] == [["0", "0-2"], ["1", "3-5"]], proc.stdout
    assert all(row[3] == "0.00" and row[4] == "100.00" for row in rows), proc.stdout  # AbsRel %, delta1 %
    assert [float(row[8]) for row in rows] == [0.5, 2.0], proc.stdout  # the fitted scales undo each shot's map
    fits = json.loads((tmp_path / "ev" / "metrics.json").read_text())["fits"]
    assert [(f["start"], f["stop"]) for f in fits] == [(0, 3), (3, 6)] and fits[1]["abs_rel"] < 1e-5
    (tmp_path / "taken").write_text("a file")
    for args in (("eval", tmp_path / "pred.npy", tmp_path / "gt.npy", "-o", tmp_path / "taken"),
                 ("demo", "-o", tmp_path / "taken", "--frames", "4")):
        refused = run_rdengine(*args)
        assert refused.returncode == 2 and "Traceback" not in refused.stderr, refused.stderr
        assert refused.stderr.strip().splitlines()[-1] == \
            f"error: -o {tmp_path / 'taken'} is a file, not a folder: choose another -o (or move the file)"
