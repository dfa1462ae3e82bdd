"""Lossless codecs for the full-resolution snippet depth scratch: bytes per map and speed.

The scratch holds decoded snippet depth in the compute precision until its shot is merged.
Random-weight models give noise, which no codec compresses, so the maps here are smooth
scenes as a depth model sees them: ``render_inverse_depth`` (a wall, a floor with a moving
horizon, a near disc) mapped to the model's output range [-1, 1], once as rendered and once
with a fine texture of 0.5% (object surface detail the model resolves). Each chain writes
a real sharded Zarr array on disk (one shard, one map per chunk, the CRC32C every scratch
chunk carries), reads it back and checks the bytes are the same.

    rdengine bench scratch-codecs --size 768x432 --maps 48
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import zarr
from zarr.codecs import BloscCodec, BytesCodec, Crc32cCodec, PCodec, ZstdCodec

from ..engine.testing.synthetic_depth import render_inverse_depth


def chains() -> dict[str, dict]:
    """Name -> the array's serializer and compressors (every chain ends with the CRC32C)."""
    crc = Crc32cCodec()
    return {
        "blosc-zstd3-bitshuffle": dict(serializer=BytesCodec(),
                                       compressors=[BloscCodec(cname="zstd", clevel=3, shuffle="bitshuffle"), crc]),
        "blosc-zstd3-shuffle": dict(serializer=BytesCodec(),
                                    compressors=[BloscCodec(cname="zstd", clevel=3, shuffle="shuffle"), crc]),
        "blosc-zstd7-bitshuffle": dict(serializer=BytesCodec(),
                                       compressors=[BloscCodec(cname="zstd", clevel=7, shuffle="bitshuffle"), crc]),
        "blosc-lz4-bitshuffle": dict(serializer=BytesCodec(),
                                     compressors=[BloscCodec(cname="lz4", clevel=5, shuffle="bitshuffle"), crc]),
        "zstd3": dict(serializer=BytesCodec(), compressors=[ZstdCodec(level=3), crc]),
        "pcodec8": dict(serializer=PCodec(level=8), compressors=[crc]),
        "pcodec4": dict(serializer=PCodec(level=4), compressors=[crc]),
    }


def realistic_maps(count: int, height: int, width: int, texture: float, seed: int = 0) -> np.ndarray:
    """``float32 [count, height, width]`` smooth scene depth in [-1, 1], with a fine texture of
    ``texture`` (relative amplitude) when it is not 0."""
    v = (np.arange(height, dtype=np.float32) + 0.5) / height
    u = (np.arange(width, dtype=np.float32) + 0.5) / width
    maps = render_inverse_depth(np.arange(count) * 5, v, u)
    maps = (maps - maps.min()) / (maps.max() - maps.min()) * 2 - 1
    if texture:
        rng = np.random.default_rng(seed)
        fine = rng.standard_normal((count, height // 4 + 1, width // 4 + 1)).astype(np.float32)
        fine = np.repeat(np.repeat(fine, 4, axis=1), 4, axis=2)[:, :height, :width]  # 4 px grains
        maps = maps + texture * 2 * fine
    return maps.astype(np.float32)


def measure(maps: np.ndarray, dtype: str, name: str, chain: dict, folder: Path) -> dict:
    """Write ``maps`` as ``dtype`` through ``chain`` into a new array under ``folder``; read back."""
    data = maps.astype(dtype)
    path = Path(tempfile.mkdtemp(prefix=f"{name}-{dtype}-", dir=folder))
    array = zarr.create_array(str(path), shape=data.shape, dtype=dtype, chunks=(1, *data.shape[1:]),
                              shards=data.shape, fill_value=0, **chain)
    started = time.perf_counter()
    array[:] = data
    written = time.perf_counter() - started
    stored = sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and p.name != "zarr.json")
    started = time.perf_counter()
    back = zarr.open_array(str(path), mode="r")[:]
    read = time.perf_counter() - started
    if back.tobytes() != data.tobytes():
        raise AssertionError(f"{name} is not lossless on {dtype}")
    raw = data.nbytes
    return {"chain": name, "dtype": dtype, "ratio": stored / raw, "bytes_per_map": stored / len(data),
            "write_mb_s": raw / written / 1e6, "read_mb_s": raw / read / 1e6}


def run(size: tuple[int, int], count: int, textures: list[float]) -> list[dict]:
    rows = []
    folder = Path(tempfile.mkdtemp(prefix="rdengine-codecs-"))
    try:
        for texture in textures:
            maps = realistic_maps(count, size[1], size[0], texture)
            for dtype in ("float16", "float32"):
                for name, chain in chains().items():
                    rows.append({"texture": texture, **measure(maps, dtype, name, chain, folder)})
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="rdengine bench scratch-codecs", description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", default="768x432", help="map size WxH (default 768x432)")
    parser.add_argument("--maps", type=int, default=48, help="maps per measurement (default 48)")
    parser.add_argument("--texture", type=float, nargs="+", default=[0.0, 0.005],
                        help="relative amplitude of the fine texture (default: 0 and 0.005)")
    args = parser.parse_args(argv)
    width, height = (int(v) for v in args.size.lower().split("x"))
    print(f"{'texture':>8} {'dtype':>8} {'chain':<24} {'stored/raw':>10} {'KB/map':>8} {'write MB/s':>10} "
          f"{'read MB/s':>10}")
    for row in run((width, height), args.maps, args.texture):
        print(f"{row['texture']:>8.3f} {row['dtype']:>8} {row['chain']:<24} {row['ratio']:>10.3f} "
              f"{row['bytes_per_map'] / 1e3:>8.1f} {row['write_mb_s']:>10.0f} {row['read_mb_s']:>10.0f}")


if __name__ == "__main__":
    main()
