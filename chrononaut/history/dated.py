"""Dated reads of whole models: every object of a model as it was at one time
(:func:`as_of`), and the changes of a window of time (:func:`changed_between`), as
selectables to query with ``select()``.

Snapshots store each value as JSON (:mod:`chrononaut.history.serialization`);
:func:`stored_value` (from :mod:`chrononaut.history.stored_sql`, and importable from
here) reads one back in SQL as the type of its column, so that the database filters,
orders and joins the values of the past as it does live ones.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    DateTime,
    Subquery,
    Table,
    case,
    cast,
    exists,
    extract,
    func,
    inspect,
    literal,
    select,
    true,
    type_coerce,
    types,
)
from sqlalchemy.dialects.postgresql import array
from sqlalchemy.orm import Mapper

from chrononaut.exceptions import InvalidArgumentError
from chrononaut.history.activity import (
    DELETE,
    INSERT,
    UPDATE,
    VERSION_KEY,
    activity_class_for,
    require_time_travel_columns,
)
from chrononaut.history.columns import VersionedColumns
from chrononaut.history.lives import deleted_condition
from chrononaut.history.serialization import (
    UTC,
    as_utc,
)

# stored_value is part of this module's interface: a snapshot's value, typed in SQL.
from chrononaut.history.stored_sql import StoredKey, stored_value

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

__all__ = [
    "CHANGED",
    "EXTRA_INFO",
    "OPERATION",
    "USER_INFO",
    "StoredKey",
    "as_of",
    "changed_between",
    "stored_value",
]

#: The names of the history columns of the selectables. Versioned models may not use
#: the ``chrononaut_`` prefix, so these never collide with a model's attributes.
CHANGED = "chrononaut_changed"
OPERATION = "chrononaut_operation"
USER_INFO = "chrononaut_user_info"
EXTRA_INFO = "chrononaut_extra_info"


def as_of(model: type[Any], session: Session, at: datetime) -> Subquery:
    """Return every object of ``model`` as it was at ``at``, as a subquery.

    It has one column per key attribute and per tracked attribute of the model, named
    as the attribute and typed as its column (see
    :func:`~chrononaut.history.stored_sql.stored_value`), plus ``version`` and
    :data:`CHANGED` (when that state was recorded). Hidden and untracked attributes
    are not columns of it: their values of the past are unknown. Each object that
    existed at ``at`` is one row, in its newest state changed at or before ``at``;
    objects made later, or whose newest row by then is their delete, are absent. The
    objects of the model's subclasses are included, as ``select(model)`` includes
    them. The subquery is anonymous (``anon_1`` in SQL), so that one query may read a
    model at two times.

    The newest row of each object is found by one pass over the activity index, in
    key order, so that a page in key order reads only what it shows. For a model
    with a one-column integer or text key, that column is the stored key in SQL: a
    filter on it, or ordering by it, uses the index (see
    :class:`~chrononaut.history.stored_sql.StoredKey`).

    :param session: the session whose database tells whether the activity table has
        the columns of time travel.
    :param at: the point in time; a naive datetime is taken to be UTC.
    :raises InvalidArgumentError: ``at`` is not a datetime.
    :raises ChrononautException: the activity table lacks the columns of time travel.
    """
    if not isinstance(at, datetime):
        raise InvalidArgumentError(f"as_of() takes a datetime, not {type(at).__name__}: {at!r}.")
    mapper: Mapper[Any] = inspect(model)
    activity, table_names, with_rule = _read_plan(session, mapper)
    rows = activity.alias("chrononaut_rows")
    # The newest (changed, id) of each key: both are timestamps in the array, so that
    # one max() picks the newest row, the id breaking ties of changed. The id is a
    # count of microseconds after the epoch, exact up to 2**53.
    newest_row = func.max(array([rows.c.changed, _EPOCH + rows.c.id * _MICROSECOND]))
    # Grouped by the key alone when the model has one table, so that the planner's
    # estimate of the number of objects is the number of keys, not of keys in any table.
    groups = [rows.c.key] if len(table_names) == 1 else [rows.c.table_name, rows.c.key]
    newest = (
        select(rows.c.key, newest_row.label("newest"))
        .where(rows.c.table_name.in_(table_names), rows.c.changed <= as_utc(at))
        .group_by(*groups)
        .subquery("chrononaut_newest")
    )
    newest_id = cast(extract("epoch", newest.c.newest[2] - _EPOCH) * 1_000_000, BigInteger)
    # Each newest row is read by its id. The LIMIT keeps the planner from joining
    # otherwise: it cannot tell how many objects a table has (keys repeat across
    # tables), and with too high a guess it reads the whole table to merge instead.
    # Its changed too: in the partitioned layout that picks the one partition to read
    # (chrononaut.history.partitions); in the plain one it costs nothing.
    state = (
        select(activity)
        .where(activity.c.id == newest_id, activity.c.changed == newest.c.newest[1])
        .limit(1)
        .lateral("chrononaut_state")
    )
    if with_rule:
        deleted = _deleted(state, activity, mapper)
    else:
        deleted = func.coalesce(state.c.operation == DELETE, False)
    columns = VersionedColumns.of(mapper)
    key_columns = _key_columns(mapper, newest.c.key)
    values = [
        stored_value(state.c.data[name], mapper.columns[name].type).label(name)
        for name in columns.tracked
        if name not in key_columns
    ]
    return (
        select(
            *(value.label(name) for name, value in key_columns.items()),
            *values,
            state.c.version.label(VERSION_KEY),
            state.c.changed.label(CHANGED),
        )
        .select_from(newest.join(state, true()))
        .where(~deleted, _of_subclasses(mapper, state))
        .subquery()
    )


def changed_between(model: type[Any], session: Session, start: datetime, end: datetime) -> Subquery:
    """Return the changes of the objects of ``model`` recorded after ``start`` and up to
    ``end`` included, as a subquery: one row per recorded change.

    The window is ``start < changed <= end``, so that the state :func:`as_of` gives at
    ``start``, with these changes applied, is its state at ``end``, and consecutive
    windows never count a change twice.

    Its columns: the key attributes (typed as in :func:`as_of`), ``version`` (the
    object's version after the change), :data:`OPERATION` (``"insert"``, ``"update"``
    or ``"delete"``; for rows recorded without one, the rule of
    :mod:`chrononaut.history.lives`), :data:`CHANGED`, :data:`USER_INFO` and
    :data:`EXTRA_INFO` (the JSON of who and why).

    :raises InvalidArgumentError: ``start`` or ``end`` is not a datetime, or ``end`` is
        before ``start``.
    :raises ChrononautException: the activity table lacks the columns of time travel.
    """
    if not (isinstance(start, datetime) and isinstance(end, datetime)):
        raise InvalidArgumentError("changed_between() takes two datetimes.")
    if as_utc(end) < as_utc(start):
        raise InvalidArgumentError(f"The window ends ({end}) before it starts ({start}).")
    mapper: Mapper[Any] = inspect(model)
    activity, table_names, with_rule = _read_plan(session, mapper)
    rows = activity.alias("chrononaut_rows")
    operation: ColumnElement[str | None] = rows.c.operation
    if with_rule:
        operation = case(
            (rows.c.operation.is_not(None), rows.c.operation),
            (rows.c.version == 0, INSERT),
            (_deleted(rows, activity, mapper), DELETE),
            else_=UPDATE,
        )
    key_columns = _key_columns(mapper, rows.c.key)
    return (
        select(
            *(value.label(name) for name, value in key_columns.items()),
            rows.c.version.label(VERSION_KEY),
            operation.label(OPERATION),
            rows.c.changed.label(CHANGED),
            rows.c.user_info.label(USER_INFO),
            rows.c.extra_info.label(EXTRA_INFO),
        )
        .where(
            rows.c.table_name.in_(table_names),
            rows.c.changed > as_utc(start),
            rows.c.changed <= as_utc(end),
            _of_subclasses(mapper, rows),
        )
        .subquery()
    )


def _read_plan(session: Session, mapper: Mapper[Any]) -> tuple[Table, list[str], bool]:
    """Return the activity table of ``mapper``, its table names there, and whether a
    dated read must apply the rule for rows without an operation.

    :raises ChrononautException: the activity table lacks the columns of time travel.
    """
    activity = activity_class_for(mapper.class_).__table__
    require_time_travel_columns(session, activity)
    table_names = _table_names(mapper)
    return activity, table_names, not _records_operations(session, activity, table_names)


_EPOCH = literal(datetime(1970, 1, 1, tzinfo=UTC), DateTime(timezone=True))
_MICROSECOND = literal(timedelta(microseconds=1), types.Interval())


#: The partial index of the activity rows without an operation (see activity_factory).
_WITHOUT_OPERATION_INDEX = "ix_chrononaut_activity_without_operation"


def _records_operations(session: Session, activity: Table, table_names: list[str]) -> bool:
    """Tell whether every activity row of ``table_names`` records its operation, so
    that a dated read can leave out the rule for rows that do not.

    The rule costs two lookups per object, and its cost, counted by the planner even
    where it is never run, pushes a read of 10,000 objects past PostgreSQL's JIT
    threshold. The partial index of the rows without an operation answers at once;
    on a table without that index, finding out would read the whole history, so the
    answer is then no, and the rule stays.
    """
    index = _WITHOUT_OPERATION_INDEX
    if activity.schema is not None:
        index = f"{activity.schema}.{index}"
    without_operation = exists().where(
        activity.c.table_name.in_(table_names), activity.c.operation.is_(None)
    )
    answer = case((func.to_regclass(index).is_not(None), ~without_operation), else_=False)
    return bool(session.execute(select(answer)).scalar())


def _deleted(rows: Any, activity: Any, mapper: Mapper[Any]) -> ColumnElement[bool]:
    # Asked of the base mapper, whose table holds a row of every live object of the
    # hierarchy, and whose key columns are those of that table; a joined subclass's
    # primary key is its base table's, not its own table's.
    return deleted_condition(rows, activity, mapper.base_mapper)


def _table_names(mapper: Mapper[Any]) -> list[str]:
    """The activity ``table_name`` of the model and of its subclasses."""
    names = {VersionedColumns.of(sub).table_name: None for sub in mapper.self_and_descendants}
    return list(names)


def _of_subclasses(mapper: Mapper[Any], rows: Any) -> ColumnElement[bool]:
    """The condition that a row is of ``mapper`` or a subclass: needed where classes
    share their table (single-table inheritance), told apart by the discriminator."""
    discriminator = mapper.polymorphic_on
    if not mapper.single or discriminator is None:
        return true()
    name = mapper.get_property_by_column(discriminator).key
    identities = [
        sub.polymorphic_identity
        for sub in mapper.self_and_descendants
        if sub.local_table is mapper.local_table
    ]
    return stored_value(rows.c.data[name], discriminator.type).in_(identities)


def _key_columns(mapper: Mapper[Any], key: ColumnElement[Any]) -> dict[str, ColumnElement[Any]]:
    """The typed key attributes read from a ``key`` JSON column, by name."""
    names = VersionedColumns.of(mapper).primary_key
    if len(names) == 1 and StoredKey.serves(mapper.primary_key[0].type):
        (name,) = names
        return {name: type_coerce(key, StoredKey(name, mapper.primary_key[0].type))}
    return {
        name: stored_value(key[name], column.type)
        for name, column in zip(names, mapper.primary_key, strict=True)
    }
