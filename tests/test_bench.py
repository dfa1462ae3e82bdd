"""`rdengine bench`: the JSON report has every stage and figure, positive and consistent."""

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
    for s in data["stages"]:
        assert s["seconds"]["mean"] > 0 and 0 < s["seconds"]["min"] <= s["seconds"]["mean"]
        assert s["items"] > 0 and s["rate"] > 0 and 0 < s["share"] < 1
        assert s["stage"] in screen
    assert {s["stage"]: s["unit"] for s in data["stages"]}["snippets"] == "snippets"
    assert data["peak_rss_mib"] > 50 and data["peak_gpu_mib"] is None and "n/a" in screen
    assert data["config"]["frames"] == 24 and data["config"]["size"] == [48, 64]
    assert data["config"]["batch_size"] == 4 and len(data["runs"]) == 2


def test_figures_are_consistent(report):
    data, _ = report
    total = data["total_seconds"]["mean"]
    assert 0.8 * total <= data["stage_seconds_sum"] <= 1.001 * total  # stages cover the run
    assert abs(sum(s["share"] for s in data["stages"]) - data["stage_seconds_sum"] / total) < 1e-6
    sn = data["snippet_stage"]
    groups, _ = plan_snippets(24, (1, 25), (3, 3), True)
    assert sn["snippets"] == sum(g.count for g in groups) == data["stages"][1]["items"]
    assert sn["batches"] == -(-sn["snippets"] // 4)
    stage = data["stages"][1]["seconds"]["mean"]
    assert 0 < sn["unet_seconds"]["mean"] and 0 < sn["decode_seconds"]["mean"]
    assert sn["unet_seconds"]["mean"] + sn["decode_seconds"]["mean"] <= stage * 1.001
    assert 0 < sn["device_busy"] <= 1.001
    unet = data["unet"]
    assert unet["flops_per_snippet"]["3"] > 0
    assert unet["total_flops"] == unet["flops_per_snippet"]["3"] * sn["snippets"]
    assert unet["tflops"] >= unet["tflops_stage"] > 0


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
