"""Where the original kept the activity model and the snapshot view (compatibility)."""

from chrononaut.history.activity import activity_factory
from chrononaut.history.snapshot import HistorySnapshot

__all__ = ["HistorySnapshot", "activity_factory"]
