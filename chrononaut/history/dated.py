"""Dated reads of whole models: every object of a model as it was at one time
(:func:`as_of`), and the changes of a window of time (:func:`changed_between`), as
selectables to query with ``select()``.

Snapshots store each value as JSON (:mod:`chrononaut.history.serialization`);
:func:`stored_value` (from :mod:`chrononaut.history.stored_sql`, and importable from
here) reads one back in SQL as the type of its column, so that the database filters,
orders and joins the values of the past as it does live ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any
from weakref import WeakKeyDictionary

from sqlalchemy import (
    ColumnElement,
    Select,
    Subquery,
    Table,
    TextualSelect,
    any_,
    bindparam,
    case,
    column,
    exists,
    func,
    inspect,
    literal_column,
    select,
    true,
    type_coerce,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import Mapper
from sqlalchemy.sql.elements import ColumnClause, TextClause
from sqlalchemy.types import TypeEngine

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
from chrononaut.history.serialization import as_utc

# stored_value is part of this module's interface: a snapshot's value, typed in SQL.
from chrononaut.history.stored_sql import StoredKey, stored_value

if TYPE_CHECKING:
    from sqlalchemy.orm import Session
    from sqlalchemy.pool import Pool

__all__ = [
    "CHANGED",
    "EXTRA_INFO",
    "OPERATION",
    "USER_INFO",
    "DatedText",
    "StoredKey",
    "as_of",
    "changed_between",
    "is_dated_read",
    "stored_value",
]

#: The parameter of the dated statements: the time they read at.
_AT = "chrononaut_at"
#: Where the statement compares with the time, in SQL text: the parameter goes there.
_AT_MARK: ColumnClause[Any] = literal_column("chrononaut_at_parameter_mark")

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

    The newest row of each object is found by one pass over the activity index, in key
    order, and only those rows are read from the table, so that a page in key order
    reads only what it shows. For a model with a one-column integer or text key, that
    column is the stored key in SQL: a filter on it, or ordering by it, uses the index
    (see :class:`~chrononaut.history.stored_sql.StoredKey`).

    The statement depends only on the model and what the database said of its activity
    table (see :func:`_deleted` for what is asked), so that it is made once for each
    connection pool, as SQL text (see :func:`_as_text`) that takes ``at`` as its one
    parameter: each call makes only a new subquery of it.

    :param session: the session whose database tells whether the activity table has
        the columns of time travel.
    :param at: the point in time; a naive datetime is taken to be UTC.
    :raises InvalidArgumentError: ``at`` is not a datetime.
    :raises ChrononautException: the activity table lacks the columns of time travel.
    """
    if not isinstance(at, datetime):
        raise InvalidArgumentError(f"as_of() takes a datetime, not {type(at).__name__}: {at!r}.")
    mapper: Mapper[Any] = inspect(model)
    reads = _reads_of(session, mapper)
    dated = reads.dated.get(mapper)
    if dated is None:
        dated = reads.dated[mapper] = _dated_select(
            mapper, reads.plan(session, mapper), reads.dialect
        )
    # A parameter and a subquery of their own (both anonymous), so that one statement
    # may read a model at two times, or at the same time twice.
    moment = bindparam(_AT, as_utc(at), type_=dated.selected_columns[CHANGED].type, unique=True)
    return dated.bindparams(moment).subquery()


def _dated_select(mapper: Mapper[Any], plan: _ReadPlan, dialect: Dialect) -> TextualSelect:
    """The statement of :func:`as_of` for ``mapper``, which takes the time as the
    parameter :data:`_AT`."""
    activity = plan.activity
    rows = activity.alias("chrononaut_rows")
    # Each row up to ``at``, with the id of the next one of its object: the newest has
    # none. Read in the order of the activity index, the window needs no sort, and
    # a filter on the key, or ordering by it, reaches the index through it.
    ordered = (
        select(
            rows.c.key,
            rows.c.id,
            rows.c.changed,
            func.lead(rows.c.id)
            .over(
                partition_by=(rows.c.table_name, rows.c.key),
                order_by=(rows.c.changed, rows.c.id),
            )
            .label("next_id"),
        )
        .where(_of_tables(rows, plan.table_names), rows.c.changed <= _AT_MARK)
        .subquery("chrononaut_ordered")
    )
    # Only the newest rows are read from the table, by their id. The LIMIT keeps the
    # planner from joining otherwise: for a large model it would read the whole table.
    # Their changed too: in the partitioned layout that picks the one partition to read
    # (chrononaut.history.partitions); in the plain one it costs nothing.
    state = (
        select(
            activity.c.id,
            activity.c.table_name,
            activity.c.key,
            activity.c.changed,
            activity.c.version,
            activity.c.data,
            activity.c.operation,
        )
        .where(activity.c.id == ordered.c.id, activity.c.changed == ordered.c.changed)
        .limit(1)
        .lateral("chrononaut_state")
    )
    deleted = _deleted(state, plan, mapper)
    columns = VersionedColumns.of(mapper)
    key_columns = _key_columns(mapper, ordered.c.key)
    values = [
        stored_value(state.c.data[name], mapper.columns[name].type).label(name)
        for name in columns.tracked
        if name not in key_columns
    ]
    statement = (
        select(
            # The key as stored: the text gives it its type, StoredKey where it serves.
            *(type_coerce(value, JSONB).label(name) for name, value in key_columns.items()),
            *values,
            state.c.version.label(VERSION_KEY),
            state.c.changed.label(CHANGED),
        )
        .select_from(ordered.join(state, true()))
        .where(ordered.c.next_id.is_(None), ~deleted, _of_subclasses(mapper, state))
    )
    return _as_text(statement, dialect, {name: value.type for name, value in key_columns.items()})


