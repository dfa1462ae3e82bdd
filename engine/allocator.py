"""Giving memory that the C allocator holds free back to the system, between stages.

A stage that decodes an 8K input frees hundreds of MiB of the decoder's tables and of
frame buffers at its end, but glibc keeps freed blocks of up to 32 MiB in its heaps, where
pages sit between blocks still in use and are never returned: the next stage then starts
that much higher (at 8K, ~100-350 MiB above where it began). ``malloc_trim`` returns every
whole free page; it costs a walk of the heaps, so it is called between stages, not per frame.
"""

from __future__ import annotations

import ctypes
import ctypes.util


def return_free_memory() -> bool:
    """glibc's ``malloc_trim(0)``: True if memory was returned; False if none was, or where the C
    library has no ``malloc_trim`` (it then does nothing)."""
    try:
        trim = ctypes.CDLL(ctypes.util.find_library("c")).malloc_trim
    except (OSError, AttributeError, TypeError):
        return False
    return bool(trim(0))
