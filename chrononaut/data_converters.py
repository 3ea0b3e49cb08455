"""Conversion of Chrononaut 0.1 history tables into ``chrononaut_activity``.

Chrononaut 0.1 kept one ``<table>_history`` table per versioned table; each row held
the state an object had *before* a change, with the time and change info of that
change. :class:`HistoryModelDataConverter` rewrites that history as snapshots of the
state *after* each change, the format every later release reads. ``docs/migration.rst``
gives the exact mapping and the recipe.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from itertools import groupby
from typing import Any

from sqlalchemy import (
    Column,
    ColumnElement,
    FromClause,
    Insert,
    Integer,
    MetaData,
    Row,
    Select,
    Table,
    TypeDecorator,
    and_,
    bindparam,
    cast,
    column,
    func,
    insert,
    inspect,
    literal,
    null,
    select,
    true,
    tuple_,
    type_coerce,
    union,
    union_all,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.exc import NoSuchTableError
from sqlalchemy.orm import Mapper, Session

from chrononaut.exceptions import ChrononautException
from chrononaut.models import activity_class_for
from chrononaut.serialization import UTC, as_utc, serialize_value
from chrononaut.versioned import VERSION_KEY, Versioned, VersionedColumns

#: Columns every 0.1 history table has besides the model's own columns.
_LEGACY_VERSION = "version"
_LEGACY_CHANGED = "changed"
_LEGACY_CHANGE_INFO = "change_info"
_CREATED_AT = "created_at"
#: Keys of a 0.1 ``change_info`` that are not user info.
_EXTRA = "extra"
_HIDDEN_COLS_CHANGED = "hidden_cols_changed"

_FROM_LEGACY, _FROM_LIVE = 0, 1


@dataclass(frozen=True)
class _Variant:
    """How rows of one mapper (a class of the polymorphic family) become snapshots."""

    columns: VersionedColumns
    #: Position in the selected values of each tracked attribute.
    positions: tuple[tuple[str, int], ...]


class HistoryModelDataConverter:
    """Moves the 0.1 history of one :class:`~chrononaut.Versioned` model into the
    activity table.

    Each call works in chunks of objects, one transaction per chunk, and writes only the
    versions an object does not have in the activity table yet, so every method is safe
    to run again after an interruption.

    :param model: the versioned model class. For joined-table inheritance pass the class
        whose objects you convert; its 0.1 history is read by joining the history tables
        of every table in its mapper chain.
    :param id_column: the name of the primary-key column, or a sequence of names for a
        composite key; it must name exactly the model's primary key (column or attribute
        names).
    :raises ChrononautException: ``model`` is not versioned, or ``id_column`` does not
        name its primary key.
    """

    def __init__(self, model: type[Any], id_column: str | Sequence[str] = "id") -> None:
        if not (isinstance(model, type) and issubclass(model, Versioned)):
            raise ChrononautException(f"{model!r} is not a Versioned model; it has no history.")
        self.model = model
        mapper: Mapper[Any] = inspect(model)
        self._mapper = mapper
        self._activity = activity_class_for(model).__table__
        self._key_columns = _key_columns(mapper, id_column)
        self._tables = _mapped_tables(mapper)
        self._values = [column for table in self._tables for column in table.columns]
        self._positions = {column: index for index, column in enumerate(self._values)}
        self._variants, self._identity_column, self._identities = self._polymorphic_variants()
        self._legacy_tables: list[Table] | None = None
        self._after: tuple[Any, ...] | None = None
        #: Objects whose rows the converter has looked at, and snapshots it wrote.
        self.objects_seen = 0
        self.snapshots_written = 0

    @property
    def legacy_table_names(self) -> list[str]:
        """The names of the 0.1 history tables read, root table first."""
        return [_legacy_name(mapper) for mapper in self._table_mappers()]

    # -- public API --------------------------------------------------------------------

    def convert(self, session: Session, limit: int = 10000) -> int:
        """Convert the next chunk of at most ``limit`` objects and commit.

        Call it until it returns 0. Objects that already have all their versions are
        skipped, so a new converter (after a crash, say) passes over them quickly.

        :param session: the session to read and write with; it is committed.
        :param limit: the number of objects per chunk.
        :return: the number of objects that got snapshots, 0 when nothing is left.
        :raises ChrononautException: the 0.1 history tables are missing or lack columns.
        """
        if limit < 1:
            raise ChrononautException("`limit` must be a positive number of objects.")
        while True:
            keys = self._next_keys(session, limit)
            if not keys:
                self._after = None
                session.commit()
                return 0
            converted = self._convert_range(session, keys[0], keys[-1])
            self._after = keys[-1]
            self.objects_seen += len(keys)
            session.commit()
            if converted:
                return converted

    def convert_all(self, session: Session, limit: int = 10000) -> int:
        """Convert every object, committing after each chunk of ``limit`` objects.

        :return: the number of objects that got snapshots.
        """
        total = 0
        while converted := self.convert(session, limit):
            total += converted
        return total

    def update(
        self, session: Session, update_from: datetime | str | None = None, limit: int = 10000
    ) -> int:
        """Add the versions the 0.1 tables gained since ``update_from``.

        Use it when the 0.1 application kept running during the first conversion. It
        looks at objects with 0.1 history rows changed at or after ``update_from``, and at
        live objects (created at or after it, when the model has ``created_at``), and
        writes the versions they are missing.

        :param update_from: a datetime (naive means UTC) or ISO 8601 text; ``None``
            looks at every object.
        :return: the number of snapshots written.
        """
        since = datetime.fromisoformat(update_from) if isinstance(update_from, str) else update_from
        written_before = self.snapshots_written
        self._after = None
        while keys := self._next_keys(session, limit, since=since, use_since=True):
            self._convert_range(session, keys[0], keys[-1])
            self._after = keys[-1]
            self.objects_seen += len(keys)
            session.commit()
        self._after = None
        session.commit()
        return self.snapshots_written - written_before

    def count(self, session: Session) -> int:
        """Return the number of objects with a live row or 0.1 history."""
        legacy, live = self._key_selects(session, since=None, use_since=False)
        keys = union(legacy, live).subquery()
        return int(session.execute(select(func.count()).select_from(keys)).scalar_one())

    # -- the model's shape -------------------------------------------------------------

    def _table_mappers(self) -> list[Mapper[Any]]:
        by_table: dict[FromClause, Mapper[Any]] = {}
        for mapper in reversed(list(self._mapper.iterate_to_root())):
            by_table.setdefault(mapper.local_table, mapper)
        return list(by_table.values())

    def _polymorphic_variants(self) -> tuple[dict[Any, _Variant], Column[Any] | None, list[Any]]:
        """Return the variant of each polymorphic identity converted with this model.

        Objects of a joined subclass with a table of its own are left to that subclass's
        converter, as their snapshots carry its table name.
        """
        mapper = self._mapper
        identity_column = mapper.polymorphic_on
        if identity_column is None:
            return {None: self._variant(mapper)}, None, []
        if not isinstance(identity_column, Column) or identity_column not in self._positions:
            raise ChrononautException(
                f"{self.model.__name__} is polymorphic on an expression; only a "
                "discriminator column of its tables can be converted."
            )
        variants = {
            identity: self._variant(sub_mapper)
            for identity, sub_mapper in mapper.polymorphic_map.items()
            if sub_mapper.isa(mapper) and sub_mapper.local_table is mapper.local_table
        }
        return variants, identity_column, list(variants)

    def _variant(self, mapper: Mapper[Any]) -> _Variant:
        columns = VersionedColumns.of(mapper)
        positions = []
        for name in columns.tracked:
            column = mapper.get_property(name).columns[0]
            if column not in self._positions:
                raise ChrononautException(
                    f"{mapper.class_.__name__}.{name} is not a column of its tables; "
                    "it cannot be read from 0.1 history."
                )
            positions.append((name, len(self._key_columns) + self._positions[column]))
        return _Variant(columns, tuple(positions))

    # -- the 0.1 tables ----------------------------------------------------------------

    def _legacy(self, session: Session) -> list[Table]:
        """Reflect the 0.1 history tables, checking the columns the conversion reads."""
        if self._legacy_tables is not None:
            return self._legacy_tables
        connection = session.connection(bind_arguments={"mapper": self._mapper})
        metadata = MetaData()
        tables = []
        for index, (mapper, table) in enumerate(
            zip(self._table_mappers(), self._tables, strict=True)
        ):
            name = _legacy_name(mapper)
            try:
                legacy = Table(name, metadata, schema=table.schema, autoload_with=connection)
            except NoSuchTableError:
                raise ChrononautException(
                    f"The 0.1 history table {name!r} of {mapper.class_.__name__} does not exist."
                ) from None
            required = [column.name for column in table.primary_key] + [_LEGACY_VERSION]
            if index == 0:
                required.append(_LEGACY_CHANGED)
            missing = [column for column in required if column not in legacy.c]
            if missing:
                raise ChrononautException(
                    f"The 0.1 history table {name!r} lacks the column(s) {', '.join(missing)}."
                )
            tables.append(legacy)
        self._legacy_tables = tables
        return tables

    def _legacy_from(self, legacy: list[Table]) -> FromClause:
        """The root history table joined with those of the subclass tables, row by row."""
        root = legacy[0]
        joined: FromClause = root
        root_key = list(self._tables[0].primary_key)
        for table, history in zip(self._tables[1:], legacy[1:], strict=True):
            same_row = [
                history.c[own.name] == root.c[parent.name]
                for own, parent in zip(table.primary_key, root_key, strict=True)
            ]
            same_row.append(
                history.c[_LEGACY_VERSION].is_not_distinct_from(root.c[_LEGACY_VERSION])
            )
            joined = joined.join(history, and_(*same_row))
        return joined

    def _legacy_column(self, legacy: list[Table], column: Column[Any]) -> ColumnElement[Any]:
        """The history column holding ``column``, read with the model's type, or NULL."""
        history = legacy[self._tables.index(column.table)]
        if column.name in history.c:
            return type_coerce(history.c[column.name], column.type)
        return cast(null(), column.type)

    # -- selecting objects -------------------------------------------------------------

    def _key_selects(
        self, session: Session, since: datetime | None, use_since: bool
    ) -> tuple[Select[Any], Select[Any]]:
        legacy = self._legacy(session)
        root = legacy[0]
        legacy_keys = [self._legacy_column(legacy, column) for column in self._key_columns]
        legacy_where = [self._legacy_identity_filter(legacy)]
        live_where = [self._identity_filter(self._identity_column)]
        if use_since and since is not None:
            legacy_where.append(
                root.c[_LEGACY_CHANGED] >= _matching(root.c[_LEGACY_CHANGED], since)
            )
            created_at = self._created_at_column()
            if created_at is not None:
                live_where.append(created_at >= _matching(created_at, since))
        if self._after is not None:
            legacy_where.append(tuple_(*legacy_keys) > tuple_(*self._after))
            live_where.append(tuple_(*self._key_columns) > tuple_(*self._after))
        legacy_select = (
            select(*legacy_keys).select_from(self._legacy_from(legacy)).where(*legacy_where)
        )
        live_select = (
            select(*self._key_columns)
            .select_from(self._mapper.persist_selectable)
            .where(*live_where)
        )
        return legacy_select, live_select

    def _legacy_identity_filter(self, legacy: list[Table]) -> ColumnElement[bool]:
        if self._identity_column is None:
            return true()
        return self._identity_filter(self._legacy_column(legacy, self._identity_column))

    def _identity_filter(self, column: ColumnElement[Any] | None) -> ColumnElement[bool]:
        if column is None:
            return true()
        return column.in_(self._identities)

    def _next_keys(
        self,
        session: Session,
        limit: int,
        since: datetime | None = None,
        use_since: bool = False,
    ) -> list[tuple[Any, ...]]:
        """The keys of the next ``limit`` objects after the last chunk, in key order."""
        legacy, live = self._key_selects(session, since, use_since)
        # Each side is cut to ``limit`` first, so that the database can walk the
        # primary-key indexes instead of merging both tables whole.
        legacy = legacy.distinct().order_by(*legacy.selected_columns).limit(limit)
        live = live.order_by(*live.selected_columns).limit(limit)
        keys = union(legacy, live).subquery()
        query = select(*keys.c).order_by(*keys.c).limit(limit)
        return [tuple(row) for row in session.execute(query)]

    def _created_at_column(self) -> Column[Any] | None:
        prop = self._mapper.column_attrs.get(_CREATED_AT)
        column = prop.columns[0] if prop is not None else None
        return column if isinstance(column, Column) and column in self._positions else None

    # -- converting --------------------------------------------------------------------

    def _object_rows(
        self, session: Session, first: tuple[Any, ...], last: tuple[Any, ...]
    ) -> list[Row[Any]]:
        """Every 0.1 history row and live row of the objects from ``first`` to ``last``.

        One statement reads both, so that the 0.1 application, if it still runs, cannot
        change an object between the two reads.
        """
        legacy = self._legacy(session)
        root = legacy[0]
        legacy_keys = [self._legacy_column(legacy, column) for column in self._key_columns]
        legacy_values = [self._legacy_column(legacy, column) for column in self._values]
        change_info = root.c.get(_LEGACY_CHANGE_INFO)
        legacy_select = (
            select(
                *_labelled("k", legacy_keys),
                *_labelled("v", legacy_values),
                root.c[_LEGACY_VERSION].label("version"),
                root.c[_LEGACY_CHANGED].label("changed"),
                (change_info if change_info is not None else null()).label("change_info"),
                literal(_FROM_LEGACY).label("source"),
            )
            .select_from(self._legacy_from(legacy))
            .where(
                tuple_(*legacy_keys).between(tuple_(*first), tuple_(*last)),
                self._legacy_identity_filter(legacy),
            )
        )
        version_column = self._mapper.get_property(VERSION_KEY).columns[0]
        live_select = (
            select(
                *_labelled("k", self._key_columns),
                *_labelled("v", self._values),
                version_column,
                cast(null(), root.c[_LEGACY_CHANGED].type),
                cast(null(), change_info.type) if change_info is not None else null(),
                literal(_FROM_LIVE),
            )
            .select_from(self._mapper.persist_selectable)
            .where(
                tuple_(*self._key_columns).between(tuple_(*first), tuple_(*last)),
                self._identity_filter(self._identity_column),
            )
        )
        rows = union_all(legacy_select, live_select).subquery()
        key = [rows.c[f"k{index}"] for index in range(len(self._key_columns))]
        query = select(rows).order_by(
            *key, rows.c.source, rows.c.version.asc().nulls_first(), rows.c.changed
        )
        return list(session.execute(query))

    def _convert_range(
        self, session: Session, first: tuple[Any, ...], last: tuple[Any, ...]
    ) -> int:
        """Write the missing snapshots of the objects from ``first`` to ``last``.

        :return: the number of objects that got at least one snapshot.
        """
        # Two converters of one table would both see a version as missing.
        session.execute(
            select(
                func.pg_advisory_xact_lock(
                    func.hashtext(literal("chrononaut-convert:" + self._tables[0].name))
                )
            )
        )
        rows = self._object_rows(session, first, last)
        key_width = len(self._key_columns)
        objects = [
            list(object_rows)
            for _, object_rows in groupby(rows, key=lambda row: tuple(row[:key_width]))
        ]
        now = datetime.now(UTC)
        snapshots = [list(self._snapshots(object_rows, now)) for object_rows in objects]
        existing = self._existing_versions(session, snapshots)
        inserts = []
        converted = 0
        for object_snapshots in snapshots:
            missing = [
                snapshot
                for snapshot in object_snapshots
                if (_key_text(snapshot["key"]), snapshot["table_name"], snapshot["version"])
                not in existing
            ]
            converted += bool(missing)
            inserts.extend(missing)
        if inserts:
            session.execute(self._insert_snapshots(), {"snapshots": inserts})
        self.snapshots_written += len(inserts)
        return converted

    def _insert_snapshots(self) -> Insert:
        """One ``INSERT ... SELECT`` of the snapshots passed as one JSON array.

        PostgreSQL unpacks the array with ``jsonb_to_recordset``; this is several times
        faster than sending the rows as parameters. Ids follow the array's order, so an
        object's snapshots get ids in version order.
        """
        activity = self._activity
        names = ("table_name", "changed", "version", "key", "data", "user_info", "extra_info")
        records = (
            func.jsonb_to_recordset(bindparam("snapshots", type_=_SnapshotArray()))
            .table_valued(
                *(column(name, activity.c[name].type) for name in names),
                column("position", Integer),
            )
            .render_derived(name="snapshot", with_types=True)
        )
        rows = select(*(records.c[name] for name in names)).order_by(records.c.position)
        return insert(activity).from_select(names, rows)

    def _existing_versions(
        self, session: Session, snapshots: list[list[dict[str, Any]]]
    ) -> set[tuple[str, str, int]]:
        keys = [object_snapshots[0]["key"] for object_snapshots in snapshots if object_snapshots]
        if not keys:
            return set()
        activity = self._activity
        table_names = {variant.columns.table_name for variant in self._variants.values()}
        query = select(activity.c.key, activity.c.table_name, activity.c.version).where(
            activity.c.table_name.in_(table_names), activity.c.key.in_(keys)
        )
        return {(_key_text(key), name, version) for key, name, version in session.execute(query)}

    def _snapshots(self, rows: list[Row[Any]], now: datetime) -> Iterator[dict[str, Any]]:
        """The snapshots of one object, oldest first (see ``docs/migration.rst``)."""
        history = [row for row in rows if row.source == _FROM_LEGACY]
        live = next((row for row in rows if row.source == _FROM_LIVE), None)
        # Each state began when the previous one was replaced; 0.1 did not record when
        # the first one began, so it is taken from created_at or the first change.
        starts = [self._created(history, live, now)] + [as_utc(row.changed) for row in history]
        infos: list[Any] = [None] + [row.change_info for row in history]
        states: list[tuple[Row[Any], Any]] = [(row, row.version) for row in history]
        if live is not None:
            states.append((live, live.version))
        elif history:
            states.append((history[-1], None))  # deleted: the last state once more
        version = -1
        for (row, stored), changed, change_info in zip(states, starts, infos, strict=True):
            version = version + 1 if stored is None else max(stored, version + 1)
            variant = self._variant_of(row)
            data = {name: serialize_value(row[index]) for name, index in variant.positions}
            data[VERSION_KEY] = version
            user_info, extra_info = _split_change_info(change_info)
            yield {
                "table_name": variant.columns.table_name,
                "changed": changed,
                "version": version,
                "key": {
                    name: serialize_value(row[index])
                    for index, name in enumerate(variant.columns.primary_key)
                },
                "data": data,
                "user_info": user_info,
                "extra_info": extra_info,
            }

    def _value_index(self, column: Column[Any]) -> int:
        """The position of ``column``'s value in the rows of :meth:`_object_rows`."""
        return len(self._key_columns) + self._positions[column]

    def _variant_of(self, row: Row[Any]) -> _Variant:
        if self._identity_column is None:
            return self._variants[None]
        return self._variants[row[self._value_index(self._identity_column)]]

    def _created(self, history: list[Row[Any]], live: Row[Any] | None, now: datetime) -> datetime:
        first_change = as_utc(history[0].changed) if history else None
        created_at = self._created_at_column()
        first_row = history[0] if history else live
        created = None
        if created_at is not None and first_row is not None:
            value = first_row[self._value_index(created_at)]
            created = as_utc(value) if isinstance(value, datetime) else None
        if created is None:
            return first_change or now
        return min(created, first_change) if first_change else created


