"""What each activity row did to its object, including rows that do not say.

Rows written since 1.0 record their operation. Rows written before (by Chrononaut
0.5, or before the migration that added the column) do not, and the rule below reads
theirs from the object's other rows, so that dated reads are exact on old data too:

- a row with version 0 is an insert (every object starts at version 0);
- a row followed by a version 0 row of the same key, or by a recorded insert (an
  undelete, which carries the version numbers on), is a delete: the key started a
  new life after it, and the original recorded each delete as one more snapshot;
- the newest row of a key is a delete when no live row has that key any more;
- any other row is an update.

Objects deleted inside ``suppress_versioning()`` leave no row, so the rule cannot see
their delete: their last recorded state is taken to be their delete only when no row
follows it. This module is the one place of the rule, in Python for rows already read
and in SQL for dated reads.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    ColumnElement,
    FromClause,
    Select,
    and_,
    cast,
    exists,
    func,
    select,
    tuple_,
)
from sqlalchemy.orm import Mapper

from chrononaut.history.activity import DELETE, INSERT, UPDATE
from chrononaut.history.snapshot import HistorySnapshot


def operation_of(snapshot: HistorySnapshot, following: HistorySnapshot | None, live: bool) -> str:
    """Return the operation of ``snapshot``: the recorded one, else the rule's.

    :param following: the object's next row after ``snapshot``, if there is one.
    :param live: a live row has the snapshot's key.
    :return: :data:`~chrononaut.history.activity.INSERT`, ``UPDATE`` or ``DELETE``.
    """
    if snapshot.chrononaut_operation is not None:
        return snapshot.chrononaut_operation
    if snapshot.chrononaut_version == 0:
        return INSERT
    if following is not None:
        starts_a_life = (
            following.chrononaut_version == 0 or following.chrononaut_operation == INSERT
        )
        return DELETE if starts_a_life else UPDATE
    return UPDATE if live else DELETE


def row_before(statement: Select[Any], earlier: FromClause, rows: FromClause) -> Select[Any]:
    """Narrow ``statement``, a select from ``earlier`` (an alias of the activity table),
    to the row of the same object recorded just before the row of ``rows``.

    The order is history's one order, ``(changed, id)``, which the read index
    ``(table_name, key, changed, id)`` serves with one lookup.
    """
    return (
        statement.where(
            earlier.c.table_name == rows.c.table_name,
            earlier.c.key == rows.c.key,
            tuple_(earlier.c.changed, earlier.c.id) < tuple_(rows.c.changed, rows.c.id),
        )
        .order_by(earlier.c.changed.desc(), earlier.c.id.desc())
        .limit(1)
    )


def row_after(statement: Select[Any], later: FromClause, rows: FromClause) -> Select[Any]:
    """Narrow ``statement``, a select from ``later`` (an alias of the activity table), to
    the row of the same object recorded just after the row of ``rows``."""
    return (
        statement.where(
            later.c.table_name == rows.c.table_name,
            later.c.key == rows.c.key,
            tuple_(later.c.changed, later.c.id) > tuple_(rows.c.changed, rows.c.id),
        )
        .order_by(later.c.changed, later.c.id)
        .limit(1)
    )


def deleted_condition(
    rows: FromClause, activity: FromClause, mapper: Mapper[Any]
) -> ColumnElement[bool]:
    """Return the SQL condition that the activity row of ``rows`` is a delete.

    :param rows: a selectable with the activity columns of the rows to test (the
        activity table itself, an alias or a subquery of it).
    :param activity: the activity table, to find each row's next row in, or a
        selectable with its columns (a table made before the time-travel columns is
        read through one that gives them as NULL).
    :param mapper: the versioned model's mapper, whose table holds the live rows.
    """
    later = activity.alias("later")
    next_starts_a_life = row_after(
        select(later.c.operation.is_not_distinct_from(INSERT) | (later.c.version == 0)),
        later,
        rows,
    ).scalar_subquery()
    live = mapper.local_table
    live_row = (
        exists()
        .where(
            *(
                column == cast(rows.c.key[prop.key].astext, column.type)
                for prop, column in _key_columns(mapper)
            )
        )
        .select_from(live)
    )
    # Never NULL, so that its negation keeps the rows that are not deletes.
    guessed = and_(rows.c.version > 0, func.coalesce(next_starts_a_life, ~live_row))
    condition: ColumnElement[bool] = func.coalesce(rows.c.operation == DELETE, guessed)
    return condition


def _key_columns(mapper: Mapper[Any]) -> list[tuple[Any, Any]]:
    """The attributes of the primary key, with the live table's column of each.

    A joined subclass's primary key is its base table's; its attributes also map the
    subclass table's own key columns, which are the ones to look the live row up by.
    """
    live = mapper.local_table
    pairs = []
    for column in mapper.primary_key:
        prop = mapper.get_property_by_column(column)
        own = next((candidate for candidate in prop.columns if candidate.table is live), column)
        pairs.append((prop, own))
    return pairs