def _as_text(
    statement: Select[Any], dialect: Dialect, types: dict[str, TypeEngine[Any]]
) -> TextualSelect:
    """``statement`` as SQL text with its values in it, and its columns typed as
    ``types`` says, or as the statement's.

    A new ``select()`` of a dated read (one per request, usually) makes SQLAlchemy walk
    every element of what it selects from to find the statement in its cache: for
    this statement, a third of the client's time of reading one object. The text, made
    once per model, is walked in one step.
    """
    compiled = statement.compile(dialect=dialect, compile_kwargs={"literal_binds": True})
    sql = str(compiled)
    if dialect.paramstyle in ("format", "pyformat"):
        # Rendered for the driver, which takes "%%" for "%"; text() doubles them again.
        sql = sql.replace("%%", "%")
    # A colon followed by a name would be read as a parameter of the text; the one
    # parameter, the time, is put in after.
    sql = sql.replace(":", "\\:").replace(_AT_MARK.name, f":{_AT}")
    columns = [
        column(name, types.get(name, selected.type))
        for name, selected in statement.selected_columns.items()
    ]
    return DatedText(sql).columns(*columns)


class DatedText(TextClause):
    """The SQL text of an :func:`as_of` read, which reads the activity table where a
    walk of a statement that selects from it sees only text (see :func:`is_dated_read`).
    """

    inherit_cache = True


def is_dated_read(element: object) -> bool:
    """Tell whether ``element``, met in a walk of a statement, reads history without
    naming an activity table there: the text of a dated read."""
    return isinstance(element, DatedText)


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
    plan = _reads_of(session, mapper).plan(session, mapper)
    rows = plan.activity.alias("chrononaut_rows")
    # Rows without an operation get the rule's: the CASE reads it only for them.
    operation = case(
        (rows.c.operation.is_not(None), rows.c.operation),
        (rows.c.version == 0, INSERT),
        (_deleted(rows, plan, mapper), DELETE),
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
            _of_tables(rows, plan.table_names),
            rows.c.changed > as_utc(start),
            rows.c.changed <= as_utc(end),
            _of_subclasses(mapper, rows),
        )
        .subquery()
    )


@dataclass(frozen=True)
class _ReadPlan:
    """What the dated reads of one model need to know of its activity table."""

    #: The activity table of the model.
    activity: Table
    #: The ``table_name`` of the model and of its subclasses there.
    table_names: list[str]
    #: The ids of the model's rows without an operation that the rule reads as deletes,
    #: as an array, or ``None`` where the rule is applied to every row (see
    #: :func:`_deleted`).
    ruled_deletes: ColumnElement[Any] | None


#: The partial index of the activity rows without an operation (see activity_factory).
_WITHOUT_OPERATION_INDEX = "ix_chrononaut_activity_without_operation"


class _PoolReads:
    """What the dated reads through one connection pool keep: the read plan of each
    model, and its statement, which depends on nothing else.

    Kept per pool, which ``Engine.dispose()`` replaces, as the layouts of the activity
    tables are (:func:`~chrononaut.history.activity.has_time_travel_columns`).
    """

    def __init__(self, dialect: Dialect) -> None:
        #: The dialect the statements are written for.
        self.dialect = dialect
        self.plans: dict[Mapper[Any], _ReadPlan] = {}
        self.dated: dict[Mapper[Any], TextualSelect] = {}

    def plan(self, session: Session, mapper: Mapper[Any]) -> _ReadPlan:
        """Return the read plan of ``mapper``, asking the database the first time."""
        plan = self.plans.get(mapper)
        if plan is None:
            activity = activity_class_for(mapper.class_).__table__
            table_names = _table_names(mapper)
            ruled_deletes = None
            if not _has_rows_without_operation(session, activity, table_names):
                ruled_deletes = _ruled_deletes(activity, table_names, mapper)
            plan = self.plans[mapper] = _ReadPlan(activity, table_names, ruled_deletes)
        return plan


