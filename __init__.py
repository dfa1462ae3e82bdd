"""rdengine: a streaming, chunked, resumable engine for RollingDepth video depth.

From Python::

    import rdengine
    rd = rdengine.RollingDepth.from_pretrained("prs-eth/rollingdepth-v1-0", preset="fast")
    result = rd("video.mp4")            # or frames: an array [T, H, W, 3], a list, an iterator
    result.depth[10]                    # float32 [H, W] relative inverse depth, read from the run store

``RollingDepth``, ``DepthResult``, ``ShotDepth`` and ``errors`` are imported on first use, so
``import rdengine`` stays cheap (no torch). See docs/api.md.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_LAZY = {"RollingDepth": "api", "ShotStream": "api", "DepthResult": "result", "ShotDepth": "result",
         "DepthArray": "result", "errors": None}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module 'rdengine' has no attribute {name!r}")
    module = importlib.import_module(f".{_LAZY[name] or name}", __name__)
    return module if _LAZY[name] is None else getattr(module, name)


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])
