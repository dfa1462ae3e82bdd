"""The engine's run failure, defined with every user-facing error in ``rdengine.errors``."""

from ..errors import EngineError

__all__ = ["EngineError"]
