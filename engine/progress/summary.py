"""The run summary: what this run computed, what it reused, and what all runs of the store took.

A run that resumes a store computes only part of the work; dividing all frames by this
run's time would overstate its speed (and a fully reused rerun would claim hundreds of
frames/s). The headline therefore splits the frames into computed and reused by one
stage's share (``main_stage``, or the stage that a fresh run would spend longest on,
estimated from this run's rates), gives the rate of the computed frames only, and adds
the cumulative time of every run of the store. One line per stage follows.
"""

from __future__ import annotations

from typing import Any, Iterable


def stage_record(stage: Any) -> dict:
    """Plain values of a ``StageTimer`` or of a stage dict (``name``/``stage``, ``done``/``items``, ...)."""
    if hasattr(stage, "record"):
        return stage.record()
    done = int(stage.get("done", stage.get("items", 0)))
    reused = int(stage.get("reused") or 0)
    computed = int(stage.get("computed", done - reused))
    seconds = float(stage.get("seconds") or 0.0)
    total = stage.get("total", done)
    return {"name": stage.get("name", stage.get("stage")), "unit": stage.get("unit", "frames"), "total": total,
            "estimate": bool(stage.get("estimate", False)), "done": done, "reused": reused, "computed": computed,
            "seconds": seconds, "rate": computed / seconds if computed and seconds > 0 else 0.0,
            "status": stage.get("status", "done")}


def _by_name(records: list[dict]) -> list[dict]:
    """Records of the same stage name summed (in order of first appearance)."""
    merged: dict[str, dict] = {}
    for r in records:
        m = merged.get(r["name"])
        if m is None:
            merged[r["name"]] = dict(r)
            continue
        for key in ("done", "reused", "computed", "seconds"):
            m[key] += r[key]
        m["total"] = None if m["total"] is None or r["total"] is None else m["total"] + r["total"]
        m["status"] = "stopped" if "stopped" in (m["status"], r["status"]) else m["status"]
        m["rate"] = m["computed"] / m["seconds"] if m["computed"] and m["seconds"] > 0 else 0.0
    return list(merged.values())


def _size(r: dict) -> int:
    return max(r["total"] or 0, r["done"])


def _basis(records: list[dict], main_stage: str | None) -> dict | None:
    """The stage whose computed share splits the frames; ``None`` when nothing was computed."""
    if main_stage is not None:
        for r in records:
            if r["name"] == main_stage:
                return r
    worked = [r for r in records if r["computed"] > 0]
    if not worked:
        return None
    # the longest stage of a fresh run, estimated as this run's seconds scaled to all its units
    return max(worked, key=lambda r: r["seconds"] * _size(r) / r["computed"])


def summary_record(stages: Iterable[Any], this_run_seconds: float, cumulative_seconds: float | None, frames: int, *,
                   runs: int | None = None, main_stage: str | None = None) -> dict:
    """The summary as values (the JSON ``summary`` event); see ``summary_lines``."""
    records = _by_name([stage_record(s) for s in stages])
    basis = _basis(records, main_stage)
    computed = 0
    if basis is not None and basis["computed"] and _size(basis):
        size = _size(basis)
        computed = min(frames, max(1, round(frames * basis["computed"] / size)))
        complete = basis["status"] == "done" and basis["done"] >= size
        reused = frames - computed if complete else min(frames - computed, round(frames * basis["reused"] / size))
    else:
        reused = frames if any(r["reused"] for r in records) else 0
    seconds = float(this_run_seconds)
    cumulative = None if cumulative_seconds is None else max(float(cumulative_seconds), seconds)
    return {"frames": frames, "computed_frames": computed, "reused_frames": reused,
            "fully_reused": computed == 0 and reused > 0,
            "seconds": round(seconds, 3), "rate": round(computed / seconds, 4) if computed and seconds > 0 else None,
            "cumulative_s": None if cumulative is None else round(cumulative, 3), "runs": runs,
            "basis": None if basis is None else basis["name"],
            "stages": [{**r, "seconds": round(r["seconds"], 3), "rate": round(r["rate"], 4)} for r in records]}


def _stage_line(r: dict) -> str:
    if r["computed"]:
        rate = f"{r['rate']:.2f} {r['unit']}/s"
    else:
        rate = "all reused" if r["reused"] else "-"
    if r["computed"] and r["reused"]:
        counts = f"{r['computed']} computed, {r['reused']} reused"
    elif r["reused"]:
        counts = f"{r['reused']} {r['unit']} reused"
    else:
        counts = f"{r['computed']} {r['unit']}"
    stopped = " (stopped)" if r["status"] == "stopped" else ""
    return f"  {r['name']:<24} {r['seconds']:8.2f} s  {rate:>20}  {counts}{stopped}"


def summary_lines(stages: Iterable[Any], this_run_seconds: float, cumulative_seconds: float | None, frames: int, *,
                  runs: int | None = None, main_stage: str | None = None) -> list[str]:
    """The run summary: a headline, then one line per stage.

    ``stages``: ``Progress.stages`` (or their ``record()`` dicts, or the pipeline's stage
    dicts); ``this_run_seconds``: wall time of this run; ``cumulative_seconds``: the
    processing time of every run of the store, this one included (``None``: not known);
    ``frames``: frames of the video; ``runs``: how many runs that time covers;
    ``main_stage``: the stage whose computed/reused share splits the frames (default: the
    stage a fresh run would spend longest on). E.g.::

        1800 frames: 1342 computed in this run (386.1 s, 3.48 frames/s), 458 reused; 1587.0 s across 3 runs
        1800 frames: all reused from earlier runs, nothing computed in this run (0.4 s); 1587.4 s across 4 runs
    """
    rec = summary_record(stages, this_run_seconds, cumulative_seconds, frames, runs=runs, main_stage=main_stage)
    seconds, cumulative = rec["seconds"], rec["cumulative_s"]
    if rec["computed_frames"]:
        head = (f"{frames} frames: {rec['computed_frames']} computed in this run "
                f"({seconds:.1f} s, {rec['rate']:.2f} frames/s)")
        if rec["reused_frames"]:
            head += f", {rec['reused_frames']} reused"
    elif rec["fully_reused"]:
        head = f"{frames} frames: all reused from earlier runs, nothing computed in this run ({seconds:.1f} s)"
    else:
        head = f"{frames} frames: nothing computed ({seconds:.1f} s)"
    if cumulative is not None:
        if runs is not None and runs > 1:
            head += f"; {cumulative:.1f} s across {runs} runs"
        elif runs is None and cumulative > seconds + 0.05:
            head += f"; {cumulative:.1f} s across all runs"
    return [head] + [_stage_line(r) for r in rec["stages"]]
