"""VFX and research formats end to end: image sequences in (16-bit PNG, EXR) give the depth of the
same frames in a lossless video; EXR, npz and PLY outputs read back with their own libraries;
the run store opens in xarray."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from rdengine.engine.config import ExecutionOptions, resolve_config
from rdengine.engine.pipeline import process_video
from rdengine.engine.testing.synthetic_clip import encode_frames, synthetic_frames
from rdengine.storage.inputs import open_input
from rdengine.engine.testing.image_files import write_exr, write_image

OpenEXR = pytest.importorskip("OpenEXR")
FRAMES, WIDTH, HEIGHT = 14, 64, 48


def srgb_to_linear(srgb: np.ndarray) -> np.ndarray:
    """The inverse of the sRGB transfer function (float64)."""
    return np.where(srgb <= 0.04045, srgb / 12.92, ((srgb + 0.055) / 1.055) ** 2.4)


def depth_of(source: str | Path, out: Path, ckpt: Path, *save: str, **options) -> dict[str, Path]:
    cfg = resolve_config("fast", res=64, dtype="fp32", checkpoint=str(ckpt), dilations=(1, 4), shots="none")
    opts = ExecutionOptions(device="cpu", batch_size=4, save=("npy", *save), progress="quiet", **options)
    return process_video(str(source), out, cfg, opts).outputs


@pytest.fixture(scope="module")
def frames() -> np.ndarray:
    return synthetic_frames(FRAMES, WIDTH, HEIGHT, seed=3)


@pytest.fixture(scope="module")
def lossless(frames, tmp_path_factory, tiny_checkpoint) -> tuple[Path, np.ndarray]:
    """The frames in an ffv1 (lossless RGB) video, and its depth."""
    root = tmp_path_factory.mktemp("lossless")
    video = encode_frames(root / "frames.mkv", frames, codec="ffv1", pix_fmt="bgr0")
    assert np.array_equal(np.stack(list(open_input(str(video)).frames())), frames)  # truly lossless
    return video, np.load(depth_of(video, root / "out", tiny_checkpoint)["npy"])


def test_sixteen_bit_png_sequence_gives_the_depth_of_the_lossless_video(frames, lossless, tmp_path, tiny_checkpoint):
    plates = tmp_path / "plates"
    plates.mkdir()
    for number, frame in enumerate(frames, start=1001):
        write_image(plates / f"plate.{number}.png", frame.astype(np.uint16) * 257, "png", "rgb48le", "rgb48be")
    source = open_input(str(plates / "plate.%04d.png"))
    assert "16-bit" in source.info.description and source.info.frame_numbers[0] == 1001
    depth = np.load(depth_of(plates / "plate.%04d.png", tmp_path / "out", tiny_checkpoint)["npy"])
    # v * 257 / 65535 == v / 255: the same model input up to float32 rounding of the resize
    np.testing.assert_allclose(depth, lossless[1], rtol=0, atol=1e-4)


def test_exr_sequence_gives_the_depth_of_the_lossless_video(frames, lossless, tmp_path, tiny_checkpoint):
    plates = tmp_path / "exr"
    plates.mkdir()
    for number, frame in enumerate(frames):
        linear = srgb_to_linear(frame / 255.0).astype(np.float32)  # scene-linear light: read back as sRGB
        write_exr(plates / f"shot_{number:04d}.exr", {"RGB": linear})
    depth = np.load(depth_of(plates, tmp_path / "out", tiny_checkpoint)["npy"])
    np.testing.assert_allclose(depth, lossless[1], rtol=0, atol=1e-3)


@pytest.fixture(scope="module")
def outputs(lossless, tmp_path_factory, tiny_checkpoint) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("formats")
    return depth_of(lossless[0], out, tiny_checkpoint, "exr", "npz", "ply", exr_dtype="float", ply_every=5,
                    ply_stride=2)


def read_exr_z(path: Path) -> np.ndarray:
    with OpenEXR.File(str(path)) as exr:
        return np.asarray(exr.channels()["Z"].pixels)


def test_exr_output_equals_the_npy(outputs):
    depth = np.load(outputs["npy"])
    files = sorted(outputs["exr"].glob("*.exr"))
    assert len(files) == FRAMES and files[0].name.endswith("0000.exr")
    for index, path in enumerate(files):
        z = read_exr_z(path)
        assert z.dtype == np.float32
        np.testing.assert_array_equal(z, depth[index])
    with OpenEXR.File(str(files[0])) as exr:
        header = dict(exr.header())
    assert "inverse" in header["rdengine:quantity"] and header["rdengine:frame"] == 0


def test_exr_half_is_within_1e3_relative(lossless, tmp_path, tiny_checkpoint):
    outs = depth_of(lossless[0], tmp_path / "half", tiny_checkpoint, "exr", exr_dtype="half")
    depth = np.load(outs["npy"])
    for index, path in enumerate(sorted(outs["exr"].glob("*.exr"))):
        z = read_exr_z(path)
        assert z.dtype == np.float16
        np.testing.assert_allclose(z.astype(np.float32), depth[index], rtol=1e-3, atol=1e-3)


def test_npz_reads_back_with_its_fields(outputs):
    depth = np.load(outputs["npy"])
    with np.load(outputs["npz"]) as npz:
        np.testing.assert_array_equal(npz["depth"], depth)
        assert float(npz["fps"]) == 12.0 and npz["frames"].tolist() == list(range(FRAMES))
        assert str(npz["kind"]) == "inverse" and str(npz["quantity"]) == "relative inverse depth"


def test_ply_reads_back_with_plyfile(outputs, frames):
    from plyfile import PlyData

    files = sorted(outputs["ply"].glob("*.ply"))
    assert [int(p.stem.rsplit("_", 1)[-1]) for p in files] == list(range(0, FRAMES, 5))
    cloud = PlyData.read(str(files[0]))
    vertices = cloud["vertex"]
    assert len(vertices) == (HEIGHT // 2) * (WIDTH // 2)
    assert {"x", "y", "z", "red", "green", "blue"} <= set(vertices.data.dtype.names)
    assert np.all(np.asarray(vertices["z"]) > 0)
    assert any("relative" in c for c in cloud.comments)


def test_sidecar_names_every_output(outputs):
    sidecar = json.loads(outputs["sidecar"].read_text())
    assert {"npy", "exr", "npz", "ply"} <= set(sidecar["outputs"])
    assert sidecar["frames"] == FRAMES


def test_sidecar_lists_the_outputs_of_earlier_runs_that_hold_the_same_depth(lossless, tmp_path, tiny_checkpoint):
    out = tmp_path / "out"
    depth_of(lossless[0], out, tiny_checkpoint, "exr")
    second = depth_of(lossless[0], out, tiny_checkpoint, "png16")  # resumes: the same depth, another format
    sidecar = json.loads(second["sidecar"].read_text())
    assert {"npy", "exr", "png16"} <= set(sidecar["outputs"]) and "other_outputs" not in sidecar
    assert all((out / rel).exists() for rel in sidecar["outputs"].values())
    third = depth_of(lossless[0], out, tiny_checkpoint, output="depth")  # other values: npy again, as depth
    sidecar = json.loads(third["sidecar"].read_text())
    assert set(sidecar["outputs"]) == {"npy"}
    assert {"exr", "png16"} <= set(sidecar["other_outputs"]["files"])


def test_run_store_opens_in_xarray_with_time_coordinates(outputs):
    import xarray

    ds = xarray.open_zarr(outputs["zarr"], consolidated=False)
    depth = ds["depth"]
    assert depth.dims == ("frame", "y", "x") and depth.shape == (FRAMES, HEIGHT, WIDTH)
    np.testing.assert_allclose(ds["time"].values, np.arange(FRAMES) / 12.0)
    np.testing.assert_array_equal(depth.values, np.load(outputs["npy"]))
