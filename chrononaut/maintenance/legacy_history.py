"""Reading the per-table history of Chrononaut 0.1 (``<table>_history`` tables).

Used by :mod:`chrononaut.data_converters`; ``docs/migration.rst`` lists the columns
read. Table and column names come from reflection and the mapping and are quoted by
SQLAlchemy, never pasted into SQL.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Column,
    ColumnElement,
    FromClause,
    MetaData,
    Row,
    Select,
    Table,
    and_,
    cast,
    func,
    literal,
    null,
    select,
    true,
    tuple_,
    type_coerce,
    union,
    union_all,
)
from sqlalchemy.exc import NoSuchTableError
from sqlalchemy.orm import Mapper, Session

from chrononaut.exceptions import ChrononautException
from chrononaut.history.activity import VERSION_KEY
from chrononaut.history.serialization import UTC, as_utc

LEGACY_VERSION = "version"
LEGACY_CHANGED = "changed"
LEGACY_CHANGE_INFO = "change_info"
CREATED_AT = "created_at"

#: Values of the ``source`` column of :meth:`LegacyHistoryReader.object_rows`.
FROM_LEGACY, FROM_LIVE = 0, 1

Key = tuple[Any, ...]


class LegacyHistoryReader:
    """Reads the 0.1 history rows and the live rows of one mapped class's objects.

    Objects are visited in primary-key order. With polymorphic loading, only objects
    stored under the class's own table are read: the class itself and its single-table
    subclasses (:attr:`mappers_by_identity`).

    :param mapper: the mapper of the versioned class.
    :param key_columns: its primary-key columns, in the order to walk them.
    """

    def __init__(self, mapper: Mapper[Any], key_columns: Sequence[Column[Any]]) -> None:
        self.mapper = mapper
        self.key_columns = list(key_columns)
        self._table_mappers = _table_mappers(mapper)
        self._tables = [_table_of(table_mapper) for table_mapper in self._table_mappers]
        self._values = [column for table in self._tables for column in table.columns]
        self._positions = {column: index for index, column in enumerate(self._values)}
        self.identity_column, self.mappers_by_identity = self._polymorphic_family()
        self.created_at = self._created_at_column()
        self._legacy: list[Table] | None = None

    @property
    def table_names(self) -> list[str]:
        """The 0.1 history tables read, the root table's first."""
        return [_legacy_name(table_mapper) for table_mapper in self._table_mappers]

    def value_index(self, column: Column[Any]) -> int:
        """The position of ``column``'s value in the rows of :meth:`object_rows`.

        :raises ChrononautException: ``column`` is not a column of the class's tables.
        """
        if column not in self._positions:
            raise ChrononautException(
                f"{column} is not a column of the tables of {self.mapper.class_.__name__}; "
                "it cannot be read from 0.1 history."
            )
        return len(self.key_columns) + self._positions[column]

    # -- queries -----------------------------------------------------------------------

    def next_keys(
        self, session: Session, after: Key | None, limit: int, since: datetime | None = None
    ) -> list[Key]:
        """Return the keys of the next ``limit`` objects after ``after``, in key order.

        :param since: only objects with 0.1 rows changed since then, or live objects
            created since then (every live object when there is no ``created_at``).
        """
        legacy, live = self._key_selects(session, after, since)
        # Each side is cut to ``limit`` first, so that the database can walk the
        # primary-key indexes instead of merging both tables whole.
        legacy = legacy.distinct().order_by(*legacy.selected_columns).limit(limit)
        live = live.order_by(*live.selected_columns).limit(limit)
        keys = union(legacy, live).subquery()
        query = select(*keys.c).order_by(*keys.c).limit(limit)
        return [tuple(row) for row in session.execute(query)]

    def count(self, session: Session) -> int:
        """Return the number of objects with a live row or 0.1 history."""
        keys = union(*self._key_selects(session, None, None)).subquery()
        return int(session.execute(select(func.count()).select_from(keys)).scalar_one())

    def object_rows(self, session: Session, first: Key, last: Key) -> list[Row[Any]]:
        """Return every 0.1 row and live row of the objects from ``first`` to ``last``.

        Each row holds the key values, then the values of the class's table columns
        (see :meth:`value_index`), then ``version``, ``changed``, ``change_info`` and
        ``source`` (:data:`FROM_LEGACY` or :data:`FROM_LIVE`). Rows come ordered by key,
        then the 0.1 rows by version, then the live row. One statement reads both, so a
        0.1 application that still runs cannot change an object between two reads.
        """
        legacy = self._reflect(session)
        root = legacy[0]
        legacy_keys = [self._legacy_column(legacy, column) for column in self.key_columns]
        change_info = root.c.get(LEGACY_CHANGE_INFO)
        legacy_select = (
            select(
                *_labelled("k", legacy_keys),
                *_labelled("v", [self._legacy_column(legacy, column) for column in self._values]),
                root.c[LEGACY_VERSION].label("version"),
                root.c[LEGACY_CHANGED].label("changed"),
                (change_info if change_info is not None else null()).label("change_info"),
                literal(FROM_LEGACY).label("source"),
            )
            .select_from(self._legacy_from(legacy))
            .where(
                tuple_(*legacy_keys).between(tuple_(*first), tuple_(*last)),
                self._identity_filter(legacy),
            )
        )
        # NULLs cast to the 0.1 column types: a timestamp without time zone must not be
        # widened to timestamptz, which PostgreSQL would do in the session's time zone.
        live_select = (
            select(
                *self.key_columns,
                *self._values,
                self.mapper.get_property(VERSION_KEY).columns[0],
                cast(null(), root.c[LEGACY_CHANGED].type),
                cast(null(), change_info.type) if change_info is not None else null(),
                literal(FROM_LIVE),
            )
            .select_from(self.mapper.persist_selectable)
            .where(
                tuple_(*self.key_columns).between(tuple_(*first), tuple_(*last)),
                self._identity_filter(None),
            )
        )
        rows = union_all(legacy_select, live_select).subquery()
        keys = [rows.c[f"k{index}"] for index in range(len(self.key_columns))]
        query = select(rows).order_by(
            *keys, rows.c.source, rows.c.version.asc().nulls_first(), rows.c.changed
        )
        return list(session.execute(query))

    # -- the class's shape -------------------------------------------------------------

    def _polymorphic_family(self) -> tuple[Column[Any] | None, dict[Any, Mapper[Any]]]:
        mapper = self.mapper
        identity_column = mapper.polymorphic_on
        if identity_column is None:
            return None, {None: mapper}
        if not isinstance(identity_column, Column) or identity_column not in self._positions:
            raise ChrononautException(
                f"{mapper.class_.__name__} is polymorphic on an expression; only a "
                "discriminator column of its tables can be converted."
            )
        # Objects of a joined subclass carry that subclass's table name in their
        # snapshots: its own converter reads them.
        family = {
            identity: sub_mapper
            for identity, sub_mapper in mapper.polymorphic_map.items()
            if sub_mapper.isa(mapper) and sub_mapper.local_table is mapper.local_table
        }
        return identity_column, family

    def _created_at_column(self) -> Column[Any] | None:
        prop = self.mapper.column_attrs.get(CREATED_AT)
        column = prop.columns[0] if prop is not None else None
        return column if isinstance(column, Column) and column in self._positions else None

    # -- the 0.1 tables ----------------------------------------------------------------

    def _reflect(self, session: Session) -> list[Table]:
        """Reflect the 0.1 history tables, checking the columns that are read."""
        if self._legacy is not None:
            return self._legacy
        connection = session.connection(bind_arguments={"mapper": self.mapper})
        metadata = MetaData()
        tables = []
        for index, (table_mapper, table) in enumerate(
            zip(self._table_mappers, self._tables, strict=True)
        ):
            name = _legacy_name(table_mapper)
            try:
                legacy = Table(name, metadata, schema=table.schema, autoload_with=connection)
            except NoSuchTableError:
                raise ChrononautException(
                    f"The 0.1 history table {name!r} of {table_mapper.class_.__name__} "
                    "does not exist."
                ) from None
            required = [column.name for column in table.primary_key] + [LEGACY_VERSION]
            if index == 0:
                required.append(LEGACY_CHANGED)
            missing = [column for column in required if column not in legacy.c]
            if missing:
                raise ChrononautException(
                    f"The 0.1 history table {name!r} lacks the column(s) {', '.join(missing)}."
                )
            tables.append(legacy)
        self._legacy = tables
        return tables

    def _legacy_from(self, legacy: list[Table]) -> FromClause:
        """The root table's history joined, row by row, with the subclass tables'."""
        root = legacy[0]
        joined: FromClause = root
        root_key = list(self._tables[0].primary_key)
        for table, history in zip(self._tables[1:], legacy[1:], strict=True):
            same_row = [
                history.c[own.name] == root.c[parent.name]
                for own, parent in zip(table.primary_key, root_key, strict=True)
            ]
            # Like IS NOT DISTINCT FROM, but an equality PostgreSQL can hash-join on.
            same_row.append(
                func.coalesce(history.c[LEGACY_VERSION], -1)
                == func.coalesce(root.c[LEGACY_VERSION], -1)
            )
            joined = joined.join(history, and_(*same_row))
        return joined

    def _legacy_column(self, legacy: list[Table], column: Column[Any]) -> ColumnElement[Any]:
        """The 0.1 column holding ``column``, read with the model's type, or NULL."""
        history = legacy[self._tables.index(column.table)]
        if column.name in history.c:
            return type_coerce(history.c[column.name], column.type)
        return cast(null(), column.type)

    def _identity_filter(self, legacy: list[Table] | None) -> ColumnElement[bool]:
        """Restrict the 0.1 rows (or the live rows, for ``None``) to the family's identities."""
        if self.identity_column is None:
            return true()
        column = (
            self.identity_column
            if legacy is None
            else self._legacy_column(legacy, self.identity_column)
        )
        return column.in_(list(self.mappers_by_identity))

    def _key_selects(
        self, session: Session, after: Key | None, since: datetime | None
    ) -> tuple[Select[Any], Select[Any]]:
        legacy = self._reflect(session)
        changed = legacy[0].c[LEGACY_CHANGED]
        legacy_keys = [self._legacy_column(legacy, column) for column in self.key_columns]
        legacy_where = [self._identity_filter(legacy)]
        live_where = [self._identity_filter(None)]
        if since is not None:
            legacy_where.append(changed >= _as_stored(changed, since))
            if self.created_at is not None:
                live_where.append(self.created_at >= _as_stored(self.created_at, since))
        if after is not None:
            legacy_where.append(tuple_(*legacy_keys) > tuple_(*after))
            live_where.append(tuple_(*self.key_columns) > tuple_(*after))
        return (
            select(*legacy_keys).select_from(self._legacy_from(legacy)).where(*legacy_where),
            select(*self.key_columns)
            .select_from(self.mapper.persist_selectable)
            .where(*live_where),
        )


