"""Operations that leave gaps in history. Use them with care."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from flask import g, has_app_context

from chrononaut.exceptions import ChrononautException, ProtectedHistoryError

_SUPPRESS_KEY = "_chrononaut_suppress_versioning"
_ALLOW_DELETE_KEY = "_chrononaut_allow_deleting_history"


@contextmanager
def suppress_versioning(allow_deleting_history: bool = False) -> Iterator[None]:
    """Write no history for the changes flushed inside the block.

    Versions are neither bumped nor recorded, so the next recorded change continues
    from the last recorded version. Bulk statements and the ``bulk_*`` session methods,
    refused on versioned tables otherwise, run in the block. Rows are still locked and
    checked against concurrent changes.

    :param allow_deleting_history: also allow deleting activity rows and snapshots;
        the commit that deletes them must happen inside the block.
    :raises ChrononautException: there is no Flask application context.
    """
    if not has_app_context():
        raise ChrononautException("`suppress_versioning` needs a Flask application context.")
    outer = {key: g.get(key) for key in (_SUPPRESS_KEY, _ALLOW_DELETE_KEY)}
    setattr(g, _SUPPRESS_KEY, True)
    setattr(g, _ALLOW_DELETE_KEY, allow_deleting_history)
    try:
        yield
    finally:
        for key, value in outer.items():
            if value is None:
                g.pop(key, None)
            else:
                setattr(g, key, value)


def versioning_suppressed() -> bool:
    """Tell whether a :func:`suppress_versioning` block is open."""
    return has_app_context() and bool(g.get(_SUPPRESS_KEY))


def history_deletion_allowed() -> bool:
    """Tell whether a ``suppress_versioning(allow_deleting_history=True)`` block is open."""
    return has_app_context() and bool(g.get(_ALLOW_DELETE_KEY))


def ensure_history_deletion_allowed() -> None:
    """Refuse to delete history outside ``suppress_versioning(allow_deleting_history=True)``.

    :raises ProtectedHistoryError: no such block is open.
    """
    _ensure_history_writable("deleted", "Delete")


def ensure_history_change_allowed() -> None:
    """Refuse to change history outside ``suppress_versioning(allow_deleting_history=True)``.

    :raises ProtectedHistoryError: no such block is open.
    """
    _ensure_history_writable("changed", "Change")


def _ensure_history_writable(done: str, do: str) -> None:
    if not history_deletion_allowed():
        raise ProtectedHistoryError(
            f"History records cannot be {done}. {do} them inside "
            "`suppress_versioning(allow_deleting_history=True)`, committing in the block."
        )
