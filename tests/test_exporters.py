"""Exporters write real files with the real libraries (OpenEXR, numpy zip, plyfile, PyAV, Pillow) and read them back."""

from __future__ import annotations

import json
import re
import tracemalloc
import zipfile
from pathlib import Path

import av
import numpy as np
import OpenEXR
import pytest
from PIL import Image
from plyfile import PlyData

from rdengine.engine.config import ExecutionOptions, resolve_config
from rdengine.engine.pipeline import process_video
from rdengine.engine.testing.synthetic_clip import encode_frames, synthetic_edit
from rdengine.storage import layout
from rdengine.storage.exporters import OUTPUTS, output_path, partial_path, scale_path
from rdengine.storage.exporters.exr import ExrExporter
from rdengine.storage.exporters.gray16 import Gray16Exporter
from rdengine.storage.exporters.ledger import Ledger, OutputConflict
from rdengine.storage.exporters.meaning import (DEPTH, INVERSE, describe, describe_numbers, describe_parts, sidecar_json,
                                                to_output_values)
from rdengine.storage.exporters.npy import NpyExporter
from rdengine.storage.exporters.npz import NpzExporter
from rdengine.storage.exporters.ply import PlyExporter, focal_from_fov
from rdengine.storage.exporters.png16 import Png16Exporter, write_scales
from rdengine.storage.exporters.scale16 import Scale16
from rdengine.storage.run_store import RunStore

T, H, W = 12, 6, 10
CHUNK = 4


class MemUnits:
    """Completion records in memory (what the run store's export stage provides)."""

    def __init__(self):
        self.done: set[str] = set()

    def is_done(self, unit):
        return unit in self.done

    def mark_done(self, unit):
        self.done.add(unit)

    def clear(self, prefix):
        self.done = {u for u in self.done if not u.startswith(prefix)}


def video(t=T, h=H, w=W, seed=0):
    """Relative inverse depth normalized to [-1, 1] over the video, plus RGB frames."""
    rng = np.random.default_rng(seed)
    inv = rng.standard_normal((t, h, w)).astype(np.float32)
    inv = (2 * (inv - inv.min()) / (inv.max() - inv.min()) - 1).astype(np.float32)
    rgb = rng.integers(0, 256, (t, h, w, 3), dtype=np.uint8)
    return inv, rgb


def drive(exporter, depth, rgb=None, chunk=CHUNK, kill_after=None):
    """Feed chunks as the export stage does; ``kill_after`` chunks written, stop without closing. Returns firsts written."""
    written = []
    for first in range(0, len(depth), chunk):
        if kill_after is not None and len(written) == kill_after:
            return written
        if exporter.needs(first):
            exporter.write(first, depth[first:first + chunk], None if rgb is None else rgb[first:first + chunk])
            written.append(first)
    exporter.close()
    return written


