"""`rdengine bench`: the JSON report has every stage and figure, each derived from the run as documented.

No assertion here depends on how fast the machine is: timings are only checked for what holds
by construction (rates are items / seconds, shares sum up, nested spans fit in their stage).
"""

from __future__ import annotations

import json

import pytest

from rdengine.benchmarks import bench
from rdengine.cli import cli
from rdengine.engine.snippets import plan_snippets

STAGES = ["ingest", "snippets", "coalign", "merge", "normalize", "export"]


@pytest.fixture(scope="module")
def report(tmp_path_factory, tiny_checkpoint):
    """One CLI run: a 24-frame 64x48 synthetic clip, tiny model, 2 repeats, JSON out."""
    from click.testing import CliRunner

    tmp = tmp_path_factory.mktemp("bench")
    path = tmp / "bench.json"
    result = CliRunner().invoke(cli, ["bench", "--frames", "24", "--clip-size", "64x48", "--device", "cpu",
                                      "--batch-size", "4", "--repeat", "2", "--threads", "1",
                                      "--model", str(tiny_checkpoint), "--json", str(path)])
    assert result.exit_code == 0, result.output
    return json.loads(path.read_text()), result.output


def test_every_stage_and_figure_is_reported(report):
    data, screen = report
    assert [s["stage"] for s in data["stages"]] == STAGES
    groups, _ = plan_snippets(24, (1, 25), (3, 3), True)
    snippets = sum(g.count for g in groups)
    items = {"snippets": snippets, "coalign": snippets}  # every other stage counts the 24 frames
    for s in data["stages"]:
        assert s["items"] == items.get(s["stage"], 24)
        assert s["seconds"]["min"] <= s["seconds"]["mean"]
        assert s["rate"] == pytest.approx(s["items"] / s["seconds"]["mean"])
        assert s["share"] == pytest.approx(s["seconds"]["mean"] / data["total_seconds"]["mean"])
        assert s["stage"] in screen
    assert {s["stage"]: s["unit"] for s in data["stages"]}["snippets"] == "snippets"
    assert data["peak_rss_mib"] > 50 and data["peak_gpu_mib"] is None and "n/a" in screen
    assert data["config"]["frames"] == 24 and data["config"]["size"] == [48, 64]
    assert data["config"]["batch_size"] == 4 and len(data["runs"]) == 2


def test_figures_are_consistent(report):
    data, _ = report
    total = data["total_seconds"]["mean"]
    assert data["stage_seconds_sum"] == pytest.approx(sum(s["seconds"]["mean"] for s in data["stages"]))
    assert sum(s["share"] for s in data["stages"]) == pytest.approx(data["stage_seconds_sum"] / total)
    assert data["frames_per_s"] == pytest.approx(24 / total)
    sn = data["snippet_stage"]
    groups, _ = plan_snippets(24, (1, 25), (3, 3), True)  # dilations 1 and 7: 22 + 10 snippets
    assert sn["snippets"] == 32 == data["stages"][1]["items"]
    assert sn["batches"] == 8  # 32 snippets, 4 per UNet call
    stage = data["stages"][1]["seconds"]["mean"]
    # the UNet and decode spans lie inside the snippet stage of the same runs
    assert sn["unet_seconds"]["mean"] + sn["decode_seconds"]["mean"] <= stage
    assert sn["device_busy"] == pytest.approx((sn["unet_seconds"]["mean"] + sn["decode_seconds"]["mean"]) / stage)
    unet = data["unet"]
    assert unet["total_flops"] == unet["flops_per_snippet"]["3"] * 32
    assert unet["tflops"] == pytest.approx(unet["total_flops"] / sn["unet_seconds"]["mean"] / 1e12)
    assert unet["tflops_stage"] == pytest.approx(unet["total_flops"] / stage / 1e12)


def test_unet_flops_count_attention(tiny_checkpoint):
    """The FLOP count includes the cross-frame attention (CPU SDPA has no built-in formula)."""
    from rdengine.engine.model import load_model

    model = load_model(str(tiny_checkpoint), "cpu", "fp32", "sdpa")
    small, big = (bench.unet_flops_per_snippet(model, 3, s) for s in ((4, 4), (8, 8)))
    assert big > 4 * small > 0  # attention is quadratic in tokens, convolutions linear


def test_bench_cli_routes_video_and_subcommands(tmp_path):
    from click.testing import CliRunner

    runner = CliRunner()
    missing = runner.invoke(cli, ["bench", str(tmp_path / "none.mp4"), "--frames", "4"])
    assert missing.exit_code == 2 and "video not found" in missing.output
    for sub in ("scaling", "batch-size"):
        assert runner.invoke(cli, ["bench", sub, "--help"]).exit_code == 0
    assert runner.invoke(cli, ["bench", "--clip-size", "12"]).exit_code == 2
    assert runner.invoke(cli, ["bench", "scaling", "extra"]).exit_code == 2
    pytest.importorskip("rdengine.benchmarks.coalign")
    assert runner.invoke(cli, ["bench", "coalign", "--help"]).exit_code == 0


def test_film_bench_reads_stage_times_and_counts_store_files(tmp_path):
    from rdengine.benchmarks import film

    log = "\n".join(['not json', '{"event": "stage_end", "stage": "ingest", "seconds": 1.5}',
                     '{"event": "unit", "stage": "ingest"}', '{"event": "stage_end", "stage": "snippets", "seconds": 4}',
                     '{"event": "stage_end", "stage": "ingest", "seconds": 0.5}'])
    assert film.stage_seconds(log) == {"ingest": 2.0, "snippets": 4.0}
    store = tmp_path / "run.zarr"
    for rel, size in (("zarr.json", 10), ("depth/c/0/0/0", 8192), ("snippets/g0/c/0", 4096), ("_units/x/zarr.json", 5)):
        (store / rel).parent.mkdir(parents=True, exist_ok=True)
        (store / rel).write_bytes(b"x" * size)
    total, depth, files, shards = film.disk_use(store)
    assert (files, shards) == (4, 2) and depth >= 8192 and total >= depth + 4096
