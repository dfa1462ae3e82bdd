"""Snippet plans, dilation cap, refinement schedule and batching against SPEC.md."""

import pytest

from rdengine.engine.config import ConfigError, resolve_config
from rdengine.engine.batching import plan_batches
from rdengine.engine.snippets import SnippetGroup, cap_dilation, plan_snippets, refinement_dilations


def test_snippet_indices_follow_the_dilated_kernel():
    g = SnippetGroup(dilation=10, length=3, num_frames=30)
    assert g.count == 10  # i + 20 <= 29
    assert g.frames(0) == [0, 10, 20] and g.frames(9) == [9, 19, 29]
    table = g.frame_table()
    assert table.shape == (10, 3) and (table[:, 1] - table[:, 0] == 10).all()
    assert g.frame_table(3, 5).tolist() == [[3, 13, 23], [4, 14, 24]]


# hand-computed: g = int(T / L) - 1 (250/3 -> 82, 60/3 -> 19, 30/3 -> 9, 30/4 -> 6, 40/3 -> 12)
@pytest.mark.parametrize("T,L,d,expected", [(250, 3, 25, 25), (60, 3, 25, 19), (30, 3, 25, 9), (30, 4, 10, 6),
                                            (40, 3, 25, 12), (40, 3, 12, 12), (5, 3, 6, 0)])
def test_dilation_cap(T, L, d, expected):
    assert cap_dilation(d, L, T) == expected


def test_plan_caps_only_when_enabled_and_reports_uncovered_frames():
    groups, notes = plan_snippets(60, (1, 25), (3, 3), cap=True)
    assert [g.dilation for g in groups] == [1, 19]
    assert any("capped" in n for n in notes)
    groups, notes = plan_snippets(60, (1, 25), (3, 3), cap=False)
    assert [g.dilation for g in groups] == [1, 25]
    assert groups[1].count == 10 and any("uncovered" in n for n in notes)


def test_every_frame_covered_by_dilation_one_and_each_group_may_have_its_own_length():
    groups, _ = plan_snippets(40, (1, 4, 10), (3, 2, 4), cap=False)
    assert [(g.dilation, g.length, g.count) for g in groups] == [(1, 3, 38), (4, 2, 36), (10, 4, 10)]
    assert set(groups[0].frame_table().ravel()) == set(range(40))


def test_short_videos_shorten_snippets_and_drop_dilations():
    groups, notes = plan_snippets(2, (1, 25), (3, 3), cap=True)
    assert [(g.dilation, g.length, g.count) for g in groups] == [(1, 2, 1)]
    assert any("shortened" in n for n in notes) and any("dropped" in n for n in notes)


def test_refinement_schedule_coarse_to_fine():
    # the published schedule for R=10 from dilation 6; (1 - 0.8) * 5 = 0.999.. truncates to gap 0
    assert refinement_dilations(10, 6, 3, 1000, cap=True) == [6, 5, 5, 4, 4, 3, 3, 2, 1, 1]
    assert refinement_dilations(3, 6, 3, 1000, cap=True) == [6, 4, 2]
    assert refinement_dilations(4, 6, 3, 9, cap=True) == [2, 1, 1, 1]  # start capped to int(9/3)-1 = 2
    assert refinement_dilations(4, 6, 3, 9, cap=False)[0] == 6


def test_the_batch_stream_covers_each_snippet_once_mixes_dilations_and_keeps_lengths_apart():
    groups, _ = plan_snippets(50, (1, 10, 25), (3, 3, 2), cap=False)  # 48, 30 and 25 snippets
    batches = plan_batches([[0, 1, 2]], groups, 8)
    members = [m for b in batches for m in b.members]
    assert sorted(members) == sorted((k, i) for k, g in enumerate(groups) for i in range(g.count))
    assert all(groups[k].length == b.length for b in batches for k, _ in b.members)
    for length, count in ((3, 78), (2, 25)):  # full batches but the last of each length
        sizes = [len(b.members) for b in batches if b.length == length]
        assert sizes == [8] * (count // 8) + ([count % 8] if count % 8 else [])
    assert any(len({k for k, _ in b.members}) > 1 for b in batches)  # dilations share a batch
    starts = [groups[k].frames(i)[0] for b in batches if b.length == 3 for k, i in b.members]
    assert starts == sorted(starts)  # start order: a sliding window over the RGB latents


def test_presets_match_the_spec_table_and_validation_rejects_bad_configs():
    full = resolve_config("full")
    assert (full.res, full.dilations, full.cap_dilation, full.dtype, full.refine_steps) == (1024, (1, 10, 25), True, "fp16", 10)
    paper = resolve_config("paper")
    assert (paper.res, paper.cap_dilation, paper.dtype) == (768, False, "fp32")
    assert resolve_config("fast", dilations=(1, 10, 25)).snippet_lens == (3, 3, 3)
    with pytest.raises(ConfigError, match="must include 1"):
        resolve_config("fast", dilations=(10, 25))
    with pytest.raises(ConfigError, match="between 2 and 4"):
        resolve_config("fast", snippet_lens=(5,))
    assert resolve_config("fast").digest() != resolve_config("fast", seed=1).digest()
