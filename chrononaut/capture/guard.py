"""The write guard: every write that would bypass history, or change it, is decided here.

History is only complete if every write to a versioned table goes through the unit of
work, which records it, and history is only trustworthy if its rows never change. This
module refuses everything else (bulk statements, the ``bulk_*`` session methods, and
updates or deletes of activity rows) unless the application opted out on purpose with
:func:`suppress_versioning`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Literal

from flask import g, has_app_context
from sqlalchemy.orm import Mapper, ORMExecuteState

from chrononaut.exceptions import ChrononautException, ProtectedHistoryError, UnrecordedWriteError
from chrononaut.history.activity import is_history_table
from chrononaut.history.columns import is_versioned_table

WriteKind = Literal["insert", "update", "delete"]

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


def ensure_history_writable(kind: WriteKind) -> None:
    """Refuse to change or delete history outside
    ``suppress_versioning(allow_deleting_history=True)``; adding to it is always allowed.

    :param kind: what the write does to the activity rows.
    :raises ProtectedHistoryError: history would change outside such a block.
    """
    if kind == "insert" or (has_app_context() and g.get(_ALLOW_DELETE_KEY)):
        return
    done, do = ("deleted", "Delete") if kind == "delete" else ("changed", "Change")
    raise ProtectedHistoryError(
        f"History records cannot be {done}. {do} them inside "
        "`suppress_versioning(allow_deleting_history=True)`, committing in the block."
    )


def refuse_unrecorded_write(table: Any, kind: WriteKind, action: str) -> None:
    """Refuse a write to ``table`` that bypasses the unit of work and thus history.

    Inserts into an activity table are allowed (history is append-only); changing or
    deleting its rows needs ``suppress_versioning(allow_deleting_history=True)``. Any
    such write to a versioned table needs ``suppress_versioning()``.

    :param table: the table written to.
    :param kind: what the write does to the table's rows.
    :param action: how the write was made, for the error message.
    :raises UnrecordedWriteError: the table is versioned and versioning is on.
    :raises ProtectedHistoryError: the table holds history and would lose or change rows.
    """
    if is_history_table(table):
        ensure_history_writable(kind)
    elif is_versioned_table(table) and not versioning_suppressed():
        raise UnrecordedWriteError(
            f"{action} on the versioned table {table.name!r} would not be recorded in "
            "its history. Change the objects through the session (load, modify, "
            "commit), which records each change, or run it inside "
            "`chrononaut.unsafe.suppress_versioning()` to skip history on purpose."
        )


def refuse_unrecorded_statement(execute_state: ORMExecuteState) -> None:
    """``do_orm_execute`` listener: refuse INSERT, UPDATE and DELETE statements that
    would write versioned tables or change history, ORM-enabled or Core."""
    if execute_state.is_select:
        return
    if execute_state.is_insert:
        kind: WriteKind = "insert"
    elif execute_state.is_update:
        kind = "update"
    elif execute_state.is_delete:
        kind = "delete"
    else:
        return
    mapper = execute_state.bind_mapper
    statement: Any = execute_state.statement
    table = statement.table if mapper is None else mapper.local_table
    refuse_unrecorded_write(table, kind, f"{kind.upper()} statement")


def refuse_history_delete(mapper: Mapper[Any], connection: Any, target: Any) -> None:
    """``before_delete`` listener of activity models."""
    ensure_history_writable("delete")


def refuse_history_update(mapper: Mapper[Any], connection: Any, target: Any) -> None:
    """``before_update`` listener of activity models."""
    ensure_history_writable("update")
