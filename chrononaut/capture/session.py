"""The session class of :class:`~chrononaut.VersionedSQLAlchemy`."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from flask import current_app
from flask_sqlalchemy import SQLAlchemy
from flask_sqlalchemy.session import Session
from sqlalchemy import Table, event, inspect
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import Session as OrmSession
from sqlalchemy.sql import CompoundSelect, Select
from sqlalchemy.sql.dml import UpdateBase
from sqlalchemy.sql.selectable import GenerativeSelect

from chrononaut._compat import locks_rows, statement_parts
from chrononaut.capture.guard import (
    METADATAS_KEY,
    ShapeMemo,
    WriteKind,
    ensure_history_writable,
    refuse_unrecorded_write,
)
from chrononaut.exceptions import ChrononautException
from chrononaut.history.activity import activity_class_for, is_activity, is_history_table
from chrononaut.history.dated import is_dated_read
from chrononaut.history.snapshot import HistorySnapshot

#: The setting that names the bind key (in ``SQLALCHEMY_BINDS``) of a read replica of
#: the default database, where history reads go; see :doc:`/replica`.
HISTORY_READ_BIND_CONFIG = "CHRONONAUT_HISTORY_READ_BIND"

#: What a statement does, as far as routing is concerned.
_HISTORY_READ, _OTHER_READ, _WRITE = "history read", "other read", "write"


def check_history_read_bind(config: Mapping[str, Any]) -> None:
    """Refuse a :data:`HISTORY_READ_BIND_CONFIG` that names no bind of the app.

    :raises ChrononautException: the setting is not a bind key of ``SQLALCHEMY_BINDS``.
    """
    key = config.get(HISTORY_READ_BIND_CONFIG)
    if key is None:
        return
    binds = config.get("SQLALCHEMY_BINDS") or {}
    if not isinstance(key, str) or key not in binds:
        raise ChrononautException(
            f"{HISTORY_READ_BIND_CONFIG} is {key!r}, which is not a bind key of "
            f"SQLALCHEMY_BINDS ({', '.join(map(repr, binds)) or 'none'}): name the bind "
            "whose engine is the read replica, or leave the setting unset."
        )


def read_history_on_primary(session: OrmSession) -> None:
    """Send ``session``'s history reads to the primary until it is closed, when it is
    a :class:`VersionedSession` (other sessions never read a replica)."""
    if isinstance(session, VersionedSession):
        session.read_history_on_primary()


def _statement_kind(statement: Any) -> str:
    """Tell whether an executed statement reads history, reads only other tables, or may
    write (or lock rows, or is SQL text, whose effect is unknown)."""
    if not isinstance(statement, (Select, CompoundSelect)):
        return _WRITE
    return _kind_of_select(statement)


def _walked_kind(statement: Select[Any] | CompoundSelect[Any]) -> str:
    """A SELECT reads history when it reads an activity table (which is in the default
    database); the live tables it may join are on the replica too, as of the same
    moment."""
    reads_history = False
    for part in statement_parts(statement):
        if isinstance(part, UpdateBase):  # a data-modifying CTE
            return _WRITE
        if isinstance(part, GenerativeSelect) and locks_rows(part):
            return _WRITE
        reads_history = reads_history or is_history_table(part) or is_dated_read(part)
    return _HISTORY_READ if reads_history else _OTHER_READ


_kind_of_select = ShapeMemo(_walked_kind)


class VersionedSession(Session):
    """A Flask-SQLAlchemy session that records the history of :class:`~chrononaut.Versioned`
    objects on every flush.

    The recording itself is done by event listeners on this class (in
    ``chrononaut.recorder``), so subclasses record history too.

    With :data:`HISTORY_READ_BIND_CONFIG` set, it sends reads of history to the read
    replica, unless it must see its own writes: see :doc:`/replica`.

    :param db: the extension whose models the session writes.
    """

    def __init__(self, db: SQLAlchemy, **kwargs: Any) -> None:
        super().__init__(db, **kwargs)
        # The write guard recognises tables by name in the metadata of every bind key;
        # the mapping is live, so bind keys declared later are seen too.
        self.info[METADATAS_KEY] = db.metadatas
        self._versioned_db = db
        # The replica's engine, looked up at the first statement that could use it.
        self._replica: Engine | None = None
        self._replica_looked_up = False
        self._history_on_primary = False

    def read_history_on_primary(self) -> None:
        """Send this session's history reads to the primary until it is closed.

        The session does it by itself once it has flushed or executed anything but a
        plain ``SELECT``; call this where it must see a change it did not make itself,
        such as the page a POST redirects to (see :doc:`/replica`).

        .. versionadded:: 1.0
        """
        self._history_on_primary = True

    def connection(
        self,
        bind_arguments: dict[str, Any] | None = None,
        execution_options: Any | None = None,
    ) -> Connection:
        """Return the connection of the session's transaction, as SQLAlchemy does.

        What is done with it is not seen by the session, so a connection asked for
        anything but a table (as to look up its columns) keeps the session's history
        reads on the primary until it is closed.
        """
        if not isinstance((bind_arguments or {}).get("clause"), Table):
            self._history_on_primary = True
        return super().connection(
            bind_arguments=bind_arguments, execution_options=execution_options
        )

    def close(self) -> None:
        """Close the session; its next history reads may go to the replica again."""
        super().close()
        self._history_on_primary = False

    def reset(self) -> None:
        """Reset the session, as :meth:`close` does."""
        super().reset()
        self._history_on_primary = False

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

        With a read replica configured, a ``SELECT`` that reads history goes to it,
        unless the session must see its own writes; a statement that may write keeps
        the session's history reads on the primary until it is closed.
        """
        if bind is None and self.bind is not None:
            bind = self.bind
        if bind is None and clause is not None and not isinstance(clause, Table):
            replica = self._replica_engine()
            if replica is not None:
                kind = _statement_kind(clause)
                if kind == _WRITE:
                    self._history_on_primary = True
                elif kind == _HISTORY_READ and not self._history_on_primary:
                    return replica
        return super().get_bind(mapper=mapper, clause=clause, bind=bind, **kwargs)

    def _replica_engine(self) -> Engine | None:
        if not self._replica_looked_up:
            key = current_app.config.get(HISTORY_READ_BIND_CONFIG)
            self._replica = None if key is None else self._versioned_db.engines[key]
            self._replica_looked_up = True
        return self._replica

    def delete(self, instance: Any) -> None:
        """Mark ``instance`` for deletion.

        A :class:`~chrononaut.models.HistorySnapshot` or an activity row may only be
        deleted inside ``suppress_versioning(allow_deleting_history=True)``; deleting a
        snapshot deletes its activity row.

        :raises ChrononautException: history is deleted outside such a block.
        """
        if isinstance(instance, HistorySnapshot):
            ensure_history_writable("delete")
            # The row is looked up to be deleted: on the primary, where it is deleted.
            self.read_history_on_primary()
            model = instance.chrononaut_model
            row = None
            if model is not None and instance.chrononaut_activity_id is not None:
                row = self.get(activity_class_for(model), instance.chrononaut_activity_id)
            if row is None:
                raise ChrononautException(f"The activity row of {instance!r} no longer exists.")
            instance = row
        elif is_activity(instance):
            ensure_history_writable("delete")
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


@event.listens_for(VersionedSession, "before_flush")
def _keep_history_reads_on_primary(session: VersionedSession, *_: Any) -> None:
    """A session that flushes must read the history it writes: on the primary."""
    session.read_history_on_primary()
