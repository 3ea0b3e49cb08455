"""The history viewer's blueprint, at its documented short path."""

from chrononaut.interfaces.viewer import history_blueprint

__all__ = ["history_blueprint"]