def folder_bytes(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


# ---------------------------------------------------------------- meaning


def test_depth_conversion_is_finite_and_monotone_decreasing():
    inv = np.linspace(-1.0, 1.0, 10001, dtype=np.float32)
    meaning = describe(-1.0, 1.0, "depth")
    d = to_output_values(inv, meaning)
    assert d.dtype == np.float32 and np.all(np.isfinite(d)) and np.all(d > 0)
    assert np.all(np.diff(d) < 0)  # near (large inverse) = small depth
    assert meaning.quantity == DEPTH and meaning.near == "small" and meaning.shift == pytest.approx(0.1)
    assert meaning.range == (pytest.approx(float(d[-1])), pytest.approx(float(d[0])))
    back = 1 / d.astype(np.float64) + meaning.inverse_range[0] - meaning.shift  # the documented inverse rule
    np.testing.assert_allclose(back, inv, atol=1e-5)
    assert meaning.to_inverse_rule() == "inverse = 1 / value + -1.0 - 0.1"
    # values below the stated minimum (a wrong range) stay finite; a constant video is depth 1
    assert np.isfinite(to_output_values(np.array([-5.0]), meaning)).all()
    flat = describe(0.3, 0.3, "depth")
    assert flat.shift == 1.0 and to_output_values(np.full((2, 2), 0.3), flat).tolist() == [[1.0, 1.0], [1.0, 1.0]]
    inverse = describe(-0.9, 1.1)
    assert inverse.quantity == INVERSE and inverse.range == inverse.inverse_range == (-0.9, 1.1)
    assert to_output_values(inv, inverse) is inv


def test_sidecar_json_says_what_the_values_are():
    meaning = describe(-0.98, 1.02, "depth")
    doc = json.loads(sidecar_json(meaning, {"frames": 5, "frame_numbers": describe_numbers(range(1001, 1006), 5),
                                            "fps": 24.0, "size": {"height": H, "width": W}}))
    assert doc["quantity"] == "relative depth" and doc["units"] == "none" and doc["metric"] is False
    assert doc["affine_invariant"] is True and doc["near"] == "small"
    assert doc["inverse_range"] == [-0.98, 1.02] and doc["normalized_to"] == [-1.0, 1.0]
    assert doc["range"] == [pytest.approx(meaning.range[0]), pytest.approx(meaning.range[1])]
    assert doc["to_inverse_depth"].startswith("inverse = 1 / value")
    assert doc["frame_numbers"] == {"first": 1001, "step": 1, "count": 5} and doc["fps"] == 24.0
    assert "frame_numbering" in doc


def test_every_format_has_one_name():
    assert set(OUTPUTS) >= {"npy", "npz", "png16", "exr", "ply", "gray16", "mp4", "sbs", "sidecar"}
    out = Path("/o")
    assert output_path(out, "clip", "exr") == out / "exr" and output_path(out, "clip", "sidecar") == out / "clip_depth.json"
    assert scale_path(output_path(out, "clip", "png16")) == out / "png16" / "scale.json"
    assert scale_path(output_path(out, "clip", "gray16")) == out / "clip_depth16.scale.json"


# ---------------------------------------------------------------- exr


@pytest.mark.parametrize("output", ["inverse", "depth"])
def test_exr_float_is_exact_with_z_channel_attributes_and_frame_numbers(tmp_path, output):
    inv, _ = video()
    meaning = describe(float(inv.min()), float(inv.max()), output)
    numbers = range(1001, 1001 + T)
    folder = tmp_path / "exr"
    drive(ExrExporter(folder, "clip", meaning, MemUnits(), "k", T, numbers, fps=24000 / 1001), inv)
    files = sorted(folder.glob("*.exr"))
    assert [f.name for f in files] == [f"clip_{n:06d}.exr" for n in numbers]
    expected = to_output_values(inv, meaning)
    for i, path in enumerate(files):
        with OpenEXR.File(str(path)) as f:
            header, channels = dict(f.header()), f.channels()
            assert list(channels) == ["Z"]
            z = channels["Z"].pixels.copy()
        assert z.dtype == np.float32 and z.shape == (H, W) and np.array_equal(z, expected[i])
        assert header["compression"] == OpenEXR.ZIP_COMPRESSION
        assert header["rdengine:quantity"] == meaning.quantity and header["rdengine:frame"] == 1001 + i
        assert header["rdengine:near"] == meaning.near and header["rdengine:affineInvariant"] == 1
        assert header["rdengine:metric"] == 0
        assert tuple(header["rdengine:range"]) == meaning.range
        assert tuple(header["rdengine:inverseRange"]) == meaning.inverse_range
        assert tuple(header["rdengine:normalizedTo"]) == (-1.0, 1.0)
        assert json.loads(header["rdengine:meaning"]) == meaning.to_dict()
        assert header["framesPerSecond"] == pytest.approx(24000 / 1001)
        assert ("rdengine:shift" in header) == (output == "depth")


@pytest.mark.parametrize("compression", ["piz", "none"])
def test_exr_half_is_close(tmp_path, compression):
    inv, _ = video()
    meaning = describe(float(inv.min()), float(inv.max()))
    drive(ExrExporter(tmp_path / "exr", "clip", meaning, None, "", T, dtype="half", compression=compression), inv)
    for i in (0, T - 1):
        with OpenEXR.File(str(tmp_path / "exr" / f"clip_{i:06d}.exr")) as f:
            z = f.channels()["Z"].pixels
            assert f.header()["compression"] == getattr(OpenEXR, f"{compression.upper()}_COMPRESSION"
                                                       if compression != "none" else "NO_COMPRESSION")
        assert z.dtype == np.float16
        np.testing.assert_allclose(z.astype(np.float32), inv[i], rtol=1e-3, atol=6e-8)
    with pytest.raises(ValueError, match="half"):  # would overflow to inf
        ExrExporter(tmp_path / "big", "clip", describe(0.0, 1.0, "depth", shift_fraction=1e-6), dtype="half")


# ---------------------------------------------------------------- npz


def test_npz_members_values_and_meaning(tmp_path):
    inv, _ = video()
    meaning = describe(float(inv.min()), float(inv.max()), "depth")
    path = tmp_path / "clip_depth.npz"
    drive(NpzExporter(path, inv.shape, meaning, MemUnits(), "k", fps=30.0, numbers=range(7, 7 + T)), inv)
    assert not partial_path(path).exists()
    with zipfile.ZipFile(path) as zf:
        assert all(i.compress_type == zipfile.ZIP_DEFLATED for i in zf.infolist())
    with np.load(path) as z:  # no pickle needed
        assert {"depth", "frames", "fps", "quantity", "near", "range", "inverse_range", "normalized_to", "shift",
                "affine_invariant", "metric", "to_inverse_depth", "notes", "meaning"} <= set(z.files)
        assert z["depth"].dtype == np.float32 and z["depth"].shape == (T, H, W)
        assert np.array_equal(z["depth"], to_output_values(inv, meaning))
        assert z["frames"].tolist() == list(range(7, 7 + T)) and float(z["fps"]) == 30.0
        assert str(z["quantity"]) == "relative depth" and str(z["near"]) == "small" and bool(z["affine_invariant"])
        assert tuple(z["range"]) == meaning.range and tuple(z["inverse_range"]) == meaning.inverse_range
        assert float(z["shift"]) == meaning.shift and tuple(z["normalized_to"]) == (-1.0, 1.0)
        assert json.loads(str(z["meaning"])) == meaning.to_dict()


def test_npz_streams_with_memory_bounded_by_a_chunk(tmp_path):
    t, h, w, chunk = 200, 64, 64, 8
    meaning = describe(-1.0, 1.0)
    rng = np.random.default_rng(1)
    chunk_bytes = chunk * h * w * 4  # 128 KiB; the whole video is 3.2 MiB
    exporter = NpzExporter(tmp_path / "long.npz", (t, h, w), meaning)
    tracemalloc.start()
    try:
        for first in range(0, t, chunk):  # each chunk made, written, dropped: only the exporter keeps anything
            part = rng.uniform(-1, 1, (chunk, h, w)).astype(np.float32)
            exporter.write(first, part, None)
            del part
        exporter.close()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8 * chunk_bytes < t * h * w * 4 / 3  # a handful of chunks (zlib state included), never the video
    with np.load(tmp_path / "long.npz") as z:
        assert z["depth"].shape == (t, h, w)
        rng = np.random.default_rng(1)
        assert np.array_equal(z["depth"][-chunk:], [rng.uniform(-1, 1, (chunk, h, w)).astype(np.float32)
                                                    for _ in range(t // chunk)][-1])


def test_npz_and_gray16_are_redone_whole_after_a_kill(tmp_path):
    inv, _ = video()
    meaning = describe(float(inv.min()), float(inv.max()))
    units = MemUnits()
    npz, mkv = tmp_path / "c_depth.npz", tmp_path / "c_depth16.mkv"
    assert drive(NpzExporter(npz, inv.shape, meaning, units, "k"), inv, kill_after=2) == [0, 4]
    assert drive(Gray16Exporter(mkv, 24.0, (H, W), meaning, units, "k"), inv, kill_after=1) == [0]
    assert not npz.exists() and not mkv.exists()  # nothing under the final names until complete
    assert drive(NpzExporter(npz, inv.shape, meaning, units, "k"), inv) == [0, 4, 8]  # redone whole
    assert drive(Gray16Exporter(mkv, 24.0, (H, W), meaning, units, "k"), inv) == [0, 4, 8]
    with np.load(npz) as z:
        assert np.array_equal(z["depth"], inv)
    assert len(decode_gray16(mkv)) == T
    again = NpzExporter(npz, inv.shape, meaning, units, "k")  # complete: nothing to do
    assert again.complete and not again.needs(0)
    with pytest.raises(ValueError, match="out of order"):
        NpzExporter(tmp_path / "x.npz", inv.shape, meaning).write(4, inv[4:8], None)


# ---------------------------------------------------------------- ply


def read_ply(path):
    ply = PlyData.read(str(path))
    v = ply["vertex"].data
    return ply, np.stack([v["x"], v["y"], v["z"]], -1), np.stack([v["red"], v["green"], v["blue"]], -1)


def test_ply_plane_geometry_colours_and_comments(tmp_path):
    inv, rgb = video(t=T, h=H, w=W)
    inv[10] = 0.25  # a flat plane facing the camera: constant depth
    meaning = describe(float(inv.min()), float(inv.max()))
    folder = tmp_path / "ply"
    drive(PlyExporter(folder, "clip", meaning, (H, W), MemUnits(), "k", T, every=5), inv, rgb)
    assert sorted(p.name for p in folder.glob("*.ply")) == [f"clip_{i:06d}.ply" for i in (0, 5, 10)]
    ply, xyz, colour = read_ply(folder / "clip_000010.ply")
    assert ply.byte_order == "<" and not ply.text
    assert [p.name for p in ply["vertex"].properties] == ["x", "y", "z", "red", "green", "blue"]
    assert len(ply["vertex"].data) == H * W
    assert np.array_equal(colour, rgb[10].reshape(-1, 3))
    # coplanar: every point satisfies z = const (the plane's normal is the optical axis)
    depth = to_output_values(np.float32(0.25), meaning.as_depth())
    np.testing.assert_allclose(xyz[:, 2], depth, rtol=1e-6)
    centred = xyz - xyz.mean(0)
    assert np.linalg.svd(centred, compute_uv=False)[-1] < 1e-5 * np.abs(centred).max()
    f = focal_from_fov(W, 60.0)
    u = np.tile(np.arange(W), H)
    np.testing.assert_allclose(xyz[:, 0], (u + 0.5 - W / 2) * depth / f, rtol=1e-5, atol=1e-7)
    text = " ".join(ply.comments)
    assert "NOT metric" in text and "relative depth" in text and f"{f!r}" in text
    # frame 0: z is the relative depth of the inverse depth, with the same rule as --output depth
    _, xyz0, _ = read_ply(folder / "clip_000000.ply")
    np.testing.assert_array_equal(xyz0[:, 2], to_output_values(inv[0], meaning.as_depth()).reshape(-1))


def test_ply_stride_and_focal(tmp_path):
    inv, rgb = video()
    meaning = describe(float(inv.min()), float(inv.max()))
    folder = tmp_path / "ply"
    drive(PlyExporter(folder, "c", meaning, (H, W), every=1, stride=3, focal=5.0, numbers=range(50, 50 + T)),
          inv, rgb)
    ply, xyz, colour = read_ply(folder / "c_000053.ply")
    assert len(xyz) == 2 * 4  # ceil(6 / 3) * ceil(10 / 3)
    assert np.array_equal(colour, rgb[3, ::3, ::3].reshape(-1, 3))
    np.testing.assert_allclose(xyz[1, 0], (3 + 0.5 - W / 2) * xyz[1, 2] / 5.0, rtol=1e-6)


# ---------------------------------------------------------------- png16 and gray16


def decode_gray16(path):
    with av.open(str(path)) as c:
        assert c.streams.video[0].codec_context.name == "ffv1"
        return [f.to_ndarray(format="gray16le") for f in c.decode(video=0)]


def test_gray16_decodes_to_the_png16_codes(tmp_path):
    inv, _ = video(h=7, w=9)  # odd sizes
    meaning = describe(float(inv.min()), float(inv.max()), "depth")
    drive(Png16Exporter(tmp_path / "png16", "clip", meaning, MemUnits(), "k", T), inv)
    write_scales(tmp_path / "png16", meaning)
    mkv = tmp_path / "clip_depth16.mkv"
    drive(Gray16Exporter(mkv, 25.0, (7, 9), meaning, MemUnits(), "k"), inv)
    frames = decode_gray16(mkv)
    assert len(frames) == T and frames[0].dtype == np.uint16 and frames[0].shape == (7, 9)
    scale = Scale16.of(meaning)
    for i, codes in enumerate(frames):
        png = np.asarray(Image.open(tmp_path / "png16" / f"clip_{i:06d}.png"))
        assert png.dtype == np.uint16
        assert np.abs(codes.astype(int) - png.astype(int)).max() <= 1
        values = to_output_values(inv[i], meaning)
        assert np.abs(scale.decode(codes) - values).max() <= 0.5 * (scale.hi - scale.lo) / 65535 * 1.001
    png_map = json.loads((tmp_path / "png16" / "scale.json").read_text())
    mkv_map = json.loads(scale_path(mkv).read_text())
    assert png_map == mkv_map and png_map["quantity"] == "relative depth"
    assert (png_map["min"], png_map["max"]) == meaning.range
    with av.open(str(mkv)) as c:
        assert json.loads(c.metadata["COMMENT"])["min"] == meaning.range[0]


# ---------------------------------------------------------------- resuming chunk by chunk


def make(fmt, folder, units, meaning):
    if fmt == "png16":
        return Png16Exporter(folder, "clip", meaning, units, "k", T)
    if fmt == "exr":
        return ExrExporter(folder, "clip", meaning, units, "k", T, range(1001, 1001 + T))
    if fmt == "ply":
        return PlyExporter(folder, "clip", meaning, (H, W), units, "k", T, every=3)
    return NpyExporter(folder / "clip_depth.npy", (T, H, W), units, "k", CHUNK, meaning)


@pytest.mark.parametrize("fmt", ["png16", "exr", "ply", "npy"])
def test_chunk_resume_skips_recorded_chunks_and_equals_an_uninterrupted_write(tmp_path, fmt):
    inv, rgb = video()
    meaning = describe(float(inv.min()), float(inv.max()), "depth")
    whole, resumed = tmp_path / "whole", tmp_path / "resumed"
    resumed.mkdir()
    whole.mkdir()
    assert drive(make(fmt, whole, MemUnits(), meaning), inv, rgb) == [0, 4, 8]
    units = MemUnits()
    assert drive(make(fmt, resumed, units, meaning), inv, rgb, kill_after=2) == [0, 4]  # killed: no close
    again = make(fmt, resumed, units, meaning)
    assert not again.needs(0) and not again.needs(4) and again.needs(8)
    assert drive(again, inv, rgb) == [8]
    assert folder_bytes(resumed) == folder_bytes(whole)
    assert not any(p.name.startswith(".") for p in resumed.rglob("*"))  # no temporary files left
    done = make(fmt, resumed, units, meaning)
    assert done.complete and not done.needs(8)


def test_only_listed_frame_files_of_an_earlier_run_are_removed_and_no_foreign_file_is_replaced(tmp_path):
    inv, _ = video()
    meaning = describe(float(inv.min()), float(inv.max()))
    folder = tmp_path / "exr"
    folder.mkdir()
    theirs = folder / "clip_000100.exr"  # a file of this output's shape that no run here wrote
    theirs.write_bytes(b"the user's plate")
    drive(ExrExporter(folder, "clip", meaning, None, "", T, ledger=Ledger(tmp_path)), inv)
    drive(ExrExporter(folder, "clip", meaning, None, "", 5, ledger=Ledger(tmp_path)), inv[:5])
    assert sorted(p.name for p in folder.glob("*.exr")) == [*(f"clip_{i:06d}.exr" for i in range(5)), theirs.name]
    assert theirs.read_bytes() == b"the user's plate"
    assert sorted(Ledger(tmp_path).files) == [f"exr/clip_{i:06d}.exr" for i in range(5)]
    with pytest.raises(OutputConflict, match=re.escape(f"{theirs} exists and was not written by rdengine")):
        ExrExporter(folder, "clip", meaning, None, "", 1, range(100, 101), ledger=Ledger(tmp_path))
    assert theirs.read_bytes() == b"the user's plate"


# ---------------------------------------------------------------- the export stage


def test_export_stage_writes_agreeing_self_describing_outputs_shot_by_shot(tmp_path, tiny_checkpoint):
    """A real run of two shots: every value output holds the same relative depth, each shot converted
    with its own range; the files say so; a rerun rewrites nothing."""
    t, h, w = 12, 12, 16
    frames, cuts = synthetic_edit([6, 6], w, h)
    clip = encode_frames(tmp_path / "clip.mp4", frames)
    (tmp_path / "cuts.txt").write_text("\n".join(map(str, cuts)))
    out = tmp_path / "out"
    cfg = resolve_config("fast", res=16, dtype="fp32", dilations=(1, 2), checkpoint=str(tiny_checkpoint),
                         shots=str(tmp_path / "cuts.txt"))
    formats = ("npy", "npz", "png16", "exr", "ply", "gray16", "sbs")
    opts = ExecutionOptions(device="cpu", save=formats, progress="quiet", output="depth", ply_every=4)
    outputs = process_video(str(clip), out, cfg, opts).outputs
    inv = RunStore(outputs["zarr"], mode="r").array(layout.DEPTH)[:]
    meaning = describe_parts([(0, 6, inv[:6].min(), inv[:6].max()), (6, 12, inv[6:].min(), inv[6:].max())], "depth")
    values = to_output_values(inv, meaning)
    assert np.array_equal(values[:6], to_output_values(inv[:6], describe(inv[:6].min(), inv[:6].max(), "depth")))
    assert np.array_equal(np.load(outputs["npy"]), values)
    with np.load(outputs["npz"]) as z:
        assert np.array_equal(z["depth"], values) and z["frames"].tolist() == list(range(t))
    for frame, shot in ((3, 0), (9, 1)):
        with OpenEXR.File(str(outputs["exr"] / f"clip_{frame:06d}.exr")) as f:
            assert np.array_equal(f.channels()["Z"].pixels, values[frame])
            assert tuple(f.header()["rdengine:inverseRange"]) == meaning.parts[shot][2].inverse_range
    scales = json.loads((outputs["png16"] / "scale.json").read_text())
    assert [s["frames"] for s in scales["shots"]] == [[0, 6], [6, 12]]
    for frame, shot in ((2, 0), (7, 1)):
        codes = np.asarray(Image.open(outputs["png16"] / f"clip_{frame:06d}.png")).astype(np.float64)
        lo, hi = scales["shots"][shot]["min"], scales["shots"][shot]["max"]
        np.testing.assert_allclose(lo + codes / 65535 * (hi - lo), values[frame], atol=(hi - lo) / 65535)
    assert sorted(p.name for p in outputs["ply"].glob("*.ply")) == ["clip_000000.ply", "clip_000004.ply",
                                                                   "clip_000008.ply"]
    assert len(decode_gray16(outputs["gray16"])) == t
    with av.open(str(outputs["sbs"])) as c:
        assert (c.streams.video[0].width, c.streams.video[0].height) == (2 * w, h)
    doc = json.loads(outputs["sidecar"].read_text())
    assert doc["quantity"] == "relative depth" and doc["frames"] == t and doc["fps"] == 12.0
    assert [s["frames"] for s in doc["shots"]] == [[0, 6], [6, 12]]
    assert doc["size"] == {"height": h, "width": w} and doc["outputs"]["exr"] == "exr"
    assert doc["outputs"]["gray16_scale"] == "clip_depth16.scale.json" and doc["ply"]["every"] == 4
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file() and p.suffix != ".json"
              and "run.zarr" not in p.parts}
    process_video(str(clip), out, cfg, opts)
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file() and p.suffix != ".json"
            and "run.zarr" not in p.parts} == before
