"""Model loading: stock diffusers components from the hub or a local folder, on one device.

The text encoder serves one purpose, the embedding of the empty prompt; it is computed
once at load time and the encoder is dropped.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

import torch
from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel

from ..kernels.attention import resolve_backend
from ..storage.files import write_text_atomically
from .cross_frame_attention import install_cross_frame_attention
from .config import DEVICE_FORMS
from .errors import EngineError

TORCH_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}
REQUIRED_PARTS = ("unet", "vae", "scheduler", "text_encoder", "tokenizer")
CHECKPOINT_HINT = "pass a local folder in the same layout with --checkpoint PATH " \
                  "(`rdengine make-checkpoint PATH` writes a tiny random one for testing)"


@dataclass
class Model:
    """Everything the worker needs on the compute device.

    ``prompt_embedding``: ``(1, tokens, C)`` empty-prompt CLIP embedding computed in float32,
    held in the compute dtype; ``native_embedding``: the same computed in the compute dtype
    (as the published code does; the two differ only below float32).
    """

    unet: UNet2DConditionModel
    vae: AutoencoderKL
    scheduler: DDIMScheduler
    prompt_embedding: torch.Tensor
    device: torch.device
    dtype: torch.dtype
    checkpoint: str
    native_embedding: torch.Tensor | None = None
    identity: dict = dataclasses.field(default_factory=dict)
    _float32: "Model | None" = dataclasses.field(default=None, repr=False, compare=False)

    @property
    def storage_torch_dtype(self) -> torch.dtype:
        """How latents and snippet depth are kept: in the compute dtype, losslessly (bf16 as float32)."""
        return torch.float16 if self.dtype == torch.float16 else torch.float32

    @property
    def storage_dtype(self) -> str:
        return str(self.storage_torch_dtype).removeprefix("torch.")

    def in_float32(self) -> "Model":
        """A float32 copy of this model (made once), to recompute a batch fp16/bf16 cannot."""
        if self.dtype == torch.float32:
            return self
        if self._float32 is None:
            self._float32 = dataclasses.replace(
                self, unet=copy.deepcopy(self.unet).float(), vae=copy.deepcopy(self.vae).float(),
                prompt_embedding=self.prompt_embedding.float(), dtype=torch.float32,
                native_embedding=None if self.native_embedding is None else self.native_embedding.float())
        return self._float32

    def as_published(self) -> "Model":
        """This model with the empty-prompt embedding computed in the compute dtype (``--reproduce``)."""
        return dataclasses.replace(self, prompt_embedding=self.native_embedding)


def resolve_device(name: str) -> torch.device:
    """'auto' picks CUDA when present; 'cpu', 'cuda' and 'cuda:N' as asked (a missing GPU is an error)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if not re.fullmatch(r"cpu|cuda(:\d+)?", name):
        raise EngineError(f"device '{name}' is not supported: use {DEVICE_FORMS}")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise EngineError(f"device '{name}' requested but CUDA is not available on this machine (use --device cpu)")
    device = torch.device(name)
    if device.index is not None and device.index >= torch.cuda.device_count():
        raise EngineError(f"device '{name}': this machine has {torch.cuda.device_count()} GPU(s)")
    return device


def locate_checkpoint(checkpoint: str) -> Path:
    """A local folder as is, or a hub id downloaded (or found in the local cache)."""
    path = Path(checkpoint).expanduser()
    if path.is_dir():
        missing = [p for p in REQUIRED_PARTS if not (path / p).is_dir()]
        if missing:
            raise EngineError(f"checkpoint folder {path} lacks {', '.join(missing)}/: not a RollingDepth checkpoint")
        return path
    if path.exists() or checkpoint.startswith((".", "/", "~")) or checkpoint.count("/") != 1:
        raise EngineError(f"checkpoint folder not found: {checkpoint}; {CHECKPOINT_HINT}")
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(checkpoint))
    except Exception as exc:  # network, auth, missing repo: all end the same way for the user
        reason = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
        raise EngineError(f"could not load checkpoint '{checkpoint}' from the Hugging Face hub "
                          f"(hub unreachable or id not found: {reason}); {CHECKPOINT_HINT}") from None


def file_digest(path: Path, cache: dict) -> str:
    """sha256 of a file's bytes; ``cache`` maps ``path|size|mtime_ns`` to known digests."""
    stat = path.stat()
    key = f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
    if key not in cache:
        digest = hashlib.sha256()
        with path.open("rb") as f:
            while block := f.read(1 << 24):
                digest.update(block)
        cache[key] = digest.hexdigest()
    return cache[key]


