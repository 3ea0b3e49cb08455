"""The session class of :class:`~chrononaut.VersionedSQLAlchemy`."""

from __future__ import annotations

from typing import Any

from flask_sqlalchemy.session import Session
from sqlalchemy.engine import Connection, Engine

from chrononaut.exceptions import ChrononautException
from chrononaut.models import HistorySnapshot, activity_class_for, is_activity
from chrononaut.unsafe import ensure_history_deletion_allowed


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
