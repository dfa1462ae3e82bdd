"""Cross-frame attention on the diffusers token layout, with backend dispatch.

Tensors arrive as the diffusers ``Attention`` projections produce them:
``q`` is ``(b*L, n_q, heads*d)``, ``k`` and ``v`` are ``(b*L, n_kv, heads*d)``,
where ``L`` (``frames``) consecutive rows belong to one snippet.  With
``frames=L`` the L frames of a snippet attend jointly over ``L*n_kv`` keys
(the RollingDepth self-attention); with ``frames=1`` every row attends alone
(per-frame cross-attention).  The output has the layout of ``q``.

Backends: ``sdpa`` (torch SDPA after reshapes and head transposes; runs
everywhere), ``triton`` (the fused kernel of ``kernels.triton_attention``,
which reads the layout in place) and ``auto`` (triton for fp16/bf16/fp32
CUDA tensors when triton is installed, sdpa otherwise).  Triton serves every
call it is given, including per-frame cross-attention with ``n_kv=2`` text
tokens.  On CPU, ``triton`` runs only in the Triton interpreter, which must be
switched on with ``TRITON_INTERPRET=1`` in the environment *before the process
starts* (triton reads it when it is first imported, and torch or diffusers may
import it early); ``auto`` never picks it there.  Triton is imported only
when the triton backend is asked for.
"""

from __future__ import annotations

import functools
import importlib.util

import torch
import torch.nn.functional as F

BACKENDS = ("auto", "triton", "sdpa")
#: Input dtypes the Triton kernel accepts.
TRITON_DTYPES = (torch.float16, torch.bfloat16, torch.float32)


def sdpa_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int, frames: int,
                   scale: float) -> torch.Tensor:
    """Joint attention via torch SDPA, including the reshapes and head transposes it needs."""
    rows, n_q, width = q.shape
    b, d = rows // frames, width // heads
    n_kv = k.shape[1]
    qh = q.reshape(b, frames * n_q, heads, d).transpose(1, 2)
    kh = k.reshape(b, frames * n_kv, heads, d).transpose(1, 2)
    vh = v.reshape(b, frames * n_kv, heads, d).transpose(1, 2)
    out = F.scaled_dot_product_attention(qh, kh, vh, scale=scale)
    return out.transpose(1, 2).reshape(rows, n_q, width)


@functools.cache
def _triton_installed() -> bool:
    return importlib.util.find_spec("triton") is not None


def _triton_interpreter_on() -> bool:
    """Whether triton runs in its interpreter (TRITON_INTERPRET, read exactly as triton reads it)."""
    from triton import knobs

    return bool(knobs.runtime.interpret)


def resolve_backend(backend: str, device: torch.device | str, dtype: torch.dtype | None = None) -> str:
    """The concrete backend, ``"triton"`` or ``"sdpa"``, that ``backend`` means for tensors on ``device``.

    ``dtype`` (optional) is the tensor dtype: ``auto`` falls back to sdpa for dtypes the kernel
    lacks.  Raises ``ValueError`` for an unknown name, or for ``triton`` where it cannot run
    (no triton package, unsupported dtype, or a non-CUDA device without the interpreter).
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown attention backend {backend!r}; choose one of {BACKENDS}")
    on_cuda = torch.device(device).type == "cuda"
    dtype_ok = dtype is None or dtype in TRITON_DTYPES
    if backend == "sdpa":
        return "sdpa"
    if backend == "auto":
        return "triton" if on_cuda and dtype_ok and _triton_installed() else "sdpa"
    if not _triton_installed():
        raise ValueError("attention backend 'triton' needs the triton package: pip install 'rdengine[cuda]' "
                         "(or use 'sdpa')")
    if not dtype_ok:
        raise ValueError(f"attention backend 'triton' supports {TRITON_DTYPES}, not {dtype}; use 'sdpa'")
    if not on_cuda and not _triton_interpreter_on():
        raise ValueError(f"attention backend 'triton' on {device} needs the Triton interpreter: set "
                         "TRITON_INTERPRET=1 in the environment before starting the process, or use 'sdpa'")
    return "triton"


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int, frames: int, scale: float,
              backend: str = "auto") -> torch.Tensor:
    """Joint attention of the ``frames`` rows of each snippet; see the module docstring for layouts.

    q: (b*L, n_q, heads*d); k, v: (b*L, n_kv, heads*d); scale: softmax scale (usually d**-0.5).
    Returns (b*L, n_q, heads*d) in the dtype of ``q``.
    """
    if resolve_backend(backend, q.device, q.dtype) == "triton":
        from .triton_attention import flash_attention

        return flash_attention(q, k, v, heads, frames, scale)
    return sdpa_attention(q, k, v, heads, frames, scale)
