"""Units sized by cost: each unit is about ``target`` seconds of device work, measured as it runs.

A kill loses at most the unit in flight, so a unit should be small in *time*, whatever the
device: a snippet batch takes milliseconds on a GPU and many seconds on a CPU. The sizer
starts with one item, then sizes each unit from the time per item measured so far (never
more than ``most`` items: what a unit may hold in memory). Unit boundaries never change the
bytes computed, only how much is recorded at once.
"""

from __future__ import annotations

DEFAULT_UNIT_SECONDS = 60.0


class UnitSizer:
    """How many items (snippet batches, frames) the next unit takes."""

    def __init__(self, target_seconds: float, most: int):
        self.target = float(target_seconds)
        self.most = max(1, int(most))
        self.items = 0.0
        self.seconds = 0.0

    def next_size(self) -> int:
        if not self.items or self.seconds <= 0:
            return 1
        per_item = self.seconds / self.items
        return max(1, min(self.most, int(self.target / per_item)))

    def observe(self, items: int, seconds: float) -> None:
        """``items`` took ``seconds``; the latest units weigh most (the first one carries warm-up)."""
        if self.items:
            self.items, self.seconds = self.items / 2, self.seconds / 2
        self.items += items
        self.seconds += seconds
