"""The fused Triton attention kernel (run in the Triton interpreter on CPU) and the backend dispatch.

TRITON_INTERPRET: triton 3.x decides compiled-or-interpreted when ``@triton.jit`` decorates a
function, and ``triton.language``'s own helpers are decorated when triton is first imported, which
torch/diffusers (and so this suite's conftest) do early.  The variable therefore has to be set
before the process starts.  Tests that run the kernel are marked ``interpreted``: in a plain pytest
run they are skipped and ``test_interpreted_run`` runs this file again in a fresh process started
with TRITON_INTERPRET=1 (where they run); ``TRITON_INTERPRET=1 pytest ...`` runs them directly.
The dispatch tests need no kernel and run in both.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from rdengine.engine.cross_frame_attention import install_cross_frame_attention
from rdengine.engine.config import ExecutionOptions, resolve_config
from rdengine.engine.pipeline import process_video
from rdengine.engine.testing.random_checkpoint import build_unet
from rdengine.kernels.attention import _triton_interpreter_on, attention, resolve_backend, sdpa_attention

TRITON = importlib.util.find_spec("triton") is not None  # imported only where installed
needs_triton = pytest.mark.skipif(not TRITON, reason="triton is not installed")
INTERPRETER = TRITON and _triton_interpreter_on()
interpreted = pytest.mark.skipif(not INTERPRETER, reason="runs the Triton kernel; test_interpreted_run runs "
                                                        "it in a process started with TRITON_INTERPRET=1")

# Bounds on max|out - ref| / max|ref| against a float64 reference on the same (rounded) inputs.
# fp16/bf16: the kernel rounds the softmax weights p to the input dtype before the PV product and
# rounds the output, each a relative error of at most eps/2 (eps = 2**-10 fp16, 2**-7 bf16), so
# the bound is 2*eps (2x headroom).  fp32: both dots are IEEE fp32 with fp32 accumulation over up to
# 15,552 keys; 1e-5 is ~80 fp32 eps, far below any layout or masking bug (those are O(1)).
TOL = {torch.float32: 1e-5, torch.float16: 2 * 2.0**-10, torch.bfloat16: 2 * 2.0**-7}
DTYPES = list(TOL)
# A sharper softmax than d**-0.5 on unit-normal inputs (logit std ~2.4 for d=64), so the output
# depends on few keys and a wrong key, mask or running-max rescale shows up at O(1).
SHARP = 0.3
# fp32 UNet outputs, triton vs sdpa: the attention outputs agree to ~1e-6 and a tiny UNet amplifies
# that by far less than 100x; joining frames or not changes the output by > 100x this.
UNET_TOL = 1e-4
# Pipeline depth (normalized to [-1, 1]), triton vs sdpa in fp32: measured 2.6e-5 (co-alignment and
# the min/max normalization pass the ~1e-6 UNet differences on smoothly); 5e-4 is 0.025% of the range.
DEPTH_TOL = 5e-4


@pytest.mark.slow
@needs_triton
@pytest.mark.skipif(INTERPRETER, reason="this process already runs the interpreter")
def test_interpreted_run():
    """Run this file in a fresh process started with TRITON_INTERPRET=1; every test there must pass."""
    this = Path(__file__).resolve()
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(this), "-k", "not test_interpreted_run"],
        cwd=this.parents[1], env={**os.environ, "TRITON_INTERPRET": "1"}, capture_output=True, text=True,
        timeout=900)
    summary = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else ""
    assert result.returncode == 0, result.stdout[-20000:] + result.stderr[-5000:]
    assert re.search(r"\d+ passed", summary) and "skipped" not in summary, summary


@pytest.fixture(scope="module")
def kernel():
    """The kernel module (importable in an interpreter process only when it started so)."""
    from rdengine.kernels import triton_attention

    assert triton_attention.INTERPRETED
    return triton_attention


def reference(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int, frames: int, scale: float,
              chunk: int = 2048) -> torch.Tensor:
    """Float64 joint attention written out with einsum and softmax, in query chunks to bound memory."""
    rows, n_q, width = q.shape
    b, d = rows // frames, width // heads
    qh, kh, vh = (x.double().reshape(b, -1, heads, d) for x in (q, k, v))
    chunks = []
    for i in range(0, qh.shape[1], chunk):
        weights = torch.einsum("bqhc,bkhc->bhqk", qh[:, i:i + chunk], kh).mul(scale).softmax(-1)
        chunks.append(torch.einsum("bhqk,bkhd->bqhd", weights, vh))
    return torch.cat(chunks, dim=1).reshape(rows, n_q, width)


def exact_inputs(*shape: int, generator: torch.Generator) -> torch.Tensor:
    """Unit-normal fp32 values that fp16, bf16 and fp32 all hold exactly (bf16 mantissa, fp16 normal range)."""
    x = torch.randn(*shape, generator=generator).bfloat16().float()
    return torch.where(x.abs() < 2.0**-14, torch.zeros_like(x), x)


def qkv(rows: int, n_q: int, n_kv: int, width: int, seed: int = 0) -> tuple[torch.Tensor, ...]:
    """fp32 q (rows, n_q, width) and k, v (rows, n_kv, width) from ``exact_inputs``."""
    g = torch.Generator().manual_seed(seed)
    return exact_inputs(rows, n_q, width, generator=g), *(exact_inputs(rows, n_kv, width, generator=g)
                                                          for _ in range(2))


def relative_error(out: torch.Tensor, ref: torch.Tensor) -> float:
    """max|out - ref| / max|ref|, in float64."""
    return ((out.double() - ref).abs().max() / ref.abs().max()).item()


# (rows = b*L, n_q, n_kv, heads, head_dim, L): 3*7*11 tokens with head dims 40/32/64, a batch of two
# snippets, fewer keys than queries, a tiny head dim, and per-frame rows (L=1).
SHAPES = [
    (3, 77, 77, 2, 40, 3),
    (6, 77, 77, 3, 32, 3),
    (3, 77, 77, 1, 64, 3),
    (6, 50, 21, 2, 16, 3),
    (4, 9, 9, 2, 8, 2),
    (5, 13, 2, 2, 8, 1),
]


@interpreted
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_kernel_matches_float64(kernel, shape, dtype):
    rows, n_q, n_kv, heads, d, frames = shape
    q, k, v = (x.to(dtype) for x in qkv(rows, n_q, n_kv, heads * d))
    out = kernel.flash_attention(q, k, v, heads, frames, SHARP)
    assert out.shape == q.shape and out.dtype == dtype and out.is_contiguous()
    assert relative_error(out, reference(q, k, v, heads, frames, SHARP)) <= TOL[dtype]


@pytest.fixture(scope="module")
def big_snippet() -> tuple[tuple[torch.Tensor, ...], torch.Tensor]:
    """A 768x432 first-level snippet, one head of 64, and its float64 reference.

    Keys: 3 frames x 54*96 tokens, the full 15,552-token joint sequence the online softmax streams
    through (block tails, blocks across frame boundaries).  Queries: every 48th token of each frame
    and its last 32 (420 in all): the interpreter cannot afford all 15,552 in CI, and the query
    side has no length-dependent logic that the other tests do not cover.
    """
    n = 54 * 96
    q, k, v = qkv(3, n, n, 64, seed=1)
    q = q[:, torch.cat([torch.arange(0, n - 32, 48), torch.arange(n - 32, n)])]
    return (q, k, v), reference(q, k, v, 1, 3, SHARP)


@interpreted
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_kernel_full_size_snippet(kernel, big_snippet, dtype):
    (q, k, v), ref = big_snippet
    out = kernel.flash_attention(q.to(dtype), k.to(dtype), v.to(dtype), 1, 3, SHARP)
    assert relative_error(out, ref) <= TOL[dtype]


@interpreted
def test_strided_layouts(kernel):
    """Slices of a fused qkv projection (rows joinable), frame-major storage and broadcast keys (not)."""
    rows, n, heads, d, frames = 3, 600, 1, 16, 3
    q, k, v = qkv(rows, n, n, heads * d)
    ref = reference(q, k, v, heads, frames, SHARP)
    fused = torch.cat([q, k, v], dim=2)
    sliced = fused[..., :d], fused[..., d:2 * d], fused[..., 2 * d:]
    token_major = tuple(x.transpose(0, 1).contiguous().transpose(0, 1) for x in (q, k, v))
    for layout in (sliced, token_major):
        assert relative_error(kernel.flash_attention(*layout, heads, frames, SHARP), ref) <= TOL[torch.float32]
    k1, v1 = k[:1].expand(rows, -1, -1), v[:1].expand(rows, -1, -1)
    out = kernel.flash_attention(q, k1, v1, heads, frames, SHARP)
    assert relative_error(out, reference(q, k1, v1, heads, frames, SHARP)) <= TOL[torch.float32]


@interpreted
def test_joint_and_per_frame_differ(kernel):
    """Joining frames changes the output at O(1), far above every tolerance, so a lost frame fails."""
    q, k, v = qkv(3, 77, 77, 64)
    joint = kernel.flash_attention(q, k, v, 1, 3, SHARP)
    assert relative_error(joint, reference(q, k, v, 1, 1, SHARP)) > 10 * max(TOL.values())


@interpreted
def test_kernel_rejects_bad_input(kernel):
    q, k, v = qkv(3, 8, 8, 32)
    with pytest.raises(TypeError, match="dtype"):
        kernel.flash_attention(q, k.half(), v, 2, 3, SHARP)
    with pytest.raises(ValueError, match="heads"):
        kernel.flash_attention(q, k, v, 5, 3, SHARP)


@pytest.mark.parametrize(("backend", "device", "dtype", "expected"), [
    ("auto", "cpu", torch.float16, "sdpa"),
    pytest.param("auto", "cuda", torch.float16, "triton", marks=needs_triton),
    ("auto", "cuda", torch.float64, "sdpa"),
    ("sdpa", "cuda", None, "sdpa"),
    pytest.param("triton", "cuda", torch.bfloat16, "triton", marks=needs_triton),
    pytest.param("triton", "cpu", torch.float32, "triton", marks=needs_triton),
])
def test_resolve_backend(monkeypatch, backend, device, dtype, expected):
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    assert resolve_backend(backend, device, dtype) == expected


@needs_triton
def test_resolve_backend_errors(monkeypatch):
    with pytest.raises(ValueError, match="unknown"):
        resolve_backend("flash", "cuda")
    with pytest.raises(ValueError, match="float64"):
        resolve_backend("triton", "cuda", torch.float64)
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    with pytest.raises(ValueError, match="TRITON_INTERPRET=1"):
        resolve_backend("triton", "cpu")
    q, k, v = qkv(3, 8, 8, 32)
    with pytest.raises(ValueError, match="TRITON_INTERPRET=1"):
        attention(q, k, v, heads=2, frames=3, scale=SHARP, backend="triton")


def test_dispatch_auto_on_cpu_is_sdpa():
    q, k, v = qkv(6, 20, 20, 32)
    expected = sdpa_attention(q, k, v, 2, 3, SHARP)
    assert torch.equal(attention(q, k, v, heads=2, frames=3, scale=SHARP), expected)
    assert relative_error(expected, reference(q, k, v, 2, 3, SHARP)) <= TOL[torch.float32]


@pytest.mark.parametrize("backend", ["sdpa", pytest.param("triton", marks=interpreted)])
def test_dispatch_cross_attention_to_text_tokens(backend):
    """attn2: every frame alone (frames=1) against the 2 tokens of the empty-prompt embedding."""
    q, k, v = qkv(6, 40, 2, 64)
    out = attention(q, k, v, heads=2, frames=1, scale=SHARP, backend=backend)
    assert relative_error(out, reference(q, k, v, 2, 1, SHARP)) <= TOL[torch.float32]


@interpreted
def test_unet_forward_triton_matches_sdpa():
    """A tiny random SD2-shaped UNet with the cross-frame processors: triton (interpreted) == sdpa."""
    torch.manual_seed(0)
    unet = build_unet("tiny").eval()
    frames = 3
    sample = torch.randn(frames, 8, 8, 12)
    text = torch.randn(1, 2, unet.config.cross_attention_dim).expand(frames, -1, -1)
    timestep = torch.full((frames,), 999)

    def forward(backend: str, joined: int) -> torch.Tensor:
        install_cross_frame_attention(unet, backend)
        with torch.no_grad():
            return unet(sample, timestep, encoder_hidden_states=text,
                        cross_attention_kwargs={"num_frames": joined}).sample

    sdpa = forward("sdpa", frames)
    assert relative_error(forward("triton", frames), sdpa.double()) <= UNET_TOL
    assert relative_error(forward("sdpa", 1), sdpa.double()) > 100 * UNET_TOL


@interpreted
def test_tiny_pipeline_triton_matches_sdpa(clip, tiny_checkpoint, tmp_path, monkeypatch, kernel):
    """Acceptance: the whole tiny pipeline with attention 'triton' (interpreted) gives the depth of 'sdpa'."""
    calls = []

    def counted(*args, **kwargs):
        calls.append(args[0].shape)
        return fused(*args, **kwargs)

    fused = kernel.flash_attention
    monkeypatch.setattr(kernel, "flash_attention", counted)
    cfg = resolve_config("fast", res=64, dilations=(1,), frames=6, dtype="fp32", checkpoint=str(tiny_checkpoint))
    depth = {}
    for backend in ("sdpa", "triton"):
        opts = ExecutionOptions(device="cpu", batch_size=4, attention=backend, save=("npy",), progress="quiet")
        depth[backend] = np.load(process_video(str(clip), tmp_path / backend, cfg, opts).outputs["npy"])
    assert calls, "the triton run never reached the kernel"
    assert depth["sdpa"].shape == (6, 48, 64)
    np.testing.assert_allclose(depth["triton"], depth["sdpa"], rtol=0, atol=DEPTH_TOL)