class _SnapshotArray(TypeDecorator[list[dict[str, Any]]]):
    """A JSON array of snapshots, with ``changed`` as ISO text and their ``position``."""

    impl = JSONB
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Any) -> Any:
        return [{**snapshot, "changed": snapshot["changed"].isoformat()} for snapshot in value]


def _key_columns(mapper: Mapper[Any], id_column: str | Sequence[str]) -> list[Column[Any]]:
    """The primary-key columns in the order ``id_column`` names them."""
    names: list[Any] = (
        list(id_column)
        if isinstance(id_column, Sequence) and not isinstance(id_column, str)
        else [id_column]
    )
    by_name: dict[str, Column[Any]] = {}
    for key_column in mapper.primary_key:
        by_name[key_column.name] = key_column  # type: ignore[assignment]
        by_name[mapper.get_property_by_column(key_column).key] = key_column  # type: ignore[assignment]
    chosen = []
    for name in names:
        if not isinstance(name, str) or name not in by_name:
            break
        chosen.append(by_name[name])
    if (
        len(chosen) != len(names)
        or len(set(chosen)) != len(chosen)
        or set(chosen) != set(mapper.primary_key)
    ):
        primary_key = ", ".join(column.name for column in mapper.primary_key)
        raise ChrononautException(
            f"`id_column` {id_column!r} does not name the primary key of "
            f"{mapper.class_.__name__}, which is ({primary_key})."
        )
    return chosen


