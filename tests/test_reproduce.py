"""`--reproduce` arithmetic: the chunked engine computes what the published code computes on the
whole video in its compute dtype (min shift, merge, renormalization, refinement averaging).

Each test writes the published computation literally (whole video in memory, their order of
operations) and requires the engine's chunked result to be bit-identical in fp16 and fp32.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rdengine.engine.config import ConfigError, resolve_config
from rdengine.engine.model import TORCH_DTYPES, load_model
from rdengine.engine.snippets import SnippetGroup
from rdengine.engine.stages.merge import merge_frames, normalized
from rdengine.engine.stages.refine import refine_chunk, timesteps_kept
from rdengine.engine.denoise import denoise_step

DTYPES = ["fp16", "fp32"]


def snippet_case(num_frames=23, dilations=(1, 5), length=3, size=(6, 7), seed=0):
    rng = np.random.default_rng(seed)
    groups = [SnippetGroup(dilation=d, length=length, num_frames=num_frames) for d in dilations]
    snippets = [rng.uniform(-0.8, 1.2, (g.count, length, *size)).astype(np.float16).astype(np.float32)
                for g in groups]  # values a fp16 decoder produces
    scales = [rng.uniform(0.5, 1.5, g.count).astype(np.float32).astype(np.float64) for g in groups]
    shifts = [rng.uniform(-0.2, 0.2, g.count).astype(np.float32).astype(np.float64) for g in groups]
    return groups, snippets, scales, shifts


def published_merge(groups, snippets, scales, shifts, dtype):
    """Their merge: shift every snippet by the global min, ``x * s + t`` with s, t cast to the
    dtype, then per frame the mean of the stacked observations (dilation order, snippet order)."""
    tensors = [torch.from_numpy(x).to(dtype) for x in snippets]
    mn = min(t.min() for t in tensors)
    tensors = [t - mn for t in tensors]
    aligned = [t * torch.from_numpy(s.astype(np.float32)).to(dtype)[:, None, None, None]
               + torch.from_numpy(sh.astype(np.float32)).to(dtype)[:, None, None, None]
               for t, s, sh in zip(tensors, scales, shifts)]
    frames = []
    for f in range(groups[0].num_frames):
        observed = []
        for g, a in zip(groups, aligned):
            table = torch.from_numpy(g.frame_table())
            observed.append(a[table == f])
        frames.append(torch.cat(observed).mean(0))
    return torch.stack(frames), float(mn)


@pytest.mark.parametrize("dtype", DTYPES)
def test_merge_in_the_compute_dtype_matches_the_published_merge(dtype):
    groups, snippets, scales, shifts = snippet_case()
    expected, global_min = published_merge(groups, snippets, scales, shifts, TORCH_DTYPES[dtype])
    ours = np.concatenate([merge_frames(snippets, groups, scales, shifts, global_min, a, min(a + 4, 23), dtype)
                           for a in range(0, 23, 4)])
    assert np.array_equal(ours, expected.double().numpy())
    default = np.concatenate([merge_frames(snippets, groups, scales, shifts, global_min, 0, 23)])
    assert not np.array_equal(default, ours) or dtype == "fp32"  # float64 sums differ from fp16 ones


@pytest.mark.parametrize("dtype", DTYPES)
def test_chunked_normalization_matches_the_published_one(dtype):
    x = np.random.default_rng(1).uniform(-0.3, 2.7, (10, 5, 6)).astype(np.float16).astype(np.float32)
    d = torch.from_numpy(x).to(TORCH_DTYPES[dtype])
    d -= d.min()
    d /= d.max()
    expected = (d * 2.0 - 1.0).float().numpy()
    lo, hi = float(x.min()), float(x.max())
    ours = np.concatenate([normalized(x[a:a + 3], lo, hi, dtype) for a in range(0, 10, 3)])
    assert np.array_equal(ours, expected)


@pytest.mark.parametrize("dtype", DTYPES)
def test_refinement_averaging_matches_the_published_accumulation(dtype, tiny_checkpoint):
    """One refinement step over 14 frames at dilation 2: per frame, fp16/fp32 ``+=`` of the
    snippets that hold it, in snippet order, then ``/ count``."""
    torch_dtype = TORCH_DTYPES[dtype]
    model = load_model(str(tiny_checkpoint), "cpu", dtype, "sdpa")
    scheduler, kept = timesteps_kept(model, 3)
    rng = np.random.default_rng(2)
    rgb = rng.standard_normal((14, 4, 3, 4)).astype(np.float16).astype(np.float32)
    old = rng.standard_normal((14, 4, 3, 4)).astype(np.float16).astype(np.float32)
    group = SnippetGroup(dilation=2, length=3, num_frames=14)
    total = torch.zeros(14, 4, 3, 4, dtype=torch_dtype)
    count = torch.zeros(14, dtype=torch.int32)
    with torch.no_grad():
        for i in range(group.count):
            frames = torch.tensor(group.frames(i))
            pred = denoise_step(model, scheduler, torch.from_numpy(rgb[frames])[None],
                                torch.from_numpy(old[frames])[None], kept[1])[0]
            total[frames] += pred
            count[frames] += 1
        expected = (total / count[:, None, None, None]).float().numpy()
        ours = np.concatenate([refine_chunk(model, scheduler, group, rgb, old, kept[1], a, min(a + 5, 14), 1, dtype)[0]
                               for a in range(0, 14, 5)])
    assert np.array_equal(ours, expected)


def test_reproduce_means_the_reference_solver():
    assert resolve_config("fast", reproduce=True).coalign == "reference"
    assert resolve_config("fast").coalign == "fast"
    assert resolve_config("paper", reproduce=True).geometry == "authors"
    assert resolve_config("paper").exact_dtype is None and resolve_config("full", reproduce=True).exact_dtype == "fp16"
    with pytest.raises(ConfigError, match="--reproduce"):
        resolve_config("fast", reproduce=True, coalign="fast")
