"""Fused Triton flash-attention forward on the diffusers token layout.

``q`` is ``(b*L, n_q, heads*d)``, ``k`` and ``v`` are ``(b*L, n_kv, heads*d)``;
the ``L`` consecutive rows of a snippet attend jointly over its ``L*n_kv`` keys
(``L = frames``; ``frames=1`` is plain per-row attention).  The kernel reads
the heads and frames in place through strides and writes the output in the
layout of ``q`` (contiguous), so neither joining frames nor splitting heads
costs a copy.  Online softmax with fp32 accumulation, no mask, non-causal;
fp16, bf16 and fp32 inputs; any head dim (the head-dim block is padded to a
power of two and masked) and any token count (tails are masked).

Importing this module imports triton.  Triton (3.x) decides compiled or
interpreted when a function is decorated with ``@triton.jit``: its own
``triton.language`` helpers when triton is first imported (torch and diffusers
may import it early), this kernel when this module is imported.  So
``TRITON_INTERPRET=1`` must be in the environment before the process starts;
importing this module raises ``ImportError`` if it was set too late.  The
interpreter runs the same kernel on CPU tensors (slowly) and picks its launch
config from the sequence length instead of autotuning.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .attention import TRITON_DTYPES

#: True when the kernel was built for the Triton interpreter (TRITON_INTERPRET=1 at import).
INTERPRETED: bool = bool(triton.knobs.runtime.interpret)
if INTERPRETED and isinstance(tl.cdiv, triton.JITFunction):
    raise ImportError("TRITON_INTERPRET=1 was set after triton was imported, so triton.language is compiled "
                      "and cannot be interpreted; set it in the environment before the process starts")

_LOG2E = 1.4426950408889634


def _configs() -> list[triton.Config]:
    """Launch configs: an Ampere/Hopper sweep (block sizes, warps, pipeline stages) to autotune over;
    in the interpreter, square blocks of 32/128/512 of which ``_prune`` keeps exactly one."""
    if INTERPRETED:
        return [triton.Config({"BLOCK_M": b, "BLOCK_N": b}, num_warps=4, num_stages=1) for b in (32, 128, 512)]
    sweep = [
        (64, 32, 4, 3), (64, 64, 4, 2), (64, 64, 4, 3), (64, 64, 4, 4),
        (128, 32, 4, 3), (128, 64, 4, 3), (128, 64, 8, 3), (128, 64, 8, 4),
        (128, 128, 8, 2), (128, 128, 8, 3),
    ]
    return [triton.Config({"BLOCK_M": m, "BLOCK_N": n}, num_warps=w, num_stages=s) for m, n, w, s in sweep]


def _prune(configs: list[triton.Config], named_args: dict, **kwargs) -> list[triton.Config]:
    """Drop configs whose query block exceeds the query sequence rounded up to a power of two.

    In the interpreter keep only the largest remaining config: no timing runs, and since the
    interpreter pays per block operation, not per element, the biggest fitting block is fastest.
    """
    q_block = max(16, triton.next_power_of_2(named_args["q_len"]))
    kept = [c for c in configs if c.kwargs["BLOCK_M"] <= q_block] or configs[:1]
    return [max(kept, key=lambda c: c.kwargs["BLOCK_M"])] if INTERPRETED else kept


@triton.autotune(configs=_configs(), key=["HEAD_DIM", "q_len", "kv_len", "kv_seqs"],
                 prune_configs_by={"early_config_prune": _prune})
@triton.jit
def _flash_fwd(
    Q, K, V, O,
    qk_scale, heads, q_len, kv_len, kv_seqs, q_group,
    stride_qs, stride_qn, stride_qc,
    stride_ks, stride_kf, stride_kn, stride_kc,
    stride_vs, stride_vf, stride_vn, stride_vc,
    stride_os, stride_on, stride_oc,
    HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, DOT_F32: tl.constexpr, PRECISION: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
):
    """One program: BLOCK_M queries of one query sequence and one head, against all keys of its snippet.

    Query sequence ``seq`` is ``q_len`` tokens at stride ``stride_qn`` from ``seq * stride_qs``;
    ``q_group`` consecutive query sequences share one snippet.  The keys of snippet ``g`` are
    ``kv_seqs`` sequences (``stride_kf`` apart) of ``kv_len`` tokens from ``g * stride_ks``; values
    alike.  Channels of head ``h`` are ``h*HEAD_DIM ..``, padded to ``BLOCK_D`` and masked.
    ``qk_scale`` is the softmax scale times log2(e) (the kernel uses exp2).  ``PRECISION`` is
    "ieee" for fp32 inputs (no TF32).  ``DOT_F32`` feeds the dots fp32 copies of bf16 operands
    (exact; p is still rounded to bf16 first): the Triton 3.x interpreter multiplies bf16 as raw
    uint16 bits, so it is set only there.
    """
    pid = tl.program_id(0)
    num_m = tl.cdiv(q_len, BLOCK_M)
    m_block = pid % num_m
    head = (pid // num_m) % heads
    seq = pid // (num_m * heads)
    snippet = seq // q_group

    offs_m = m_block * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, BLOCK_D)
    mask_m = offs_m < q_len
    mask_d = offs_d < HEAD_DIM
    chan = head * HEAD_DIM + offs_d

    q_ptrs = Q + seq.to(tl.int64) * stride_qs + offs_m[:, None] * stride_qn + chan[None, :] * stride_qc
    q = tl.load(q_ptrs, mask=mask_m[:, None] & mask_d[None, :], other=0.0)
    if DOT_F32:
        q = q.to(tl.float32)

    m_i = tl.full([BLOCK_M], float("-inf"), tl.float32)
    l_i = tl.zeros([BLOCK_M], tl.float32)
    acc = tl.zeros([BLOCK_M, BLOCK_D], tl.float32)

    for f in range(kv_seqs):
        k_base = K + snippet.to(tl.int64) * stride_ks + f * stride_kf + chan * stride_kc
        v_base = V + snippet.to(tl.int64) * stride_vs + f * stride_vf + chan * stride_vc
        for start in range(0, kv_len, BLOCK_N):
            offs_n = start + tl.arange(0, BLOCK_N)
            mask_n = offs_n < kv_len
            kt = tl.load(k_base[:, None] + offs_n[None, :] * stride_kn,
                         mask=mask_d[:, None] & mask_n[None, :], other=0.0)
            v = tl.load(v_base[None, :] + offs_n[:, None] * stride_vn,
                        mask=mask_n[:, None] & mask_d[None, :], other=0.0)
            if DOT_F32:
                kt = kt.to(tl.float32)
            s = tl.dot(q, kt, input_precision=PRECISION) * qk_scale
            s = tl.where(mask_n[None, :], s, float("-inf"))
            m_new = tl.maximum(m_i, tl.max(s, 1))
            p = tl.exp2(s - m_new[:, None])
            alpha = tl.exp2(m_i - m_new)
            l_i = l_i * alpha + tl.sum(p, 1)
            p = p.to(v.dtype)
            if DOT_F32:
                p = p.to(tl.float32)
                v = v.to(tl.float32)
            acc = acc * alpha[:, None] + tl.dot(p, v, input_precision=PRECISION)
            m_i = m_new

    out = acc / l_i[:, None]
    o_ptrs = O + seq.to(tl.int64) * stride_os + offs_m[:, None] * stride_on + chan[None, :] * stride_oc
    tl.store(o_ptrs, out.to(O.dtype.element_ty), mask=mask_m[:, None] & mask_d[None, :])


def _joinable(x: torch.Tensor) -> bool:
    """Whether the rows of ``x`` (rows, n, c) follow each other in memory, so L rows view as one sequence."""
    return x.stride(0) == x.shape[1] * x.stride(1)


def flash_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int, frames: int,
                    scale: float) -> torch.Tensor:
    """Joint cross-frame attention, fused; same contract as ``kernels.attention.sdpa_attention``.

    q: (b*L, n_q, heads*d); k, v: (b*L, n_kv, heads*d), any strides; L = ``frames``.
    scale: softmax scale (usually d**-0.5).  Returns a new contiguous (b*L, n_q, heads*d)
    tensor in the dtype of ``q``.  Rows that are adjacent in memory are read as one joint
    sequence; otherwise the kernel loops over the L frames, so every stride pattern works.
    """
    rows, n_q, width = q.shape
    n_kv = k.shape[1]
    if q.dtype not in TRITON_DTYPES or k.dtype != q.dtype or v.dtype != q.dtype:
        raise TypeError(f"q, k, v must share one dtype of {TRITON_DTYPES}; got {q.dtype}, {k.dtype}, {v.dtype}")
    if k.shape != v.shape or k.shape[0] != rows or k.shape[2] != width:
        raise ValueError(f"shapes do not match: q {tuple(q.shape)}, k {tuple(k.shape)}, v {tuple(v.shape)}")
    if width % heads or rows % frames or n_q == 0 or n_kv == 0:
        raise ValueError(f"bad shape {tuple(q.shape)} / kv tokens {n_kv} for heads={heads}, frames={frames}")
    if not (q.is_cuda or INTERPRETED):
        raise ValueError("the Triton kernel needs a CUDA tensor, or TRITON_INTERPRET=1 set before "
                         "rdengine.kernels.triton_attention is imported (best: before the process starts)")
    head_dim = width // heads
    out = torch.empty((rows, n_q, width), device=q.device, dtype=q.dtype)

    q_join = _joinable(q)
    q_group = 1 if q_join else frames
    q_len = n_q * frames if q_join else n_q
    seq_q = q.stride(0) * (frames if q_join else 1)
    seq_o = out.stride(0) * (frames if q_join else 1)
    kv_join = _joinable(k) and _joinable(v)
    kv_seqs = 1 if kv_join else frames
    kv_len = n_kv * frames if kv_join else n_kv
    num_seqs = rows // frames if q_join else rows

    def grid(meta: dict) -> tuple[int]:
        return (triton.cdiv(q_len, meta["BLOCK_M"]) * heads * num_seqs,)

    _flash_fwd[grid](
        q, k, v, out,
        scale * _LOG2E, heads, q_len, kv_len, kv_seqs, q_group,
        seq_q, q.stride(1), q.stride(2),
        k.stride(0) * frames, k.stride(0), k.stride(1), k.stride(2),
        v.stride(0) * frames, v.stride(0), v.stride(1), v.stride(2),
        seq_o, out.stride(1), out.stride(2),
        HEAD_DIM=head_dim, BLOCK_D=max(16, triton.next_power_of_2(head_dim)),
        DOT_F32=INTERPRETED and q.dtype == torch.bfloat16,
        PRECISION="ieee" if q.dtype == torch.float32 else "tf32",  # 16-bit dots ignore it
    )
    return out