def _mapped_tables(mapper: Mapper[Any]) -> list[Table]:
    tables: list[Table] = []
    for ancestor in reversed(list(mapper.iterate_to_root())):
        table = ancestor.local_table
        if not isinstance(table, Table):
            raise ChrononautException(
                f"{ancestor.class_.__name__} is not mapped to a table; it cannot be converted."
            )
        if table not in tables:
            tables.append(table)
    return tables


def _legacy_name(mapper: Mapper[Any]) -> str:
    """The 0.1 history table of the table ``mapper`` introduced."""
    # vars(), not getattr(): a subclass with a table of its own had its own history
    # table in 0.1 even when its parent named the parent's.
    name = vars(mapper.class_).get("__chrononaut_tablename__")
    if name is None:
        return f"{mapper.local_table.name}_history"  # type: ignore[attr-defined]
    if not isinstance(name, str):
        raise ChrononautException(
            f"{mapper.class_.__name__}.__chrononaut_tablename__ must be a table name."
        )
    return name


def _labelled(prefix: str, columns: Sequence[ColumnElement[Any]]) -> list[ColumnElement[Any]]:
    return [column.label(f"{prefix}{index}") for index, column in enumerate(columns)]


def _matching(column: ColumnElement[Any], moment: datetime) -> datetime:
    """``moment`` as the column stores it: naive UTC for ``timestamp without time zone``."""
    moment = as_utc(moment)
    if getattr(column.type, "timezone", True):
        return moment
    return moment.astimezone(UTC).replace(tzinfo=None)


def _split_change_info(change_info: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split a 0.1 ``change_info`` into the ``user_info`` and ``extra_info`` of 0.2+."""
    if not change_info:
        return {}, {}
    if not isinstance(change_info, dict):
        raise ChrononautException(
            f"A 0.1 change_info must be a JSON object or NULL, not {change_info!r}."
        )
    user_info = {
        name: value
        for name, value in change_info.items()
        if name not in (_EXTRA, _HIDDEN_COLS_CHANGED)
    }
    extra_info = dict(change_info.get(_EXTRA) or {})
    if change_info.get(_HIDDEN_COLS_CHANGED):
        extra_info[_HIDDEN_COLS_CHANGED] = list(change_info[_HIDDEN_COLS_CHANGED])
    return user_info, extra_info


def _key_text(key: dict[str, Any]) -> str:
    return json.dumps(key, sort_keys=True)
