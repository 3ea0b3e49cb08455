"""The statements that build the snapshots of a recorded statement's rows in the server.

Building ten thousand snapshots in Python, encoding them as JSON and sending them back
took most of the time of a recorded statement (see docs/behaviour.rst, "Statements
that write many rows"). Here the server builds them, with the value expressions of the
safety net (:mod:`chrononaut.capture.trigger_values`), which write each value in the
exact form Python writes:

- :func:`written_history`: the UPDATE or DELETE runs as a data-modifying CTE of the
  INSERT of its history, one statement for both;
- :func:`keyed_history`: the statement ran by itself and returned its rows' primary
  keys; the INSERT of their history reads the rows from the table, where they are as
  the statement wrote them, locked (or not yet visible to others) until the end of the
  transaction.

Only models whose columns all have such an expression take this way
(:func:`built_in_server`); the others keep the snapshots built in Python.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any
from weakref import WeakKeyDictionary

from sqlalchemy import (
    ARRAY,
    BigInteger,
    Insert,
    Table,
    Text,
    and_,
    bindparam,
    cast,
    func,
    insert,
    literal_column,
    select,
    types,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapper
from sqlalchemy.sql.expression import ColumnElement, FromClause

from chrononaut.capture.trigger_sql import RowSQL, hidden_changes
from chrononaut.capture.trigger_values import (
    UnsupportedColumnError,
    json_expression,
    literal,
    may_hold_escape_mark,
)
from chrononaut.history.activity import DELETE, INSERT, VERSION_KEY
from chrononaut.history.columns import VersionedColumns

#: The name of the rows a recorded statement wrote, in the statements built here.
WRITTEN = "chrononaut_written"
#: The activity columns the statements built here fill, in their order.
_ACTIVITY_COLUMNS = (
    "table_name",
    "changed",
    "version",
    "key",
    "data",
    "user_info",
    "extra_info",
    "operation",
    "transaction_id",
)

_built_in_server: WeakKeyDictionary[Mapper[Any], bool] = WeakKeyDictionary()


def built_in_server(mapper: Mapper[Any]) -> bool:
    """Tell whether the server can build the snapshots of ``mapper``'s rows exactly as
    Python builds them.

    It cannot when the statement may write rows of several classes (inheritance),
    which track different columns, nor for a column whose snapshot JSON SQL does not
    write as Python does: types without an expression, floats (PostgreSQL may write
    other digits of the same number), and JSON and text arrays, whose strings Python
    escapes when they hold NUL or start with the escape mark. A JSON hidden column is
    left out as well: its JSON ``null`` is SQL-not-NULL but Python's ``None``.
    """
    known = _built_in_server.get(mapper)
    if known is None:
        known = _built_in_server[mapper] = _builds_in_server(mapper)
    return known


def _builds_in_server(mapper: Mapper[Any]) -> bool:
    if len(list(mapper.self_and_descendants)) > 1:
        return False
    columns = VersionedColumns.of(mapper)
    for name in (*columns.primary_key, *columns.tracked):
        column_type = mapper.columns[name].type
        if (
            may_hold_escape_mark(column_type)
            or isinstance(column_type, types.Float)
            or (isinstance(column_type, types.Numeric) and not column_type.asdecimal)
        ):
            return False
        try:
            json_expression("NULL", column_type, name)
        except UnsupportedColumnError:
            return False
    return not any(isinstance(mapper.columns[name].type, types.JSON) for name in columns.hidden)


def written_history(
    mapper: Mapper[Any],
    activity: Table,
    written: FromClause,
    operation: str,
    info: tuple[dict[str, Any], dict[str, Any]],
    changed: datetime,
) -> Insert:
    """The INSERT of the snapshots of ``written``: the rows an UPDATE or DELETE returns,
    as a CTE named :data:`WRITTEN`, which the INSERT then runs as part of itself.

    :param info: the user info and the extra info of every snapshot.
    """
    query = select(*_snapshot_values(mapper, operation, info, changed)).select_from(written)
    # Its rowcount, one activity row per row written, is the caller's: SQLAlchemy keeps
    # an INSERT's only when asked, and psycopg 3 forgets it once the cursor closes.
    return (
        insert(activity)
        .from_select(list(_ACTIVITY_COLUMNS), query)
        .execution_options(preserve_rowcount=True)
    )


def keyed_history(
    mapper: Mapper[Any],
    activity: Table,
    keys: Sequence[Sequence[Any]],
    operation: str,
    info: tuple[dict[str, Any], dict[str, Any]],
    changed: datetime,
) -> Insert:
    """The INSERT of the snapshots of the rows of ``mapper``'s table with the primary
    keys ``keys`` (one sequence of values per row, in the order of the primary key
    columns), in the order of ``keys``."""
    table = mapper.local_table
    assert isinstance(table, Table)
    key_columns = list(table.primary_key)
    # One array per key column, unnested side by side: one parameter each, whatever
    # the number of rows.
    arrays = [
        cast(
            bindparam(f"chrononaut_key_{position}", [row[position] for row in keys], ARRAY(c.type)),
            ARRAY(c.type),
        )
        for position, c in enumerate(key_columns)
    ]
    names = [f"k{position}" for position in range(len(key_columns))]
    given = (
        func.unnest(*arrays)
        .table_valued(*names, with_ordinality="n")
        .render_derived(name="chrononaut_keys")
    )
    rows = table.alias(WRITTEN)
    joined = given.join(
        rows,
        and_(*(rows.c[c.key] == given.c[name] for c, name in zip(key_columns, names, strict=True))),
    )
    query = (
        select(*_snapshot_values(mapper, operation, info, changed))
        .select_from(joined)
        .order_by(given.c.n)
    )
    return insert(activity).from_select(list(_ACTIVITY_COLUMNS), query)


def _snapshot_values(
    mapper: Mapper[Any],
    operation: str,
    info: tuple[dict[str, Any], dict[str, Any]],
    changed: datetime,
) -> list[ColumnElement[Any]]:
    """The SELECT list of the activity rows of the rows named :data:`WRITTEN`, by the
    rules of a flush (see :class:`~chrononaut.capture.bulk._SnapshotBuilder`)."""
    columns = VersionedColumns.of(mapper)
    row = RowSQL(mapper, WRITTEN)
    version = row.value(VERSION_KEY)
    if operation == DELETE:
        version = f"coalesce({version}, 0) + 1"
    elif operation == INSERT:
        # A version column without a default: NULL counts as version 0.
        version = f"coalesce({version}, 0)"
    user_info, extra_info = info
    extra: ColumnElement[Any] = cast(bindparam("chrononaut_extra_info", extra_info, JSONB), JSONB)
    if operation == INSERT and columns.hidden:
        # The hidden columns a new row gives a value; an UPDATE's are in ``extra_info``.
        listed = hidden_changes(columns.hidden, lambda name: f"{row.value(name)} IS NOT NULL")
        extra = extra.op("||")(literal_column(listed.removeprefix(" || "), JSONB))
    return [
        literal_column(literal(columns.table_name)),
        bindparam("chrononaut_changed", changed, types.DateTime(timezone=True)),
        literal_column(version, types.Integer),
        literal_column(row.object(columns.primary_key), JSONB),
        literal_column(row.object(columns.tracked, version), JSONB),
        cast(bindparam("chrononaut_user_info", user_info, JSONB), JSONB),
        extra,
        literal_column(literal(operation)),
        # xid8 has no cast to bigint; its text form is the 64-bit number.
        cast(cast(func.pg_current_xact_id(), Text), BigInteger),
    ]