_READS: WeakKeyDictionary[Pool, _PoolReads] = WeakKeyDictionary()


def _reads_of(session: Session, mapper: Mapper[Any]) -> _PoolReads:
    """Return what the dated reads of ``mapper`` keep for the session's pool.

    :raises ChrononautException: the activity table lacks the columns of time travel.
    """
    activity = activity_class_for(mapper.class_).__table__
    require_time_travel_columns(session, activity)
    engine = session.get_bind(clause=activity).engine
    reads = _READS.get(engine.pool)
    if reads is None:
        reads = _READS[engine.pool] = _PoolReads(engine.dialect)
    return reads


def _has_rows_without_operation(session: Session, activity: Table, table_names: list[str]) -> bool:
    """Tell whether the activity table has rows of ``table_names`` without an operation,
    by the partial index of such rows; a table without that index is taken to have
    some, as finding out would read the whole history."""
    index = _WITHOUT_OPERATION_INDEX
    if activity.schema is not None:
        index = f"{activity.schema}.{index}"
    without_operation = exists().where(
        _of_tables(activity, table_names), activity.c.operation.is_(None)
    )
    answer = case((func.to_regclass(index).is_not(None), without_operation), else_=True)
    connection = session.connection(bind_arguments={"clause": activity})
    return bool(connection.scalar(select(answer)))


def _ruled_deletes(
    activity: Table, table_names: list[str], mapper: Mapper[Any]
) -> ColumnElement[Any]:
    """The ids of the rows of ``table_names`` without an operation that the rule of
    :mod:`chrononaut.history.lives` reads as deletes, as an array."""
    unrecorded = activity.alias("chrononaut_unrecorded")
    ruled_deletes = select(unrecorded.c.id).where(
        _of_tables(unrecorded, table_names),
        unrecorded.c.operation.is_(None),
        deleted_condition(unrecorded, activity, mapper.base_mapper),
    )
    return func.array(ruled_deletes.scalar_subquery())


def _deleted(rows: Any, plan: _ReadPlan, mapper: Mapper[Any]) -> ColumnElement[bool]:
    """The condition that the activity row of ``rows`` is a delete: its operation, or,
    for a row without one, the rule of :mod:`chrononaut.history.lives`.

    The rule costs two lookups per object, and its cost, counted by the planner even
    where it is never run, pushes a read of 10,000 objects past PostgreSQL's JIT
    threshold. So it is applied to every row only where the model had rows without an
    operation when its plan was made (the history of releases before 1.0), or where
    the partial index of such rows is missing. Elsewhere, the rows without an operation
    that are deletes are gathered through that index, once per statement (an InitPlan)
    and only if the read meets a row without an operation: the planner reckons them as
    few as the table's statistics say, and the read stays exact if an older release
    still writes such rows.
    """
    if plan.ruled_deletes is None:
        # Asked of the base mapper, whose table holds a row of every live object of
        # the hierarchy, and whose key columns are those of that table; a joined
        # subclass's primary key is its base table's, not its own table's.
        return deleted_condition(rows, plan.activity, mapper.base_mapper)
    condition: ColumnElement[bool] = func.coalesce(
        rows.c.operation == DELETE, rows.c.id == any_(plan.ruled_deletes)
    )
    return condition


def _table_names(mapper: Mapper[Any]) -> list[str]:
    """The activity ``table_name`` of the model and of its subclasses."""
    names = {VersionedColumns.of(sub).table_name: None for sub in mapper.self_and_descendants}
    return list(names)


def _of_tables(rows: Any, table_names: list[str]) -> ColumnElement[bool]:
    """The condition that an activity row is of one of ``table_names``.

    Not an IN list: SQLAlchemy renders one anew for every execution of a cached
    statement, a tenth of the client's time of a read of one object.
    """
    condition: ColumnElement[bool]
    if len(table_names) == 1:
        condition = rows.c.table_name == table_names[0]
    else:
        names = bindparam(None, table_names, type_=ARRAY(rows.c.table_name.type))
        condition = rows.c.table_name == any_(names)
    return condition


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
