"""The session class of :class:`~chrononaut.VersionedSQLAlchemy`."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Literal
from weakref import WeakSet

from flask_sqlalchemy.session import Session
from sqlalchemy import Table, inspect
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import ORMExecuteState

from chrononaut.exceptions import ChrononautException, UnrecordedWriteError
from chrononaut.models import HistorySnapshot, activity_class_for, is_activity
from chrononaut.unsafe import (
    ensure_history_change_allowed,
    ensure_history_deletion_allowed,
    versioning_suppressed,
)

WriteKind = Literal["insert", "update", "delete"]

#: Tables of versioned models and of activity models, registered by the recorder, so
#: that writes which bypass the unit of work can be told apart.
versioned_tables: WeakSet[Table] = WeakSet()
history_tables: WeakSet[Table] = WeakSet()


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
    if table in history_tables:
        if kind == "delete":
            ensure_history_deletion_allowed()
        elif kind == "update":
            ensure_history_change_allowed()
    elif table in versioned_tables and not versioning_suppressed():
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
    refuse_unrecorded_write(table, kind, f"An {kind.upper()} statement")


class VersionedSession(Session):
    """A Flask-SQLAlchemy session that records the history of :class:`~chrononaut.Versioned`
    objects on every flush.

    The recording itself is done by event listeners on this class (in
    ``chrononaut.recorder``), so subclasses record history too.
    """

    def get_bind(
        self,
        mapper: Any | None = None,
        clause: Any | None = None,
        bind: Engine | Connection | None = None,
        **kwargs: Any,
    ) -> Engine | Connection:
        """Return the session's own ``bind`` when it has one, else choose by bind key.

        Flask-SQLAlchemy 3.1 ignores a session's ``bind`` option; test fixtures that
        join a session to an outer connection rely on it, so that data and history
        both stay inside the transaction they roll back.
        """
        if bind is None and self.bind is not None:
            bind = self.bind
        return super().get_bind(mapper=mapper, clause=clause, bind=bind, **kwargs)

    def delete(self, instance: Any) -> None:
        """Mark ``instance`` for deletion.

        A :class:`~chrononaut.models.HistorySnapshot` or an activity row may only be
        deleted inside ``suppress_versioning(allow_deleting_history=True)``; deleting a
        snapshot deletes its activity row.

        :raises ChrononautException: history is deleted outside such a block.
        """
        if isinstance(instance, HistorySnapshot):
            ensure_history_deletion_allowed()
            activity = activity_class_for(instance._model)  # type: ignore[arg-type]
            row = self.get(activity, instance._activity_id)
            if row is None:
                raise ChrononautException(f"The activity row of {instance!r} no longer exists.")
            instance = row
        elif is_activity(instance):
            ensure_history_deletion_allowed()
        super().delete(instance)

    def bulk_save_objects(self, objects: Iterable[object], *args: Any, **kwargs: Any) -> None:
        """Like SQLAlchemy's method, but refused for objects whose history it would skip.

        :raises UnrecordedWriteError: an object is versioned and versioning is on.
        :raises ProtectedHistoryError: an object is a stored activity row.
        """
        objects = list(objects)
        for obj in objects:
            state = inspect(obj)
            kind: WriteKind = "insert" if state.key is None else "update"
            refuse_unrecorded_write(state.mapper.local_table, kind, "Session.bulk_save_objects()")
        super().bulk_save_objects(objects, *args, **kwargs)

    def bulk_insert_mappings(
        self, mapper: Any, mappings: Iterable[dict[str, Any]], *args: Any, **kwargs: Any
    ) -> None:
        """Like SQLAlchemy's method, but refused for versioned models.

        :raises UnrecordedWriteError: ``mapper`` is versioned and versioning is on.
        """
        refuse_unrecorded_write(
            inspect(mapper).local_table, "insert", "Session.bulk_insert_mappings()"
        )
        super().bulk_insert_mappings(mapper, mappings, *args, **kwargs)

    def bulk_update_mappings(self, mapper: Any, mappings: Iterable[dict[str, Any]]) -> None:
        """Like SQLAlchemy's method, but refused for versioned and activity models.

        :raises UnrecordedWriteError: ``mapper`` is versioned and versioning is on.
        :raises ProtectedHistoryError: ``mapper`` is an activity model.
        """
        refuse_unrecorded_write(
            inspect(mapper).local_table, "update", "Session.bulk_update_mappings()"
        )
        super().bulk_update_mappings(mapper, mappings)
