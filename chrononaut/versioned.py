"""The :class:`Versioned` mixin: which columns a model records, and its history queries."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal, overload
from weakref import WeakKeyDictionary

from sqlalchemy import Integer, Select, Table, bindparam, inspect, select
from sqlalchemy.orm import Mapped, Mapper, Query, declared_attr, mapped_column, object_session
from sqlalchemy.orm.attributes import instance_state
from sqlalchemy.sql.schema import ScalarElementColumnDefault

from chrononaut.change_info import ChangeInfoMixin
from chrononaut.exceptions import ChrononautException
from chrononaut.models import HistorySnapshot, activity_class_for
from chrononaut.serialization import STORED_AS_IS, as_utc, serialize_value

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

VERSION_KEY = "version"


@dataclass(frozen=True)
class VersionedColumns:
    """The attribute names of a versioned mapper, sorted by their role in history."""

    table_name: str
    primary_key: tuple[str, ...]
    tracked: tuple[str, ...]
    hidden: tuple[str, ...]
    #: ``tracked`` as a set, for the membership tests of every flushed object.
    tracked_keys: frozenset[str]
    #: The ``version`` column's own default gives a new row version 0, so the flush
    #: need not set it (SQLAlchemy puts the default in the object after the INSERT).
    version_defaults_to_zero: bool

    @classmethod
    def of(cls, mapper: Mapper[Any]) -> VersionedColumns:
        """Return the (cached) columns of ``mapper``."""
        columns = _columns_by_mapper.get(mapper)
        if columns is None:
            model = mapper.class_
            hidden = set(getattr(model, "__chrononaut_hidden__", ()))
            untracked = set(getattr(model, "__chrononaut_untracked__", ()))
            attribute_keys = [prop.key for prop in mapper.column_attrs]
            tracked = tuple(
                key
                for key in attribute_keys
                if key not in hidden and key not in untracked and key != VERSION_KEY
            )
            version_default = mapper.columns[VERSION_KEY].default
            columns = cls(
                table_name=mapper.local_table.name,  # type: ignore[attr-defined]
                primary_key=tuple(
                    mapper.get_property_by_column(column).key for column in mapper.primary_key
                ),
                tracked=tracked,
                hidden=tuple(key for key in attribute_keys if key in hidden),
                tracked_keys=frozenset(tracked),
                version_defaults_to_zero=isinstance(version_default, ScalarElementColumnDefault)
                and version_default.arg == 0,
            )
            _columns_by_mapper[mapper] = columns
        return columns

    def key_of(self, obj: object) -> dict[str, Any]:
        """Return the ``key`` JSON that identifies ``obj`` in the activity table."""
        return _values_of(obj, self.primary_key)

    def data_of(self, obj: object) -> dict[str, Any]:
        """Return the ``data`` JSON of ``obj``: tracked values plus ``version``."""
        data = _values_of(obj, self.tracked)
        data[VERSION_KEY] = getattr(obj, VERSION_KEY)
        return data


def _values_of(obj: object, names: tuple[str, ...]) -> dict[str, Any]:
    """Return the stored form of ``obj``'s attributes ``names``.

    Loaded values are read from the instance's dict, which is what the attribute
    access would return without its per-call instrumentation; only attributes that are
    expired or deferred go through ``getattr`` and load.
    """
    loaded = instance_state(obj).dict
    values = [loaded[name] if name in loaded else getattr(obj, name) for name in names]
    return {
        name: value if type(value) in STORED_AS_IS else serialize_value(value)
        for name, value in zip(names, values, strict=True)
    }


_columns_by_mapper: WeakKeyDictionary[Mapper[Any], VersionedColumns] = WeakKeyDictionary()


@dataclass(frozen=True)
class HistoryStatements:
    """The selects the read helpers run against one activity table, built once.

    Each takes the object's ``table_name`` and ``key`` (and ``at`` or ``version``) as
    bound parameters. Reusing one statement object spares SQLAlchemy building the
    expression and its cache key on every call, which took as long as the query itself.
    All of them match the ``ix_chrononaut_activity_table_name_key_changed`` index.
    """

    rows: Select[Any]
    versions: Select[Any]
    newest: Select[Any]
    newest_at: Select[Any]
    newest_below: Select[Any]

    @classmethod
    def of(cls, table: Table) -> HistoryStatements:
        """Return the (cached) statements of the activity table ``table``."""
        statements = _statements_by_table.get(table)
        if statements is None:
            c = table.c
            rows = select(table).where(
                c.table_name == bindparam("table_name", type_=c.table_name.type),
                c.key == bindparam("key", type_=c.key.type),
            )
            newest = rows.order_by(c.changed.desc(), c.id.desc()).limit(1)
            statements = cls(
                rows=rows,
                versions=rows.order_by(c.changed, c.id),
                newest=newest,
                newest_at=newest.where(c.changed <= bindparam("at", type_=c.changed.type)),
                newest_below=rows.where(c.version < bindparam("version", type_=c.version.type))
                .order_by(c.version.desc(), c.changed.desc(), c.id.desc())
                .limit(1),
            )
            _statements_by_table[table] = statements
        return statements


_statements_by_table: WeakKeyDictionary[Table, HistoryStatements] = WeakKeyDictionary()


class Versioned(ChangeInfoMixin):
    """Mixin that records a snapshot of the model on every insert, change and delete.

    Class attributes that tune it:

    ``__chrononaut_untracked__``
        Attribute names that are never recorded; changing only them makes no version.
    ``__chrononaut_hidden__``
        Attribute names whose changes make a version without storing the value; the
        names that changed are listed in ``extra_info["hidden_cols_changed"]``.

    A nullable integer ``version`` column is added unless the model or a mapped parent
    already has one.
    """

    @declared_attr
    def version(cls) -> Mapped[int | None]:
        return mapped_column(Integer, default=0, nullable=True)

    # -- queries -----------------------------------------------------------------------

    def _history_session(self) -> Session:
        return object_session(self) or type(self).query.session  # type: ignore[attr-defined]

    def _history_query(self) -> tuple[Any, Query[Any]]:
        """Return the activity class and an ORM query of this object's rows, unordered."""
        activity = activity_class_for(type(self))
        columns = VersionedColumns.of(inspect(self).mapper)
        return activity, self._history_session().query(activity).filter(
            activity.table_name == columns.table_name,
            activity.key == columns.key_of(self),
        )

    def _history_statements(self) -> tuple[HistoryStatements, dict[str, Any]]:
        """Return the read statements of this object's activity table, and the
        parameters that pick this object's rows."""
        columns = VersionedColumns.of(inspect(self).mapper)
        statements = HistoryStatements.of(activity_class_for(type(self)).__table__)
        return statements, {"table_name": columns.table_name, "key": columns.key_of(self)}

    def _snapshots(
        self, statement: Select[Any], parameters: dict[str, Any]
    ) -> list[HistorySnapshot]:
        rows = self._history_session().execute(statement, parameters)
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

    def version_at(self, at: datetime, return_snapshot: bool = False) -> HistorySnapshot | None:
        """Return the state of this object at time ``at``: the newest snapshot changed at
        or before it, or ``None`` if the object did not exist yet.

        :param at: the point in time; a naive datetime is taken to be UTC.
        :param return_snapshot: accepted for compatibility; a snapshot is always returned.
        """
        return self._newest_snapshot(at)

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
            raise ChrononautException("`from_model` needs to be a history snapshot.")
        if to is None:
            to = self._newest_snapshot()
            if to is None:
                return {}
        elif not isinstance(to, HistorySnapshot):
            raise ChrononautException("`to` needs to be a history snapshot.")

        if from_model is None:
            changes = {
                column: (None, value) for column, value in to._data.items() if column != VERSION_KEY
            }
        else:
            changes = from_model.diff(to)
        if include_hidden:
            for column in self._hidden_columns_changed(from_model, to):
                changes[column] = (None, getattr(self, column))
        return changes

    def _hidden_columns_changed(
        self, from_model: HistorySnapshot | None, to: HistorySnapshot
    ) -> list[str]:
        activity, query = self._history_query()
        query = query.filter(activity.version <= to._version)
        if from_model is not None:
            query = query.filter(activity.version > from_model._version)
        changed: dict[str, None] = {}
        for (extra_info,) in query.with_entities(activity.extra_info):
            changed.update(dict.fromkeys(extra_info.get("hidden_cols_changed", ())))
        return list(changed)

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
            raise ChrononautException("The diff_versions method takes integer as its argument.")
        if to_version is not None and to_version < from_version:
            raise ChrononautException(
                f"Diffs must be chronological. Version {to_version} is older than {from_version}."
            )
        from_model = self._newest_snapshot_below(from_version + 1)
        to = None
        if to_version is not None:
            to = self._newest_snapshot_below(to_version + 1)
            if to is None:
                raise ChrononautException(f"There is no version {to_version} of this object.")
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
            raise ChrononautException("The diff_timestamps method takes datetime as its argument.")
        if to_timestamp is not None and as_utc(to_timestamp) < as_utc(from_timestamp):
            raise ChrononautException(
                f"Diffs must be chronological. {to_timestamp} is before {from_timestamp}."
            )
        from_model = self.version_at(from_timestamp)
        if to_timestamp is None:
            return self.diff(from_model, include_hidden=include_hidden)
        to = self.version_at(to_timestamp)
        if to is None:
            return {}
        return self.diff(from_model, to, include_hidden=include_hidden)
