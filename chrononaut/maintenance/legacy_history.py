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
    or_,
    select,
    true,
    tuple_,
    type_coerce,
    union,
    union_all,
)
from sqlalchemy.orm import Mapper, Session

from chrononaut.exceptions import ChrononautException
from chrononaut.history.activity import VERSION_KEY
from chrononaut.history.serialization import UTC, as_utc
from chrononaut.maintenance.legacy_tables import (
    LEGACY_CHANGE_INFO,
    LEGACY_CHANGED,
    LEGACY_VERSION,
    check_columns,
    introduces_table,
    legacy_name,
    reflect_legacy,
    same_row,
    subclasses_elsewhere,
    table_mappers,
    table_of,
)

CREATED_AT = "created_at"

#: Values of the ``source`` column of :meth:`LegacyHistoryReader.object_rows`.
FROM_LEGACY, FROM_LIVE = 0, 1

Key = tuple[Any, ...]


class LegacyHistoryReader:
    """Reads the 0.1 history rows and the live rows of one mapped class's objects.

    Objects are visited in primary-key order. Every 0.1 row belongs to exactly one
    class with a table of its own (the root, a joined or a concrete subclass):

    - a joined subclass's rows are those with a part in its own table's history, or
      whose discriminator names it or one of its single-table subclasses; the root's
      are all the others, whatever their discriminator says (a class renamed or
      removed since, or ``NULL``);
    - from these, the rows of subclasses further down with tables of their own are
      left to them, by the same rule. Live rows are divided the same way, by the
      subclasses' tables instead of their histories.

    A single-table subclass reads only the rows of its own kind and its single-table
    subclasses' (:attr:`mappers_by_identity`), a part of its parent's.

    :param mapper: the mapper of the versioned class.
    :param key_columns: its primary-key columns, in the order to walk them.
    """

    def __init__(self, mapper: Mapper[Any], key_columns: Sequence[Column[Any]]) -> None:
        self.mapper = mapper
        self.key_columns = list(key_columns)
        self._table_mappers = table_mappers(mapper)
        self._tables = [table_of(table_mapper) for table_mapper in self._table_mappers]
        self._values = [column for table in self._tables for column in table.columns]
        self._positions = {column: index for index, column in enumerate(self._values)}
        self.identity_column, self.mappers_by_identity = self._polymorphic_family()
        #: The subclasses, at any depth, whose objects are stored in a table below
        #: this class's; this reader leaves their rows to their own converters.
        self.subclasses_elsewhere = subclasses_elsewhere(mapper)
        # The subclasses whose tables join this class's own table.
        self._partners = [
            sub
            for sub in self.subclasses_elsewhere
            if sub.inherits is not None and sub.inherits.local_table is mapper.local_table
        ]
        self.created_at = self._created_at_column()
        self._legacy: list[Table] | None = None
        self._partner_legacy: list[tuple[Mapper[Any], Table]] = []

    @property
    def table_names(self) -> list[str]:
        """The 0.1 history tables read, the root table's first."""
        return [legacy_name(table_mapper) for table_mapper in self._table_mappers]

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

    def attribute_index(self, mapper: Mapper[Any], name: str) -> int:
        """The position of the value of ``mapper``'s attribute ``name`` in those rows.

        An attribute mapped to columns of several tables (the key of joined-table
        inheritance) is read from the one nearest the root, which every 0.1 row has.

        :param mapper: the class's mapper or one of its single-table subclasses'.
        :raises ChrononautException: no column of the attribute is in the class's tables.
        """
        columns = mapper.get_property(name).columns
        readable = [column for column in columns if column in self._positions]
        if not readable:
            return self.value_index(columns[0])  # raises, naming the column
        return min(self.value_index(column) for column in readable)

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
                self._ownership(legacy),
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
                self._ownership(None),
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
        for index, table_mapper in enumerate(self._table_mappers):
            legacy = reflect_legacy(connection, metadata, table_mapper)
            if legacy is None:
                raise ChrononautException(
                    f"The 0.1 history table {legacy_name(table_mapper)!r} of "
                    f"{table_mapper.class_.__name__} does not exist."
                )
            check_columns(legacy, table_mapper, with_changed=index == 0)
            tables.append(legacy)
        # A subclass added after 0.1 has no history table, and so no rows to leave to it.
        self._partner_legacy = []
        for sub in self._partners:
            legacy = reflect_legacy(connection, metadata, sub)
            if legacy is not None:
                check_columns(legacy, sub, with_changed=False)
                self._partner_legacy.append((sub, legacy))
        self._legacy = tables
        return tables

    def _legacy_from(self, legacy: list[Table]) -> FromClause:
        """The root table's history joined, row by row, with the subclass tables'.

        Outer joins: a row recorded before a subclass had its table has no part in that
        table's history, and its columns read as ``NULL``.
        """
        joined: FromClause = legacy[0]
        for table, history in zip(self._tables[1:], legacy[1:], strict=True):
            joined = joined.outerjoin(history, same_row(table, history, self._tables[0], legacy[0]))
        return joined

    def _legacy_column(self, legacy: list[Table], column: Column[Any]) -> ColumnElement[Any]:
        """The 0.1 column holding ``column``, read with the model's type, or NULL."""
        history = legacy[self._tables.index(column.table)]
        if column.name in history.c:
            return type_coerce(history.c[column.name], column.type)
        return cast(null(), column.type)

    def _ownership(self, legacy: list[Table] | None) -> ColumnElement[bool]:
        """The condition that a 0.1 row (or a live row, for ``None``) is this class's,
        by the rule of the class docstring."""
        identity = None
        if self.identity_column is not None:
            identity = (
                self.identity_column
                if legacy is None
                else self._legacy_column(legacy, self.identity_column)
            )
        family = list(self.mappers_by_identity)
        if not introduces_table(self.mapper):
            return true() if identity is None else identity.in_(family)
        conditions: list[ColumnElement[bool]] = []
        if legacy is not None and len(legacy) > 1:
            # A joined subclass: the rows that have a part in its own table's history,
            # or whose discriminator names its family.
            own_part = legacy[-1].c[table_of(self.mapper).primary_key.columns[0].name].is_not(None)
            conditions.append(own_part if identity is None else or_(own_part, identity.in_(family)))
        claimed = [
            sub.polymorphic_identity
            for sub in self.subclasses_elsewhere
            if sub.polymorphic_identity is not None
        ]
        if identity is not None and claimed:
            conditions.append(or_(identity.is_(None), identity.not_in(claimed)))
        if legacy is None:
            conditions.extend(
                ~select(literal(1))
                .select_from(sub.local_table)
                .where(sub.inherit_condition)
                .exists()
                for sub in self._partners
                if sub.inherit_condition is not None
            )
        else:
            conditions.extend(
                ~select(literal(1))
                .select_from(history)
                .where(same_row(table_of(sub), history, self._tables[0], legacy[0]))
                .exists()
                for sub, history in self._partner_legacy
            )
        return and_(true(), *conditions)

    def _key_selects(
        self, session: Session, after: Key | None, since: datetime | None
    ) -> tuple[Select[Any], Select[Any]]:
        legacy = self._reflect(session)
        changed = legacy[0].c[LEGACY_CHANGED]
        legacy_keys = [self._legacy_column(legacy, column) for column in self.key_columns]
        legacy_where = [self._ownership(legacy)]
        live_where = [self._ownership(None)]
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


def _labelled(prefix: str, columns: Sequence[ColumnElement[Any]]) -> list[ColumnElement[Any]]:
    return [column.label(f"{prefix}{index}") for index, column in enumerate(columns)]


def _as_stored(column: ColumnElement[Any], moment: datetime) -> datetime:
    """``moment`` as ``column`` stores it: naive UTC for ``timestamp without time zone``."""
    moment = as_utc(moment)
    if getattr(column.type, "timezone", True):
        return moment
    return moment.astimezone(UTC).replace(tzinfo=None)
