"""The 0.1 history tables of a mapped class, and which classes' rows they hold.

Chrononaut 0.1 kept one ``<table>_history`` table per table of a versioned class
(``__chrononaut_tablename__`` renamed it). A class's converter reads the history
tables of its mapper chain; its joined-table subclasses are converted on their own.
"""

from __future__ import annotations

from itertools import takewhile
from typing import Any

from sqlalchemy import ColumnElement, FromClause, MetaData, Table, and_, func
from sqlalchemy.engine import Connection
from sqlalchemy.exc import NoSuchTableError
from sqlalchemy.orm import Mapper

from chrononaut.exceptions import ChrononautException

LEGACY_VERSION = "version"
LEGACY_CHANGED = "changed"
LEGACY_CHANGE_INFO = "change_info"


def introduces_table(mapper: Mapper[Any]) -> bool:
    """Tell whether ``mapper`` maps a table of its own rather than its parent's."""
    return mapper.inherits is None or mapper.local_table is not mapper.inherits.local_table


def subclasses_elsewhere(mapper: Mapper[Any]) -> list[Mapper[Any]]:
    """The joined-table subclasses below ``mapper``, and their subclasses.

    Concrete subclasses are left out: their objects are not in ``mapper``'s table.
    """
    return [
        sub
        for sub in mapper.self_and_descendants
        if sub.local_table is not mapper.local_table
        and not any(
            between.concrete
            for between in takewhile(lambda between: between is not mapper, sub.iterate_to_root())
        )
    ]


def same_row(
    table: Table, history: Table, root_table: Table, root_history: Table
) -> ColumnElement[bool]:
    """Tell whether a row of ``history`` (of ``table``, a joined subclass's) holds its
    part of a row of ``root_history`` (of ``root_table``): same key, same version."""
    same = [
        history.c[own.name] == root_history.c[parent.name]
        for own, parent in zip(table.primary_key, root_table.primary_key, strict=True)
    ]
    # Like IS NOT DISTINCT FROM, but an equality PostgreSQL can hash-join on.
    same.append(
        func.coalesce(history.c[LEGACY_VERSION], -1)
        == func.coalesce(root_history.c[LEGACY_VERSION], -1)
    )
    return and_(*same)


def reflect_legacy(connection: Connection, metadata: MetaData, mapper: Mapper[Any]) -> Table | None:
    """The 0.1 history table of the table ``mapper`` introduced, or ``None``."""
    try:
        return Table(
            legacy_name(mapper),
            metadata,
            schema=table_of(mapper).schema,
            autoload_with=connection,
        )
    except NoSuchTableError:
        return None


def check_columns(legacy: Table, mapper: Mapper[Any], with_changed: bool) -> None:
    """Check that ``legacy`` has the columns the conversion reads."""
    required = [column.name for column in table_of(mapper).primary_key] + [LEGACY_VERSION]
    if with_changed:
        required.append(LEGACY_CHANGED)
    missing = [column for column in required if column not in legacy.c]
    if missing:
        raise ChrononautException(
            f"The 0.1 history table {legacy.name!r} lacks the column(s) {', '.join(missing)}."
        )


def table_mappers(mapper: Mapper[Any]) -> list[Mapper[Any]]:
    """The mapper that introduced each table of ``mapper``'s chain, root first."""
    if mapper.concrete:
        # A concrete class's own table holds all its columns, as its 0.1 history did.
        return [mapper]
    by_table: dict[FromClause, Mapper[Any]] = {}
    for ancestor in reversed(list(mapper.iterate_to_root())):
        by_table.setdefault(ancestor.local_table, ancestor)
    return list(by_table.values())


def table_of(mapper: Mapper[Any]) -> Table:
    table = mapper.local_table
    if not isinstance(table, Table):
        raise ChrononautException(
            f"{mapper.class_.__name__} is not mapped to a table; it cannot be converted."
        )
    return table


def legacy_name(mapper: Mapper[Any]) -> str:
    """The 0.1 history table of the table ``mapper`` introduced."""
    # vars(), not getattr(): a subclass with a table of its own had its own history
    # table in 0.1 even when its parent named the parent's.
    name = vars(mapper.class_).get("__chrononaut_tablename__")
    if name is None:
        return f"{table_of(mapper).name}_history"
    if not isinstance(name, str):
        raise ChrononautException(
            f"{mapper.class_.__name__}.__chrononaut_tablename__ must be a table name."
        )
    return name
