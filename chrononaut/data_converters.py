"""The converter of Chrononaut 0.1 history (compatibility path)."""

from chrononaut.maintenance.conversion import HistoryModelDataConverter

__all__ = ["HistoryModelDataConverter"]
