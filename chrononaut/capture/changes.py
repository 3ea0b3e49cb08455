"""Change detection: which attributes of an object a flush is about to write.

The recorder asks it whether a change makes a new version (a tracked or hidden
column changed) and the lock asks it whether a row is written at all.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Protocol

from sqlalchemy.orm import InstanceState

from chrononaut._compat import attribute_history, changed_since_load


class AttributeNames(Protocol):
    """Attribute names to look for: a set of them, or a mapper's ``column_attrs``."""

    def __contains__(self, key: str, /) -> bool: ...


def _changed_keys(state: InstanceState[Any], keys: AttributeNames) -> Iterator[str]:
    # Only attributes set since the object was loaded can have changes, so only they
    # are looked at, and not every attribute of the object.
    return (
        key
        for key in changed_since_load(state)
        if key in keys and attribute_history(state, key).has_changes()
    )


def changed_attributes(state: InstanceState[Any], keys: AttributeNames) -> list[str]:
    """Return which of ``keys`` have changes the flush will write, in change order."""
    return list(_changed_keys(state, keys))


def changes_any(state: InstanceState[Any], keys: AttributeNames) -> bool:
    """Tell whether any of ``keys`` has a change the flush will write."""
    return any(_changed_keys(state, keys))


def changes_a_column(state: InstanceState[Any]) -> bool:
    """Tell whether the flush writes a column of ``state``'s row (not just collections)."""
    return changes_any(state, state.mapper.column_attrs)


def hidden_changed(state: InstanceState[Any], hidden: tuple[str, ...]) -> list[str]:
    """Return the ``hidden`` attributes of ``state`` that the flush changes, in the
    order of ``hidden``."""
    if not hidden:
        return []
    changed = changed_attributes(state, hidden)
    return [key for key in hidden if key in changed]
