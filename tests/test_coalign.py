"""Co-alignment: the SPEC objective against a dense evaluation, both solvers, degenerate inputs,
streaming under a memory budget, and fast vs reference on synthetic video."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import zarr

from rdengine.engine import coalign
from rdengine.engine.coalign import align, objective, sample_pixels, solve
from rdengine.engine.coalign.graph import SnippetGraph
from rdengine.engine.coalign.objective import evaluate
from rdengine.engine.coalign import observations
from rdengine.engine.coalign.observations import Observations
from rdengine.engine.coalign.reference import ADAM_STEPS
from rdengine.engine.testing.synthetic_depth import absrel_after_affine, make_synthetic_case, merge_in_memory


def dense_objective(samples, dilations, lengths, num_frames, global_min, scales, shifts, detach_targets=True,
                    dtype=torch.float64):
    """SPEC objective written out literally: every (group, slot) row of a dense
    ``[sum L, T, P]`` tensor holds the mapped observations, ``B`` marks the observed ones.
    The normalizers are always detached; the targets unless ``detach_targets`` is False."""
    rows, marks, reg = [], [], 0.0
    for x, d, length, s, t in zip(samples, dilations, lengths, scales, shifts):
        x = torch.as_tensor(np.asarray(x), dtype=dtype).reshape(x.shape[0], length, -1) - global_min
        mapped = s[:, None, None] * x + t[:, None, None]
        for j in range(length):
            frames = torch.arange(x.shape[0]) + j * d
            rows.append(torch.zeros(num_frames, x.shape[-1], dtype=dtype).index_copy(0, frames, mapped[:, j]))
            marks.append(torch.zeros(num_frames, 1, dtype=dtype).index_fill(0, frames, 1.0))
        reg = reg + 0.1 * torch.relu(1 - s).pow(2).mean() + 10 * t.pow(2).mean()
    m, b = torch.stack(rows), torch.stack(marks)
    m_depth = m.clamp(min=1e-3).reciprocal() * b
    target, target_depth = m.sum(0) / b.sum(0), m_depth.sum(0) / b.sum(0)
    a, a_depth = target.detach().abs().mean(-1, keepdim=True), target_depth.detach().abs().mean(-1, keepdim=True)
    if detach_targets:
        target, target_depth = target.detach(), target_depth.detach()
    return ((m - target) * b / a).abs().mean() + ((m_depth - target_depth) * b / a_depth).abs().mean() + reg


def random_samples(num_frames, dilations, lengths, shape=(4, 5), seed=0):
    rng = np.random.default_rng(seed)
    return [rng.uniform(-0.5, 1.5, (num_frames - (n - 1) * d, n) + shape).astype(np.float32)
            for d, n in zip(dilations, lengths)]


def test_sample_pixels_is_the_spec_grid():
    x = np.arange(432 * 768, dtype=np.float32).reshape(1, 432, 768)
    sampled = sample_pixels(x)
    assert sampled.shape == (1, 43, 77)
    np.testing.assert_array_equal(sampled, x[:, 2:-2, 2:-2][:, ::10, ::10])


@pytest.mark.parametrize("budget", [1 << 30, 4096])
@pytest.mark.parametrize("grad", ["detached", "coupled"])
def test_loss_and_gradient_match_dense_evaluation(grad, budget):
    """Groups with different snippet lengths; edges where a group misses frames; streamed too."""
    dilations, lengths, num_frames = (1, 3, 5), (3, 2, 4), 23
    samples = random_samples(num_frames, dilations, lengths)
    global_min = min(float(x.min()) for x in samples) - 0.01
    graph = SnippetGraph(dilations, lengths, num_frames)
    rng = np.random.default_rng(1)
    k = graph.num_snippets
    theta = np.concatenate([rng.uniform(0.7, 1.5, k), rng.uniform(-0.2, 0.2, k)])
    obs = Observations(samples, graph, global_min, budget)
    value, gradient = evaluate(obs, theta, 1.0, grad)

    params = [torch.tensor(p, requires_grad=True) for p in graph.split(theta[:k]) + graph.split(theta[k:])]
    dense = dense_objective(samples, dilations, lengths, num_frames, global_min, params[:3], params[3:],
                            detach_targets=grad == "detached")
    dense.backward()
    dense_grad = torch.cat([p.grad for p in params]).numpy()
    assert value == pytest.approx(dense.item(), rel=1e-6)
    np.testing.assert_allclose(gradient, dense_grad, rtol=0, atol=1e-4 * np.abs(dense_grad).max())
    public = objective(samples, dilations, lengths, num_frames, global_min, graph.split(theta[:k]),
                       graph.split(theta[k:]), memory_budget=budget)
    assert public == pytest.approx(dense.item(), rel=1e-6)


def test_reference_follows_dense_adam():
    """The reference solver is Adam(lr 1e-3, betas (0.5, 0.9)) on the detached dense loss, float32."""
    dilations, lengths, num_frames, steps = (1, 3), (3, 2), 12, 60
    samples = random_samples(num_frames, dilations, lengths, shape=(2, 3), seed=2)
    global_min = min(float(x.min()) for x in samples)
    params = [torch.ones(x.shape[0], requires_grad=True) for x in samples]
    params += [torch.zeros(x.shape[0], requires_grad=True) for x in samples]
    optimizer = torch.optim.Adam(params, lr=1e-3, betas=(0.5, 0.9))
    history = []
    for _ in range(steps):
        optimizer.zero_grad()
        loss = dense_objective(samples, dilations, lengths, num_frames, global_min, params[:2], params[2:],
                               dtype=torch.float32)
        loss.backward()
        history.append(loss.item())
        optimizer.step()
    result = solve(samples, dilations, lengths, num_frames, global_min, solver="reference", max_iter=steps)
    assert result.iterations == steps and result.solver == "reference"
    np.testing.assert_allclose(result.loss_history, history, rtol=1e-4)
    np.testing.assert_allclose(np.concatenate(result.scales + result.shifts),
                               torch.cat(params).detach().numpy(), atol=2e-4)


@pytest.mark.parametrize("dilations", [(1, 10), (1, 4, 12)])
def test_fast_beats_reference_on_synthetic_video(dilations):
    """Acceptance: lower SPEC objective and no worse AbsRel after merging and one affine fit."""
    case = make_synthetic_case(40, 48, 48, list(dilations), seed=0)
    results = {solver: align(case.snippets, dilations, solver=solver) for solver in ("fast", "reference")}
    assert results["reference"].iterations == ADAM_STEPS
    assert results["fast"].iterations < 100
    assert results["fast"].objective <= results["reference"].objective
    absrel = {name: absrel_after_affine(merge_in_memory(case.snippets, dilations, r), case.gt)
              for name, r in results.items()}
    assert absrel["fast"] <= absrel["reference"]
    assert absrel["fast"] < 0.7 * absrel_after_affine(  # far better than leaving the snippets unaligned
        merge_in_memory(case.snippets, dilations, unaligned(results["fast"])), case.gt)


def unaligned(result):
    """``result`` with every snippet left as it is (scale 1, shift 0)."""
    return coalign.AlignResult([np.ones_like(s) for s in result.scales], [np.zeros_like(t) for t in result.shifts],
                               result.global_min, 0.0, 0, np.zeros(0), "none")


def test_merge_of_true_parameters_recovers_ground_truth():
    case = make_synthetic_case(30, 40, 40, [1, 5], seed=3, noise=0.0, outlier_frac=0.0)
    global_min = min(float(x.min()) for x in case.snippets)
    scales = [1.0 / s for s in case.scales]
    truth = coalign.AlignResult(scales, [s * (global_min - t) for s, t in zip(scales, case.shifts)], global_min,
                                0.0, 0, np.zeros(0), "truth")
    np.testing.assert_allclose(merge_in_memory(case.snippets, [1, 5], truth), case.gt, atol=1e-5)
    assert absrel_after_affine(merge_in_memory(case.snippets, [1, 5], truth), case.gt) < 1e-4


def constant(num_frames, dilation, length, value, shape=(12, 12)):
    return np.full((num_frames - (length - 1) * dilation, length) + shape, value, np.float32)


DEGENERATE = {
    "one frame, L=1": ([constant(1, 1, 1, 0.2) + np.eye(12, dtype=np.float32)], [1]),
    "two frames, L=2": (random_samples(2, [1], [2], (12, 12)), [1]),
    "three frames, L=3": (random_samples(3, [1], [3], (12, 12)), [1]),
    "three frames, two groups": (random_samples(3, [1, 2], [2, 2], (12, 12)), [1, 2]),
    "frames no group observes": (random_samples(10, [6], [2], (12, 12)), [6]),
    "different lengths": (random_samples(20, [1, 4, 5], [3, 2, 4], (22, 22)), [1, 4, 5]),
    "all snippets equal": ([constant(12, 1, 3, 0.3), constant(12, 3, 3, 0.3)], [1, 3]),
    "each snippet constant": ([np.tile(random_samples(10, [1], [1], (1, 1))[0], (1, 3, 12, 12)),
                               random_samples(12, [1], [1], (12, 12))[0]], [1, 1]),
}


@pytest.mark.parametrize("solver", ["fast", "reference"])
@pytest.mark.parametrize("name", list(DEGENERATE))
def test_degenerate_inputs_give_finite_results(name, solver):
    snippets, dilations = DEGENERATE[name]
    result = align(snippets, dilations, solver=solver, max_iter=None if solver == "fast" else 50)
    values = np.concatenate(result.scales + result.shifts + [result.loss_history])
    assert np.isfinite(values).all() and np.isfinite(result.objective)
    assert [len(s) for s in result.scales] == [len(x) for x in snippets]
    samples = [sample_pixels(x) for x in snippets]
    recomputed = objective(samples, dilations, [x.shape[1] for x in snippets],
                           coalign.frames_from_shapes([x.shape for x in snippets], dilations), result.global_min,
                           result.scales, result.shifts)
    assert recomputed == pytest.approx(result.objective, rel=1e-6, abs=1e-9)
    single_observation = name in ("one frame, L=1", "two frames, L=2", "three frames, L=3",
                                  "frames no group observes")
    if single_observation or name == "all snippets equal":  # nothing to align: zero data term
        assert result.objective == pytest.approx(0.0, abs=1e-9)
    if single_observation and solver == "fast":
        np.testing.assert_allclose(np.concatenate(result.scales), 1.0)
        np.testing.assert_allclose(np.concatenate(result.shifts), 0.0, atol=1e-12)


class CountingArray:
    """Array-like over a numpy array that records the size of every slice read."""

    def __init__(self, data):
        self.data, self.reads = data, []
        self.shape = data.shape

    def __getitem__(self, index):
        out = self.data[index]
        self.reads.append(out.nbytes)
        return out


def test_streaming_from_zarr_under_a_budget_matches_in_memory(monkeypatch):
    monkeypatch.setattr(observations, "WINDOW_VALUES", 1 << 15)  # 4-frame windows: a small budget still streams
    dilations, num_frames = [1, 3, 5], 150
    case = make_synthetic_case(num_frames, 302, 302, dilations, seed=4, sampled_only=True)  # 30x30: coarse level too
    global_min = min(float(x.min()) for x in case.snippets)
    before = [x.copy() for x in case.snippets]
    args = (dilations, case.lengths, num_frames, global_min)
    in_memory = solve(case.snippets, *args)
    for x, y in zip(case.snippets, before):  # the caller's arrays are never modified
        np.testing.assert_array_equal(x, y)

    stores = []
    for x in case.snippets:
        arr = zarr.create_array(store=zarr.storage.MemoryStore(), shape=x.shape, chunks=(8,) + x.shape[1:],
                                dtype="float32")
        arr[:] = x
        stores.append(arr)
    budget = 8 << 20  # the samples take 4.9 MB: re-read in chunks on every pass, never kept
    streamed = solve(stores, *args, memory_budget=budget)
    assert streamed.objective == in_memory.objective  # the same windows, so the same float sums
    np.testing.assert_array_equal(np.concatenate(streamed.scales), np.concatenate(in_memory.scales))

    counting = [CountingArray(x) for x in case.snippets]
    solve(counting, *args, memory_budget=budget)
    reads = [n for arr in counting for n in arr.reads]
    assert len(reads) > 20 * len(counting) and max(reads) <= budget // 16


def test_invalid_inputs_raise():
    samples = random_samples(10, [1, 2], [3, 3])
    with pytest.raises(ValueError, match="different video lengths"):
        align([np.zeros((10, 3, 8, 8)), np.zeros((9, 3, 8, 8))], [1, 1])
    with pytest.raises(ValueError, match="unknown co-alignment solver"):
        solve(samples, [1, 2], [3, 3], 10, 0.0, solver="adam")
    with pytest.raises(ValueError, match="samples\\[1\\] has shape"):
        solve(samples, [1, 3], [3, 3], 10, 0.0)
