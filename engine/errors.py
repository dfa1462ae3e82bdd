"""The one exception type the CLI turns into a one-line message (no traceback)."""


class EngineError(RuntimeError):
    """A user-facing failure: bad input, missing checkpoint, unavailable device."""
