"""Reading one object's history: the statements, and the query methods of
:class:`~chrononaut.Versioned`."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal, overload

from sqlalchemy import CursorResult, Select, Subquery, Table, bindparam, inspect, select
from sqlalchemy.orm import Query, object_session

from chrononaut._compat import instance_state
from chrononaut.exceptions import InvalidArgumentError
from chrononaut.history import dated
from chrononaut.history.activity import (
    TIME_TRAVEL_COLUMNS,
    activity_class_for,
    has_time_travel_columns,
)
from chrononaut.history.columns import VersionedColumns
from chrononaut.history.serialization import as_utc
from chrononaut.history.snapshot import HistorySnapshot, changes_between
from chrononaut.history.snapshot import hidden_changes_of as hidden_changes_of  # read from here

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

_STATEMENTS_KEY = "chrononaut.read_statements"


@dataclass(frozen=True)
class HistoryStatements:
    """The selects that read one object's rows of an activity table, built once.

    Each takes the object's ``table_name`` and ``key`` (and ``at``, ``version``, or
    ``low`` and ``high``) as bound parameters. Reusing one statement object spares
    SQLAlchemy building the expression and its cache key on every call, which took as
    long as the query itself. All of them match the
    ``ix_chrononaut_activity_table_name_key_changed`` index.
    """

    rows: Select[Any]
    #: The object's rows in the order they were recorded: the one order of history.
    versions: Select[Any]
    newest: Select[Any]
    newest_at: Select[Any]
    newest_below: Select[Any]
    #: The rows with ``low < version <= high``, in order.
    between_versions: Select[Any]

    @classmethod
    def of(cls, table: Table, time_travel: bool = True) -> HistoryStatements:
        """Return the (cached) statements of the activity table ``table``.

        :param time_travel: the table has the time-travel columns; without them, the
            statements leave them out, for tables made by older releases.
        """
        cached: dict[bool, HistoryStatements] = table.info.setdefault(_STATEMENTS_KEY, {})
        statements = cached.get(time_travel)
        if statements is None:
            c = table.c
            selected = [
                column for column in c if time_travel or column.name not in TIME_TRAVEL_COLUMNS
            ]
            rows = select(*selected).where(
                c.table_name == bindparam("table_name", type_=c.table_name.type),
                c.key == bindparam("key", type_=c.key.type),
            )
            versions = rows.order_by(c.changed, c.id)
            newest = rows.order_by(c.changed.desc(), c.id.desc()).limit(1)
            statements = cls(
                rows=rows,
                versions=versions,
                newest=newest,
                newest_at=newest.where(c.changed <= bindparam("at", type_=c.changed.type)),
                newest_below=rows.where(c.version < bindparam("version", type_=c.version.type))
                .order_by(c.version.desc(), c.changed.desc(), c.id.desc())
                .limit(1),
                between_versions=versions.where(
                    c.version > bindparam("low", type_=c.version.type),
                    c.version <= bindparam("high", type_=c.version.type),
                ),
            )
            cached[time_travel] = statements
        return statements

    @classmethod
    def for_session(cls, session: Session, table: Table) -> HistoryStatements:
        """Return the statements of ``table`` for the database ``session`` reads."""
        return cls.of(table, has_time_travel_columns(session, table))


def object_history(
    session: Session, model: type[Any], key: dict[str, Any]
) -> list[HistorySnapshot]:
    """Return every snapshot of the object of ``model`` with ``key``, oldest first.

    It works for deleted objects too, as it reads only the activity table.

    :param key: the primary key as stored, ``{attribute: value}``.
    """
    statements = HistoryStatements.for_session(session, activity_class_for(model).__table__)
    table_name = VersionedColumns.of(inspect(model)).table_name
    rows = read_rows(session, statements.versions, {"table_name": table_name, "key": key})
    return [HistorySnapshot.from_activity(row, model) for row in rows]


def read_rows(
    session: Session, statement: Select[Any], parameters: dict[str, Any]
) -> CursorResult[Any]:
    """Execute one of the :class:`HistoryStatements` on the session's connection for it.

    The connection is the one ``session.execute()`` would use (a replica's, where reads
    go to one), but the statement skips the session's handling of ORM statements and
    its events, which cost as much as the query: it is a plain read, built here.
    """
    # Every one of them selects columns of the activity table alone. (Asking the
    # statement for its FROM list instead would compile it at every call.)
    table = statement.selected_columns[0].table
    bind = session.get_bind(clause=statement)
    # Asked for the table it reads, as for its columns: a connection asked for anything
    # else might be used to write, so the session would read history on the primary.
    connection = session.connection(bind_arguments={"bind": bind, "clause": table})
    return connection.execute(statement, parameters)


def hidden_columns_changed(snapshots: Iterable[HistorySnapshot]) -> list[str]:
    """Return the hidden columns changed in any of ``snapshots``, each once, in the
    order they first changed."""
    changed: dict[str, None] = {}
    for snapshot in snapshots:
        changed.update(dict.fromkeys(hidden_changes_of(snapshot)))
    return list(changed)


class HistoryReads:
    """The history queries of a versioned object, mixed into
    :class:`~chrononaut.Versioned`."""

    if TYPE_CHECKING:
        version: int | None

    @classmethod
    def as_of(cls, at: datetime) -> Subquery:
        """Return every object of this model as it was at ``at``, as a selectable to
        query with ``select()``: see :func:`chrononaut.history.dated.as_of`.

        .. versionadded:: 1.0

        :param at: the point in time; a naive datetime is taken to be UTC.
        """
        return dated.as_of(cls, cls.query.session, at)  # type: ignore[attr-defined]

    @classmethod
    def changed_between(cls, start: datetime, end: datetime) -> Subquery:
        """Return the changes of this model's objects recorded after ``start`` and up to
        ``end``, as a selectable: see :func:`chrononaut.history.dated.changed_between`.

        .. versionadded:: 1.0
        """
        return dated.changed_between(cls, cls.query.session, start, end)  # type: ignore[attr-defined]

    def _history_session(self) -> Session:
        return object_session(self) or type(self).query.session  # type: ignore[attr-defined]

    def _history_query(self) -> tuple[Any, Query[Any]]:
        """Return the activity class and an ORM query of this object's rows, unordered."""
        activity = activity_class_for(type(self))
        columns = VersionedColumns.of(instance_state(self).mapper)
        return activity, self._history_session().query(activity).filter(
            activity.table_name == columns.table_name,
            activity.key == columns.key_of(self),
        )

    def _history_statements(self) -> tuple[HistoryStatements, dict[str, Any]]:
        """Return the read statements of this object's activity table, and the
        parameters that pick this object's rows."""
        columns = VersionedColumns.of(instance_state(self).mapper)
        statements = HistoryStatements.for_session(
            self._history_session(), activity_class_for(type(self)).__table__
        )
        return statements, {"table_name": columns.table_name, "key": columns.key_of(self)}

    def _snapshots(
        self, statement: Select[Any], parameters: dict[str, Any]
    ) -> list[HistorySnapshot]:
        rows = read_rows(self._history_session(), statement, parameters)
        return [HistorySnapshot.from_activity(row, type(self)) for row in rows]

    @overload
    def versions(
        self,
        before: datetime | None = ...,
        after: datetime | None = ...,
        ordered: bool = ...,
        return_query: Literal[False] = ...,
    ) -> list[HistorySnapshot]: ...

    @overload
    def versions(
        self,
        before: datetime | None = ...,
        after: datetime | None = ...,
        ordered: bool = ...,
        *,
        return_query: Literal[True],
    ) -> Query[Any]: ...

    def versions(
        self,
        before: datetime | None = None,
        after: datetime | None = None,
        ordered: bool = True,
        return_query: bool = False,
    ) -> list[HistorySnapshot] | Query[Any]:
        """Return the snapshots of this object, oldest first.

        :param before: only snapshots changed at or before this time.
        :param after: only snapshots changed at or after this time.
        :param ordered: order by the time of the change (then by insertion order).
        :param return_query: return the query of activity rows instead of snapshots.
        :return: a list of :class:`~chrononaut.models.HistorySnapshot`, or the query.
        """
        if return_query:
            activity, query = self._history_query()
            query = query.filter(*self._time_criteria(activity, before, after))
            return query.order_by(activity.changed, activity.id) if ordered else query
        statements, parameters = self._history_statements()
        statement = statements.versions if ordered else statements.rows
        criteria = self._time_criteria(statement.selected_columns, before, after)
        return self._snapshots(statement.where(*criteria) if criteria else statement, parameters)

    @staticmethod
    def _time_criteria(activity: Any, before: datetime | None, after: datetime | None) -> list[Any]:
        criteria = []
        if before is not None:
            criteria.append(activity.changed <= as_utc(before))
        if after is not None:
            criteria.append(activity.changed >= as_utc(after))
        return criteria

    @overload
    def version_at(
        self, at: datetime, return_snapshot: Literal[False] = ...
    ) -> HistorySnapshot | None: ...

    @overload
    def version_at(self, at: datetime, return_snapshot: Literal[True]) -> dict[str, Any] | None: ...

    @overload
    def version_at(
        self, at: datetime, return_snapshot: bool
    ) -> HistorySnapshot | dict[str, Any] | None: ...

    def version_at(
        self, at: datetime, return_snapshot: bool = False
    ) -> HistorySnapshot | dict[str, Any] | None:
        """Return the state of this object at time ``at``: the newest snapshot changed at
        or before it, or ``None`` if the object did not exist yet.

        :param at: the point in time; a naive datetime is taken to be UTC.
        :param return_snapshot: return the snapshot's stored data instead, as a new plain
            dict (``{"title": ..., "version": 1}``), as the original did.
        """
        snapshot = self._newest_snapshot(at)
        if return_snapshot and snapshot is not None:
            return dict(snapshot.chrononaut_data)
        return snapshot

    def previous_version(self) -> HistorySnapshot | None:
        """Return the newest snapshot with a version lower than the object's, or ``None``."""
        return self._newest_snapshot_below(self.version or 0)

    def _newest_snapshot(self, at: datetime | None = None) -> HistorySnapshot | None:
        """The snapshot changed last, at or before ``at`` when it is given."""
        statements, parameters = self._history_statements()
        if at is None:
            newest = self._snapshots(statements.newest, parameters)
        else:
            newest = self._snapshots(statements.newest_at, {**parameters, "at": as_utc(at)})
        return next(iter(newest), None)

    def _newest_snapshot_below(self, version: int) -> HistorySnapshot | None:
        """The snapshot with the highest version lower than ``version``."""
        statements, parameters = self._history_statements()
        below = self._snapshots(statements.newest_below, {**parameters, "version": version})
        return next(iter(below), None)

    def has_changed_since(self, since: datetime) -> bool:
        """Tell whether the object changed after ``since``, hidden columns included.

        An object created after ``since`` has changed.
        """
        return bool(self.diff_timestamps(since, include_hidden=True))

    # -- diffs -------------------------------------------------------------------------

    def diff(
        self,
        from_model: HistorySnapshot | None,
        to: HistorySnapshot | None = None,
        include_hidden: bool = False,
    ) -> dict[str, tuple[Any, Any]]:
        """Return what changed between two snapshots of this object.

        :param from_model: the earlier snapshot; ``None`` means every value is new.
        :param to: the later snapshot; defaults to the newest one.
        :param include_hidden: add ``(None, current value)`` for each hidden column that
            changed in between.
        :return: ``{column: (old value, new value)}``, without ``version``.
        :raises ChrononautException: ``from_model`` or ``to`` is not a snapshot.
        """
        if from_model is not None and not isinstance(from_model, HistorySnapshot):
            raise InvalidArgumentError("`from_model` needs to be a history snapshot.")
        if to is None:
            to = self._newest_snapshot()
            if to is None:
                return {}
        elif not isinstance(to, HistorySnapshot):
            raise InvalidArgumentError("`to` needs to be a history snapshot.")

        changes = changes_between(from_model, to)
        if include_hidden:
            for column in self._hidden_columns_changed(from_model, to):
                changes[column] = (None, getattr(self, column))
        return changes

    def _hidden_columns_changed(
        self, from_model: HistorySnapshot | None, to: HistorySnapshot
    ) -> list[str]:
        """The hidden columns changed after ``from_model``, up to and including ``to``."""
        statements, parameters = self._history_statements()
        low = -1 if from_model is None else from_model.chrononaut_version
        between = self._snapshots(
            statements.between_versions,
            {**parameters, "low": low, "high": to.chrononaut_version},
        )
        return hidden_columns_changed(between)

    def diff_versions(
        self, from_version: int, to_version: int | None = None, include_hidden: bool = False
    ) -> dict[str, tuple[Any, Any]]:
        """Return what changed from version ``from_version`` to ``to_version``.

        Each side is the newest snapshot with a version at or below the number given;
        a ``from_version`` below the first snapshot means every value is new.

        :param to_version: defaults to the newest snapshot.
        :raises ChrononautException: an argument is not an integer, the versions are not
            in order, or no snapshot exists at ``to_version``.
        """
        given = (from_version,) if to_version is None else (from_version, to_version)
        if not all(isinstance(value, int) and not isinstance(value, bool) for value in given):
            raise InvalidArgumentError("The diff_versions method takes integer as its argument.")
        if to_version is not None and to_version < from_version:
            raise InvalidArgumentError(
                f"Diffs must be chronological. Version {to_version} is older than {from_version}."
            )
        from_model = self._newest_snapshot_below(from_version + 1)
        to = None
        if to_version is not None:
            to = self._newest_snapshot_below(to_version + 1)
            if to is None:
                raise InvalidArgumentError(f"There is no version {to_version} of this object.")
        return self.diff(from_model, to, include_hidden=include_hidden)

    def diff_timestamps(
        self,
        from_timestamp: datetime,
        to_timestamp: datetime | None = None,
        include_hidden: bool = False,
    ) -> dict[str, tuple[Any, Any]]:
        """Return what changed between two points in time.

        :param from_timestamp: the earlier time; naive datetimes are taken to be UTC.
        :param to_timestamp: the later time; defaults to the newest snapshot.
        :raises ChrononautException: an argument is not a datetime, or ``to_timestamp``
            is before ``from_timestamp``.
        """
        given = (from_timestamp,) if to_timestamp is None else (from_timestamp, to_timestamp)
        if not all(isinstance(value, datetime) for value in given):
            raise InvalidArgumentError("The diff_timestamps method takes datetime as its argument.")
        if to_timestamp is not None and as_utc(to_timestamp) < as_utc(from_timestamp):
            raise InvalidArgumentError(
                f"Diffs must be chronological. {to_timestamp} is before {from_timestamp}."
            )
        from_model = self.version_at(from_timestamp)
        if to_timestamp is None:
            return self.diff(from_model, include_hidden=include_hidden)
        to = self.version_at(to_timestamp)
        if to is None:
            return {}
        return self.diff(from_model, to, include_hidden=include_hidden)
