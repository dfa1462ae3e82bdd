"""rdengine: a streaming, chunked, resumable engine for RollingDepth video depth."""

__version__ = "0.1.0"
