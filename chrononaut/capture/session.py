"""The session class of :class:`~chrononaut.VersionedSQLAlchemy`."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from flask_sqlalchemy import SQLAlchemy
from flask_sqlalchemy.session import Session
from sqlalchemy import inspect
from sqlalchemy.engine import Connection, Engine

from chrononaut.capture.guard import (
    METADATAS_KEY,
    WriteKind,
    ensure_history_writable,
    refuse_unrecorded_write,
)
from chrononaut.exceptions import ChrononautException
from chrononaut.history.activity import activity_class_for, is_activity
from chrononaut.history.snapshot import HistorySnapshot


class VersionedSession(Session):
    """A Flask-SQLAlchemy session that records the history of :class:`~chrononaut.Versioned`
    objects on every flush.

    The recording itself is done by event listeners on this class (in
    ``chrononaut.recorder``), so subclasses record history too.

    :param db: the extension whose models the session writes.
    """

    def __init__(self, db: SQLAlchemy, **kwargs: Any) -> None:
        super().__init__(db, **kwargs)
        # The write guard recognises tables by name in the metadata of every bind key;
        # the mapping is live, so bind keys declared later are seen too.
        self.info[METADATAS_KEY] = db.metadatas

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
            ensure_history_writable("delete")
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
