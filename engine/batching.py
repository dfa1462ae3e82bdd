"""Where snippets are scheduled: the snippet plan turned into UNet batches.

Snippets of any dilation share a batch when they have the same length; batches run in
snippet start order so the RGB latents they read form a sliding window in time.
"""

from __future__ import annotations

from dataclasses import dataclass

from .snippets import SnippetGroup


@dataclass(frozen=True)
class SnippetBatch:
    """One UNet call: ``members`` are ``(group index, snippet index)`` pairs of equal length."""

    index: int
    length: int
    members: tuple[tuple[int, int], ...]

    @property
    def unit(self) -> str:
        return f"b{self.index:06d}"


def plan_batches(groups: list[SnippetGroup], batch_size: int) -> list[SnippetBatch]:
    """Cut all snippets into batches of at most ``batch_size``, ordered by (global) start frame.

    Groups of several shots (``SnippetGroup.offset``) interleave by their first frame; with
    one shot at offset 0 the order is the original ``(snippet index, group)`` order.
    """
    batches: list[SnippetBatch] = []
    for length in sorted({g.length for g in groups}):
        queue = sorted(((g.offset + i, gi, i) for gi, g in enumerate(groups) if g.length == length
                        for i in range(g.count)))
        for at in range(0, len(queue), batch_size):
            members = tuple((gi, i) for _, gi, i in queue[at:at + batch_size])
            batches.append(SnippetBatch(index=len(batches), length=length, members=members))
    return batches


def default_batch_size(device_type: str, free_bytes: int | None, frame_pixels: int) -> int:
    """Snippets per UNet call from free device memory (about 1.5 GB per 768x432 snippet in fp16)."""
    if device_type != "cuda" or not free_bytes:
        return 4
    per_snippet = 1.5e9 * frame_pixels / (768 * 432)
    return int(max(1, min(64, free_bytes * 0.6 // per_snippet)))