def _table_mappers(mapper: Mapper[Any]) -> list[Mapper[Any]]:
    """The mapper that introduced each table of ``mapper``'s chain, root first."""
    if mapper.concrete:
        # A concrete class's own table holds all its columns, as its 0.1 history did.
        return [mapper]
    by_table: dict[FromClause, Mapper[Any]] = {}
    for ancestor in reversed(list(mapper.iterate_to_root())):
        by_table.setdefault(ancestor.local_table, ancestor)
    return list(by_table.values())


def _table_of(mapper: Mapper[Any]) -> Table:
    table = mapper.local_table
    if not isinstance(table, Table):
        raise ChrononautException(
            f"{mapper.class_.__name__} is not mapped to a table; it cannot be converted."
        )
    return table


def _legacy_name(mapper: Mapper[Any]) -> str:
    """The 0.1 history table of the table ``mapper`` introduced."""
    # vars(), not getattr(): a subclass with a table of its own had its own history
    # table in 0.1 even when its parent named the parent's.
    name = vars(mapper.class_).get("__chrononaut_tablename__")
    if name is None:
        return f"{_table_of(mapper).name}_history"
    if not isinstance(name, str):
        raise ChrononautException(
            f"{mapper.class_.__name__}.__chrononaut_tablename__ must be a table name."
        )
    return name


def _labelled(prefix: str, columns: Sequence[ColumnElement[Any]]) -> list[ColumnElement[Any]]:
    return [column.label(f"{prefix}{index}") for index, column in enumerate(columns)]


def _as_stored(column: ColumnElement[Any], moment: datetime) -> datetime:
    """``moment`` as ``column`` stores it: naive UTC for ``timestamp without time zone``."""
    moment = as_utc(moment)
    if getattr(column.type, "timezone", True):
        return moment
    return moment.astimezone(UTC).replace(tzinfo=None)
