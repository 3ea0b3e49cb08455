"""The temporary views a past session reads instead of the versioned tables.

Each view is named like the live table it stands for and has every one of its columns,
so that the ORM's own SQL (queries, lazy and eager loads) reads it unchanged. A row of
the view is an object's newest activity row at or before the moment, unless that row
is a delete (:func:`~chrononaut.history.lives.deleted_condition`): the rule of
:meth:`~chrononaut.history.reads.HistoryReads.version_at`, for every object at once.
Tracked values are read back from the snapshot JSON and typed as the column; hidden
and untracked columns are ``NULL``, since their values were never stored.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Select,
    Table,
    and_,
    cast,
    exists,
    func,
    null,
    or_,
    select,
    tuple_,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import Mapper

from chrononaut.history.activity import VERSION_KEY
from chrononaut.history.columns import VersionedColumns, is_versioned_table
from chrononaut.history.lives import deleted_condition
from chrononaut.history.stored_sql import stored_value


@dataclass(frozen=True)
class PastTable:
    """A versioned table and the versioned mappers whose objects have rows in it.

    Besides the models mapped to the table itself, a joined-inheritance base table
    holds a row for each object of its subclasses, whose history is recorded under the
    subclass's own table name.
    """

    table: Table
    mappers: tuple[Mapper[Any], ...]

    def sources(self) -> dict[str, Mapper[Any]]:
        """The ``table_name`` of each mapper's activity rows, with the topmost mapper
        recording under it (single-table subclasses record under their parent's)."""
        sources: dict[str, Mapper[Any]] = {}
        for mapper in self.mappers:
            top = mapper
            while top.inherits is not None and top.inherits.local_table is top.local_table:
                top = top.inherits
            sources.setdefault(VersionedColumns.of(top).table_name, top)
        return sources


def past_tables(mappers: Iterable[Mapper[Any]]) -> list[PastTable]:
    """Group the versioned mappers among ``mappers`` by the tables they write."""
    by_table: dict[Table, list[Mapper[Any]]] = {}
    for mapper in mappers:
        if not is_versioned_table(mapper.local_table):
            continue
        for table in mapper.tables:
            if isinstance(table, Table):
                by_table.setdefault(table, []).append(mapper)
    # Registries keep their mappers in a set: sorted, the views and their SQL come out
    # the same in every process.
    return [
        PastTable(table, tuple(sorted(found, key=_class_name)))
        for table, found in sorted(by_table.items(), key=lambda item: item[0].fullname)
    ]


def _class_name(mapper: Mapper[Any]) -> str:
    return f"{mapper.class_.__module__}.{mapper.class_.__qualname__}"


#: The transaction-local setting the views read the moment from, so that the SQL of
#: each view is the same for every moment and is built once.
MOMENT_SETTING = "chrononaut.past_moment"
#: ``Table.info`` key: the SQL of the table's view, by dialect and mapping.
_VIEW_SQL_KEY = "chrononaut.past_view_sql"


def view_sql(past: PastTable, activity: Table, dialect: Dialect) -> str:
    """Return the SELECT of the view of ``past.table``, as SQL text for ``dialect``.

    Views take no parameters, so its values are inlined; building and compiling it
    took most of the time of opening a past session, so it is done once.
    """
    key = (dialect.name, dialect.driver, dialect.server_version_info, activity, past.mappers)
    cached: dict[Any, str] = past.table.info.setdefault(_VIEW_SQL_KEY, {})
    sql = cached.get(key)
    if sql is None:
        statement = view_statement(past, activity)
        sql = cached[key] = str(
            statement.compile(dialect=dialect, compile_kwargs={"literal_binds": True})
        )
    return sql


def view_statement(past: PastTable, activity: Table) -> Select[Any]:
    """Return the SELECT of the view of ``past.table`` at the moment in
    :data:`MOMENT_SETTING`."""
    rows = activity.alias("past_row")
    newer = activity.alias("newer_row")
    sources = past.sources()
    names = list(sources)
    moment = cast(func.current_setting(MOMENT_SETTING), activity.c.changed.type)
    newest = ~exists().where(
        newer.c.table_name.in_(names),
        newer.c.key == rows.c.key,
        newer.c.changed <= moment,
        tuple_(newer.c.changed, newer.c.id) > tuple_(rows.c.changed, rows.c.id),
    )
    deleted = or_(
        *(
            and_(rows.c.table_name == name, deleted_condition(rows, activity, mapper))
            for name, mapper in sources.items()
        )
    )
    return select(*_columns(past, rows)).where(
        rows.c.table_name.in_(names), rows.c.changed <= moment, newest, ~deleted
    )


def _columns(past: PastTable, rows: Any) -> list[ColumnElement[Any]]:
    """Every column of the live table, in its order, as the past row holds it."""
    roles = [
        (_attributes_by_column(mapper), VersionedColumns.of(mapper).tracked_keys)
        for mapper in past.mappers
    ]
    columns: list[ColumnElement[Any]] = []
    for column in past.table.columns:
        mapped = [(found[column], tracked) for found, tracked in roles if column in found]
        names = list(dict.fromkeys(name for name, _ in mapped))
        value: ColumnElement[Any]
        if column.primary_key:
            value = _coalesce(stored_value(rows.c.key[name], column.type) for name in names)
        elif names == [VERSION_KEY]:
            value = rows.c.version
        elif mapped and all(name in tracked for name, tracked in mapped):
            value = _coalesce(stored_value(rows.c.data[name], column.type) for name in names)
        else:
            # Hidden and untracked values were never stored, and a column that no
            # versioned class maps has nothing to read either.
            value = null()
        columns.append(cast(value, column.type).label(column.name))
    return columns


def _attributes_by_column(mapper: Mapper[Any]) -> dict[Any, str]:
    return {column: prop.key for prop in mapper.column_attrs for column in prop.columns}


def _coalesce(values: Iterable[ColumnElement[Any]]) -> ColumnElement[Any]:
    found = list(values)
    return found[0] if len(found) == 1 else func.coalesce(*found)
