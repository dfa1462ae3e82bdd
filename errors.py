"""The exceptions rdengine raises for user mistakes: one hierarchy, one-line messages.

Every error a user can fix derives from ``RdengineError``; its message is one line naming
the problem (and the file or option), exactly what ``rdengine`` prints after ``error:``.
Catch ``RdengineError`` for all of them, or one kind:

- ``ConfigError``: an option value or a combination of options that cannot work;
- ``InputError``: an input video, image sequence or frame array that cannot be used as given;
- ``EngineError``: a run that cannot go on (missing checkpoint, no such device, a store made
  by another configuration, disk full, damaged data);
- ``EvalInputError``: a prediction or ground truth given to ``rdengine eval`` that cannot be read.

Each also derives from the built-in it used to be (``ValueError`` or ``RuntimeError``).
``InputWarning`` is not an error: something about the input is kept as is but worth a line.
"""

from __future__ import annotations

__all__ = ["RdengineError", "ConfigError", "InputError", "EngineError", "EvalInputError", "InputWarning"]


class RdengineError(Exception):
    """A failure the user can fix; the message is one line saying what and where."""


class ConfigError(RdengineError, ValueError):
    """An option value, or a combination of options, the engine cannot run."""


class InputError(RdengineError, ValueError):
    """The input cannot be used as given; the message names the file (or the frame)."""


class EngineError(RdengineError, RuntimeError):
    """A run cannot go on: bad checkpoint, unavailable device, mismatched store, write errors."""


class EvalInputError(RdengineError, ValueError):
    """An evaluation input is missing, unreadable or inconsistent."""


class InputWarning(UserWarning):
    """Something about the input is kept as is but is worth a line (e.g. a gap in frame numbers)."""
