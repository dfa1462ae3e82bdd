"""How numbers read in progress output: durations (``11m51s``), rates, counts and percentages."""

from __future__ import annotations


def duration(seconds: float | None) -> str:
    """``4.2s``, ``45s``, ``11m51s``, ``2h03m07s``; ``?`` when unknown."""
    if seconds is None:
        return "?"
    seconds = max(0.0, float(seconds))
    if seconds < 10:
        return f"{seconds:.1f}s"
    whole = int(round(seconds))
    if whole < 60:
        return f"{whole}s"
    minutes, secs = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s"


def rate(value: float) -> str:
    """A throughput with as many digits as it deserves: ``312``, ``3.1``, ``0.042``."""
    if value >= 100:
        return f"{value:.0f}"
    if value >= 1:
        return f"{value:.1f}"
    return f"{value:.2g}"


def total(value: int | None, estimate: bool) -> str:
    """``3548``, ``~1800`` (an estimate) or ``?`` (unknown)."""
    if value is None:
        return "?"
    return f"~{value}" if estimate else str(value)


def percent(fraction: float | None, estimate: bool, digits: int = 1) -> str:
    """``37.9%`` or ``~37.9%``; empty when the total is unknown."""
    if fraction is None:
        return ""
    return f"{'~' if estimate else ''}{100 * fraction:.{digits}f}%"
