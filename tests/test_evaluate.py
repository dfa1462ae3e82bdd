"""Evaluation protocol, metrics, input formats, outputs and input errors, on synthetic ground truth."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import zarr
from PIL import Image

from rdengine.engine.eval import evaluate as ev
from rdengine.engine.eval.plots import PLOT_SIZE_PX
from rdengine.engine.eval.evaluate import (
    EvalInputError,
    align_to_depth,
    evaluate_many,
    evaluate_video,
    format_summary_table,
    pair_folders,
    parse_crop,
    read_pairs_csv,
)
from rdengine.engine.eval.readers import open_depth

T, H, W = 6, 12, 16


def _gt(seed: int = 0, shape: tuple[int, int, int] = (T, H, W)) -> np.ndarray:
    """Metric depth in [1, 8] m."""
    return np.random.default_rng(seed).uniform(1.0, 8.0, shape)


def _affine(inv_depth: np.ndarray, a: float, b: float) -> np.ndarray:
    """A prediction ``p`` with ``a * p + b == inv_depth``."""
    return (inv_depth - b) / a


def _save(path: Path, array: np.ndarray) -> Path:
    np.save(path, array)
    return path


def _write_run_store(outdir: Path, depth: np.ndarray) -> Path:
    group = zarr.open_group(str(outdir / "run.zarr"), mode="w")
    array = group.create_array("depth", shape=depth.shape, chunks=(2, *depth.shape[1:]), dtype="float32")
    array[:] = depth.astype(np.float32)
    return outdir


def _write_png_folder(folder: Path, frames: np.ndarray) -> Path:
    """Frames ``[T, H, W]`` (integers) as ``0.png``, ``1.png``, ... (16-bit unless uint8)."""
    folder.mkdir()
    for i, frame in enumerate(frames):
        dtype = np.uint8 if frames.dtype == np.uint8 else np.uint16
        Image.fromarray(frame.astype(dtype)).save(folder / f"{i}.png")
    return folder


def _assert_perfect(m: ev.VideoMetrics) -> None:
    assert m.abs_rel < 1e-6
    assert m.rmse < 1e-5
    assert m.delta1 == m.delta2 == m.delta3 == 1.0


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_affine_prediction_scores_perfect_across_chunks(tmp_path, monkeypatch, seed):
    monkeypatch.setattr(ev, "_CHUNK_PIXELS", 2 * H * W)  # three chunks of two frames
    rng = np.random.default_rng(seed)
    a, b = rng.uniform(0.2, 5.0), rng.uniform(-0.5, 0.5)
    gt = _gt(seed)
    m = evaluate_video(_save(tmp_path / "p.npy", _affine(1 / gt, a, b)), _save(tmp_path / "g.npy", gt))
    _assert_perfect(m)
    assert m.scale == pytest.approx(a, rel=1e-9) and m.shift == pytest.approx(b, rel=1e-9, abs=1e-12)
    assert m.n_valid == T * H * W
    np.testing.assert_allclose(m.per_frame["abs_rel"], 0.0, atol=1e-6)
    np.testing.assert_array_equal(m.per_frame["delta1"], 1.0)


def test_streaming_fit_equals_batch_least_squares(tmp_path, monkeypatch):
    gt = _gt(3)
    pred = _affine(1 / gt, 2.0, 0.1) + np.random.default_rng(3).normal(0, 0.02, gt.shape)
    gt[0, :4] = 0.0  # invalid pixels must not enter the fit
    expected = np.polyfit(pred[gt > 0], 1 / gt[gt > 0], 1)
    monkeypatch.setattr(ev, "_CHUNK_PIXELS", H * W)  # one frame per chunk
    m = evaluate_video(_save(tmp_path / "p.npy", pred), _save(tmp_path / "g.npy", gt))
    assert (m.scale, m.shift) == pytest.approx(tuple(expected), rel=1e-10)
    assert m.n_valid == (gt > 0).sum()


def test_known_perturbation_gives_analytic_metrics(tmp_path):
    """Pairs of pixels share a prediction; their GT inverse depths are y(1+k) and y(1-k).

    The residuals cancel in the normal equations, so the fit stays exact and the aligned depth
    is 1/y. Both pixels of a pair then have AbsRel exactly k, and depth ratios 1+k and 1/(1-k):
    k=0.3 gives 1.3 and 1.43 (both fail delta1 only); k=0.6 gives 1.6 (fails delta1, delta2)
    and 2.5 (fails all three thresholds).
    """
    half = W // 2
    rng = np.random.default_rng(4)
    y = 1 / rng.uniform(1.0, 5.0, (T, H, half))
    tiers = np.repeat([0.0, 0.0, 0.3, 0.6], y.size // 4)  # a quarter of the pairs each at k=0.3, k=0.6
    k = rng.permutation(tiers).reshape(y.shape)
    inv_gt = np.concatenate([y * (1 + k), y * (1 - k)], axis=2)
    pred = _affine(np.concatenate([y, y], axis=2), 0.7, -0.2)
    m = evaluate_video(_save(tmp_path / "p.npy", pred), _save(tmp_path / "g.npy", 1 / inv_gt))

    share = 0.25  # of all pixels, per perturbed tier
    assert (m.scale, m.shift) == pytest.approx((0.7, -0.2), rel=1e-9)
    assert m.abs_rel == pytest.approx(share * 0.3 + share * 0.6, rel=1e-9)
    assert m.delta1 == pytest.approx(1 - 2 * share, abs=1e-12)
    assert m.delta2 == pytest.approx(1 - share, abs=1e-12)
    assert m.delta3 == pytest.approx(1 - share / 2, abs=1e-12)
    sq_err = (k / (1 + k) / y) ** 2 + (k / (1 - k) / y) ** 2
    assert m.rmse == pytest.approx(np.sqrt(sq_err.sum() / (T * H * W)), rel=1e-9)
    np.testing.assert_allclose(m.per_frame["abs_rel"], k.sum(axis=(1, 2)) * 2 / (H * W), rtol=1e-9)


@pytest.mark.filterwarnings("ignore:.*fitted scale")
def test_masks_exclude_corrupted_regions(tmp_path):
    gt = _gt(5)
    pred = _affine(1 / gt, 1.5, 0.05)
    pred[:, 2:5, 3:7] = 40.0  # static corruption
    pred[2, 8:, 10:] = -3.0  # corruption in one frame
    pred_path, gt_path = _save(tmp_path / "p.npy", pred), _save(tmp_path / "g.npy", gt)
    static = np.full((H, W), 255, np.uint8)
    static[2:5, 3:7] = 0
    static_png = tmp_path / "static.png"
    Image.fromarray(static).save(static_png)
    stack = np.ones((T, H, W), dtype=bool)
    stack[2, 8:, 10:] = False
    stack_path = _save(tmp_path / "mask.npy", stack)

    assert evaluate_video(pred_path, gt_path).abs_rel > 0.05
    assert evaluate_video(pred_path, gt_path, mask_path=static_png).abs_rel > 0.01
    assert evaluate_video(pred_path, gt_path, mask_path=stack_path).abs_rel > 0.01
    both = evaluate_video(pred_path, gt_path, mask_path=[static_png, stack_path])
    _assert_perfect(both)
    assert both.n_valid == T * H * W - T * 3 * 4 - 4 * 6
    assert np.isnan(evaluate_video(pred_path, gt_path, mask_path=stack_path).per_frame["abs_rel"]).sum() == 0


def test_crop_excludes_borders(tmp_path):
    gt = _gt(6)
    pred = _affine(1 / gt, 0.8, 0.3)
    pred[:, :3] += 5.0
    pred[:, :, -2:] *= 0.1
    pred_path, gt_path = _save(tmp_path / "p.npy", pred), _save(tmp_path / "g.npy", gt)
    cropped = evaluate_video(pred_path, gt_path, crop=(3, 0, 0, 2))
    _assert_perfect(cropped)
    assert cropped.n_valid == T * (H - 3) * (W - 2)
    assert evaluate_video(pred_path, gt_path, crop=(2, 0, 0, 2)).abs_rel > 0.01
    assert parse_crop("45,9,41,39") == (45, 9, 41, 39)
    with pytest.raises(EvalInputError, match="crop"):
        parse_crop("1,2,3")


def test_depth_range_excludes_far_and_invalid_pixels(tmp_path):
    gt = _gt(7)
    pred = _affine(1 / gt, 1.0, 0.0)
    gt[:, 0, :5] = 30.0  # beyond the cap, prediction left at the old (wrong) value
    gt[:, 1, :5] = 0.0  # invalid ground truth
    pred_path, gt_path = _save(tmp_path / "p.npy", pred), _save(tmp_path / "g.npy", gt)
    capped = evaluate_video(pred_path, gt_path, max_depth=20.0)
    _assert_perfect(capped)
    assert capped.n_valid == T * (H * W - 10)
    assert capped.depth_range == (1e-3, 20.0)
    uncapped = evaluate_video(pred_path, gt_path)
    assert uncapped.abs_rel > 0.02 and uncapped.n_valid == T * (H * W - 5)
    assert uncapped.depth_range[1] == 30.0  # no cap: clamp at the largest valid GT depth
    near_cut = evaluate_video(pred_path, gt_path, min_depth=2.0, max_depth=20.0)
    assert near_cut.n_valid == ((gt > 2.0) & (gt < 20.0)).sum() < capped.n_valid


def test_align_to_depth_clamps_to_range():
    depth = align_to_depth(np.array([-1.0, 0.5, 2000.0]), 2.0, 0.0, min_depth=0.01, max_depth=10.0)
    np.testing.assert_allclose(depth, [10.0, 1.0, 0.01])


def test_every_input_format_reads_the_same(tmp_path):
    gt_mm = np.random.default_rng(8).integers(500, 8000, (12, H, W)).astype(np.uint16)
    gt_m = gt_mm / 1000.0
    pred = (_affine(1 / gt_m, 1.3, 0.1) * np.random.default_rng(9).uniform(0.9, 1.1, gt_m.shape)).astype(np.float32)
    np.savez(tmp_path / "gt_named.npz", depth=gt_m, other=np.zeros(3))
    np.savez(tmp_path / "gt_int.npz", gt_mm)
    gts = {
        "npy": (_save(tmp_path / "gt.npy", gt_m), 1000.0),
        "npz": (tmp_path / "gt_named.npz", 1000.0),
        "npz uint16 mm": (tmp_path / "gt_int.npz", 1000.0),
        "png16 mm": (_write_png_folder(tmp_path / "png_mm", gt_mm), 1000.0),
        "png16 1/5000 m": (_write_png_folder(tmp_path / "png_bonn", gt_mm.astype(np.uint32) * 5), 5000.0),
    }
    for name, (path, scale) in gts.items():
        stack = open_depth(path, depth_scale=scale)
        assert stack.shape == gt_m.shape, name
        np.testing.assert_allclose(stack.read(0, 12), gt_m, rtol=1e-12, err_msg=name)  # natural order: 2 < 10
    store = _write_run_store(tmp_path / "run", pred)
    preds = [_save(tmp_path / "pred.npy", pred), store, store / "run.zarr"]
    reference = evaluate_video(preds[0], gts["npy"][0])
    assert 0.01 < reference.abs_rel < 0.2
    for pred_path in preds:
        for name, (gt_path, scale) in gts.items():
            m = evaluate_video(pred_path, gt_path, depth_scale=scale)
            assert m.abs_rel == pytest.approx(reference.abs_rel, rel=1e-9), (pred_path, name)
            assert m.delta1 == reference.delta1, (pred_path, name)
    assert evaluate_video(store, gts["npy"][0]).name == "run"


def test_exr_folder_reads(tmp_path):
    openexr = pytest.importorskip("OpenEXR")
    gt = _gt(10).astype(np.float32)
    folder = tmp_path / "exr"
    folder.mkdir()
    header = {"compression": openexr.ZIP_COMPRESSION, "type": openexr.scanlineimage}
    for i, frame in enumerate(gt):
        channels = {"Z": frame} if i % 2 else {"R": np.zeros_like(frame), "ViewLayer.Depth.Z": frame}
        with openexr.File(header, channels) as exr:
            exr.write(str(folder / f"frame_{i}.exr"))
    stack = open_depth(folder)
    np.testing.assert_array_equal(stack.read(0, T), gt)
    _assert_perfect(evaluate_video(_save(tmp_path / "p.npy", _affine(1 / gt.astype(float), 2.0, 0.0)), folder))


def test_prediction_is_resized_bilinearly_to_gt(tmp_path):
    """A planar inverse depth survives 2x bilinear upsampling exactly away from the 1-px border."""
    rows, cols = np.mgrid[0:H, 0:W]
    small = np.stack([0.2 + 0.01 * rows + 0.005 * cols + 0.02 * t for t in range(T)])
    up_rows, up_cols = np.mgrid[0 : 2 * H, 0 : 2 * W]
    up_rows, up_cols = (up_rows + 0.5) / 2 - 0.5, (up_cols + 0.5) / 2 - 0.5
    inv_gt = np.stack([0.2 + 0.01 * up_rows + 0.005 * up_cols + 0.02 * t for t in range(T)])
    gt_path = _save(tmp_path / "g.npy", 1 / (0.5 * inv_gt + 0.1))
    m = evaluate_video(_save(tmp_path / "p.npy", small), gt_path, crop=(1, 1, 1, 1))
    assert m.abs_rel < 1e-5 and m.delta1 == 1.0
    assert m.n_valid == T * (2 * H - 2) * (2 * W - 2)
    with pytest.raises(EvalInputError, match="aspect ratio"):
        evaluate_video(_save(tmp_path / "wide.npy", np.ones((T, H, 2 * W))), gt_path)


def test_profile_samples_one_column_over_time(tmp_path, monkeypatch):
    captured = {}

    def capture(gt, pred, valid, **kwargs):
        captured.update(gt=gt, pred=pred, valid=valid, **kwargs)

    monkeypatch.setattr(ev, "plot_temporal_profile", capture)
    monkeypatch.setattr(ev, "_PROFILE_MAX_FRAMES", 2)  # T=6 frames -> every 3rd frame
    monkeypatch.setattr(ev, "_CHUNK_PIXELS", 4 * H * W)  # chunks [0, 4), [4, 6)
    gt = _gt(15)
    gt[3, :2, 5] = 0.0
    pred = _affine(1 / _gt(15), 2.0, 0.0)
    evaluate_video(_save(tmp_path / "p.npy", pred), _save(tmp_path / "g.npy", gt), out_dir=tmp_path, profile_column=5)
    assert captured["column"] == 5 and captured["frame_step"] == 3
    np.testing.assert_allclose(captured["gt"], gt[::3, :, 5].T, rtol=1e-6)
    np.testing.assert_allclose(captured["pred"], _gt(15)[::3, :, 5].T, rtol=1e-6)
    np.testing.assert_array_equal(captured["valid"], gt[::3, :, 5].T > 0)
    assert not captured["valid"][:2, 1].any()


def test_outputs_and_plots_are_written(tmp_path):
    gt = _gt(11)
    gt[3] = 0.0  # a frame without valid pixels
    pred = _affine(1 / _gt(11), 1.0, 0.0) * 1.05 ** np.arange(T)[:, None, None]
    out = tmp_path / "out"
    m = evaluate_video(_save(tmp_path / "p.npy", pred), _save(tmp_path / "g.npy", gt), out_dir=out, name="clip")
    for plot in ("per_frame.png", "profile.png"):
        with Image.open(out / plot) as image:
            assert image.format == "PNG" and image.size == PLOT_SIZE_PX and image.mode == "RGBA"
    report = json.loads((out / "metrics.json").read_text())
    assert report["name"] == "clip" and report["abs_rel"] == pytest.approx(m.abs_rel)
    assert report["options"]["min_depth"] == 1e-3
    with (out / "per_frame.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r["frame"]) for r in rows] == list(range(T))
    assert rows[3]["n_valid"] == "0" and rows[3]["abs_rel"] == "nan"
    assert float(rows[0]["abs_rel"]) == pytest.approx(m.per_frame["abs_rel"][0])
    assert np.nanargmax(m.per_frame["abs_rel"]) in (0, T - 1)  # drift: worst at an end of the video


def test_evaluate_many_summary(tmp_path):
    gt = _gt(12)
    gt_path = _save(tmp_path / "g.npy", gt)
    good = _save(tmp_path / "good.npy", _affine(1 / gt, 1.0, 0.0))
    bad = _save(tmp_path / "bad.npy", _affine(1 / gt, 1.0, 0.0) * np.random.default_rng(12).uniform(0.7, 1.3, gt.shape))
    out = tmp_path / "out"
    results = evaluate_many([("good", good, gt_path), ("bad", bad, gt_path)], out, max_depth=10.0)
    assert [r.name for r in results] == ["good", "bad"]
    assert (out / "good" / "profile.png").is_file() and (out / "bad" / "metrics.json").is_file()
    with (out / "summary.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [r["name"] for r in rows] == ["good", "bad", "mean"]
    assert float(rows[2]["abs_rel"]) == pytest.approx(results[1].abs_rel / 2)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["mean"]["delta1"] == pytest.approx((1 + results[1].delta1) / 2)
    table = format_summary_table(results)
    assert table == (out / "summary.txt").read_text().rstrip("\n")
    lines = table.splitlines()
    assert lines[2].split()[:4] == ["good", str(T), "0.00", "100.00"]
    assert lines[-1].startswith("mean (2 videos)") and f"{50 * results[1].abs_rel:.2f}" in lines[-1]
    with pytest.raises(EvalInputError, match="unique"):
        evaluate_many([("a", good, gt_path), ("a", bad, gt_path)], out)


def test_pair_listing(tmp_path):
    preds, gts = tmp_path / "preds", tmp_path / "gts"
    preds.mkdir(), gts.mkdir()
    gt = _gt(13)
    _write_run_store(preds / "a", _affine(1 / gt, 1.0, 0.0))
    _save(preds / "b.npy", gt)
    np.savez(gts / "a.npz", gt)
    _write_png_folder(gts / "b", (gt * 1000).astype(np.uint16))
    _save(gts / "c.npy", gt)
    with pytest.warns(UserWarning, match="no prediction for 1"):
        pairs = pair_folders(preds, gts)
    assert pairs == [("a", preds / "a", gts / "a.npz"), ("b", preds / "b.npy", gts / "b")]
    _save(preds / "d.npy", gt)
    with pytest.raises(EvalInputError, match="no ground truth for predictions d"):
        pair_folders(preds, gts)

    listing = tmp_path / "list.csv"
    listing.write_text("name,pred,gt\nscene1, preds/a, gts/a.npz\n")
    assert read_pairs_csv(listing) == [("scene1", tmp_path / "preds/a", tmp_path / "gts/a.npz")]
    listing.write_text("video,prediction\nx,y\n")
    with pytest.raises(EvalInputError, match="list.csv"):
        read_pairs_csv(listing)


def _error_cases(tmp: Path) -> dict[str, tuple[dict, str]]:
    """Case -> (evaluate_video keyword arguments, file name the message must contain)."""
    gt = _gt(14)
    good_gt, good_pred = _save(tmp / "gt.npy", gt), _save(tmp / "pred.npy", _affine(1 / gt, 1.0, 0.0))
    (tmp / "corrupt.npy").write_bytes(b"not an array")
    (tmp / "depth.txt").write_text("1 2 3")
    np.savez(tmp / "ambiguous.npz", x=gt, y=gt)
    _write_png_folder(tmp / "mixed_size", (gt * 1000).astype(np.uint16))
    Image.fromarray(np.zeros((3, 3), np.uint16)).save(tmp / "mixed_size" / "4.png")
    rgb = _write_png_folder(tmp / "rgb", (gt[:1] * 1000).astype(np.uint16))
    Image.fromarray(np.zeros((H, W, 3), np.uint8)).save(rgb / "0.png")
    zarr.open_group(str(tmp / "empty_run" / "run.zarr"), mode="w")
    nan_pred = _affine(1 / gt, 1.0, 0.0)
    nan_pred[2, 3, 4] = np.nan
    return {
        "missing gt": ({"gt_path": tmp / "nowhere.npy"}, "nowhere.npy"),
        "corrupt npy": ({"pred_path": tmp / "corrupt.npy"}, "corrupt.npy"),
        "unsupported": ({"gt_path": tmp / "depth.txt"}, "depth.txt"),
        "ambiguous npz": ({"gt_path": tmp / "ambiguous.npz"}, "ambiguous.npz"),
        "frame count": ({"pred_path": _save(tmp / "short.npy", gt[:-1])}, "short.npy"),
        "no valid pixels": ({"gt_path": _save(tmp / "zeros.npy", np.zeros_like(gt))}, "zeros.npy"),
        "mask shape": ({"mask_path": _save(tmp / "mask.npy", np.ones((H, W + 1)))}, "mask.npy"),
        "frame size": ({"gt_path": tmp / "mixed_size", "depth_scale": 1000.0}, "4.png"),
        "rgb png": ({"gt_path": rgb}, "0.png"),
        "run without depth": ({"pred_path": tmp / "empty_run"}, "run.zarr"),
        "non-finite prediction": ({"pred_path": _save(tmp / "nan.npy", nan_pred)}, "nan.npy"),
        "crop too large": ({"crop": (6, 6, 0, 0)}, "gt.npy"),
        "base": ({"pred_path": good_pred, "gt_path": good_gt}, ""),
    }


@pytest.mark.parametrize(
    "case",
    [
        "missing gt",
        "corrupt npy",
        "unsupported",
        "ambiguous npz",
        "frame count",
        "no valid pixels",
        "mask shape",
        "frame size",
        "rgb png",
        "run without depth",
        "non-finite prediction",
        "crop too large",
    ],
)
def test_input_errors_name_the_file(tmp_path, case):
    cases = _error_cases(tmp_path)
    kwargs = {**cases["base"][0], **cases[case][0]}
    with pytest.raises(EvalInputError) as info:
        evaluate_video(kwargs.pop("pred_path"), kwargs.pop("gt_path"), **kwargs)
    message = str(info.value)
    assert cases[case][1] in message and "\n" not in message


def test_per_frame_plot_never_hides_a_curve_on_the_axis_edge(tmp_path):
    """A perfect prediction (AbsRel 0 %, delta1 100 %) is drawn as fully as a middling one."""
    from PIL import Image

    from rdengine.engine.eval.plots import plot_per_frame

    def coloured(path, rgb) -> int:
        pixels = np.asarray(Image.open(path).convert("RGB")).astype(int)
        return int((np.abs(pixels - np.array(rgb)).sum(-1) < 60).sum())

    frames = 100
    perfect = plot_per_frame(np.zeros(frames), np.ones(frames), video_abs_rel=0.0, video_delta1=1.0, title="perfect",
                             path=tmp_path / "perfect.png")
    middling = plot_per_frame(np.full(frames, 0.05), np.full(frames, 0.95), video_abs_rel=0.05, video_delta1=0.95,
                              title="middling", path=tmp_path / "middling.png")
    for rgb in ((214, 39, 40), (31, 119, 180)):  # tab:red (AbsRel), tab:blue (delta1)
        assert coloured(perfect, rgb) >= 0.8 * coloured(middling, rgb) > 0