def checkpoint_identity(checkpoint: str, folder: Path) -> dict:
    """What the weights are, whatever path names them: the hub id and resolved revision of a
    download, or a sha256 over every file of a local checkpoint (digests cached by path,
    size and modification time in ``~/.cache/rdengine``, so a replaced file is hashed again)."""
    if not Path(checkpoint).expanduser().is_dir() and folder.parent.name == "snapshots":
        return {"hub": checkpoint, "revision": folder.name}
    cache_file = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "rdengine" / "file-digests.json"
    try:
        cache = json.loads(cache_file.read_text())
    except (OSError, ValueError):
        cache = {}
    files = sorted(p for part in REQUIRED_PARTS for p in (folder / part).rglob("*") if p.is_file())
    total = hashlib.sha256()
    for path in files:
        total.update(f"{path.relative_to(folder).as_posix()}:{file_digest(path, cache)}\n".encode())
    try:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomically(cache_file, json.dumps(cache), durable=False)
    except OSError:
        pass  # no cache: hashed again next time
    return {"weights": total.hexdigest()}


def identify_checkpoint(checkpoint: str) -> dict:
    """``checkpoint_identity`` of a hub id or local folder, without loading it."""
    return checkpoint_identity(checkpoint, locate_checkpoint(checkpoint))


def check_finite(folder: Path, **parts: torch.nn.Module) -> None:
    """Every weight must be finite: NaN or inf in a checkpoint would turn the whole video to zeros."""
    for name, module in parts.items():
        bad = [p for p, w in module.named_parameters() if not torch.isfinite(w).all()]
        if bad:
            raise EngineError(f"checkpoint {folder}: non-finite weights in {name} ({bad[0]}"
                              f"{f' and {len(bad) - 1} more' if len(bad) > 1 else ''}): the file is damaged; "
                              "download or copy it again")


def empty_prompt_embeddings(folder: Path, device: torch.device, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """``(1, 2, C)`` CLIP embeddings of ``""`` tokenized without padding, both in ``dtype`` on
    ``device``: computed in float32, and computed in ``dtype``."""
    from transformers import CLIPTextModel, CLIPTokenizer

    tokenizer = CLIPTokenizer.from_pretrained(folder / "tokenizer")
    encoder = CLIPTextModel.from_pretrained(folder / "text_encoder").to(device).eval()
    ids = tokenizer("", padding="do_not_pad", max_length=tokenizer.model_max_length, truncation=True,
                    return_tensors="pt").input_ids.to(device)
    with torch.no_grad():
        exact = encoder(ids)[0].float()
        native = exact if dtype == torch.float32 else encoder.to(dtype)(ids)[0]
    return exact.to(dtype), native.to(dtype)


def silence_library_progress() -> None:
    """No per-file progress bars from diffusers, transformers or the hub (we print our own)."""
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    diffusers_logging.disable_progress_bar()
    transformers_logging.disable_progress_bar()
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")


def load_model(checkpoint: str, device: str = "auto", dtype: str = "fp32", attention: str = "auto") -> Model:
    """Load UNet, VAE, scheduler and the cached empty-prompt embedding; install cross-frame attention."""
    silence_library_progress()
    dev = resolve_device(device)
    torch_dtype = TORCH_DTYPES[dtype]
    try:
        resolve_backend(attention, dev, torch_dtype)
    except ValueError as exc:
        raise EngineError(str(exc)) from None
    folder = locate_checkpoint(checkpoint)
    try:
        unet = UNet2DConditionModel.from_pretrained(folder, subfolder="unet", torch_dtype=torch_dtype,
                                                    low_cpu_mem_usage=False)
        vae = AutoencoderKL.from_pretrained(folder, subfolder="vae", torch_dtype=torch_dtype,
                                            low_cpu_mem_usage=False)
        scheduler = DDIMScheduler.from_pretrained(folder, subfolder="scheduler")
        embedding, native = empty_prompt_embeddings(folder, dev, torch_dtype)
    except (OSError, ValueError, KeyError) as exc:
        raise EngineError(f"checkpoint {folder} could not be loaded: {str(exc).splitlines()[0][:200]}") from None
    check_finite(folder, unet=unet, vae=vae)
    if unet.config.in_channels != 8 or unet.config.out_channels != 4:
        raise EngineError(f"checkpoint {folder}: UNet has {unet.config.in_channels} input channels, "
                          "a RollingDepth UNet has 8 (RGB latent + depth latent)")
    install_cross_frame_attention(unet, backend=attention)
    unet.to(dev).eval().requires_grad_(False)
    vae.to(dev).eval().requires_grad_(False)
    if dev.type == "cuda":
        unet.to(memory_format=torch.channels_last)
    return Model(unet=unet, vae=vae, scheduler=scheduler, prompt_embedding=embedding, device=dev, dtype=torch_dtype,
                 checkpoint=checkpoint, native_embedding=native, identity=checkpoint_identity(checkpoint, folder))
