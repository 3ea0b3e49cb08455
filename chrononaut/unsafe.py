"""Operations that leave gaps in history; use them with care (compatibility path)."""

from chrononaut.capture.guard import suppress_versioning

__all__ = ["suppress_versioning"]
