"""Dated reads of whole models: every object of a model as it was at one time
(:func:`as_of`), and the changes of a window of time (:func:`changed_between`), as
selectables to query with ``select()``.

Snapshots store each value as JSON (:mod:`chrononaut.history.serialization`);
:func:`stored_value` reads one back in SQL as the type of its column, so that the
database filters, orders and joins the values of the past as it does live ones.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    DateTime,
    Integer,
    Subquery,
    Table,
    Text,
    TypeDecorator,
    case,
    cast,
    column,
    exists,
    extract,
    func,
    inspect,
    literal,
    literal_column,
    select,
    true,
    type_coerce,
    types,
)
from sqlalchemy.dialects.postgresql import JSONB, array
from sqlalchemy.orm import Mapper
from sqlalchemy.sql import operators

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
    ESCAPE_MARK,
    UTC,
    as_utc,
    deserialize_value,
    serialize_value,
)

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

#: The names of the history columns of the selectables. Versioned models may not use
#: the ``chrononaut_`` prefix, so these never collide with a model's attributes.
CHANGED = "chrononaut_changed"
OPERATION = "chrononaut_operation"
USER_INFO = "chrononaut_user_info"
EXTRA_INFO = "chrononaut_extra_info"


def as_of(model: type[Any], session: Session, at: datetime) -> Subquery:
    """Return every object of ``model`` as it was at ``at``, as a named subquery.

    It has one column per key attribute and per tracked attribute of the model, named
    as the attribute and typed as its column (see :func:`stored_value`), plus
    ``version`` and :data:`CHANGED` (when that state was recorded). Hidden and
    untracked attributes are not columns of it: their values of the past are unknown.
    Each object that existed at ``at`` is one row, in its newest state changed at or
    before ``at``; objects made later, or whose newest row by then is their delete, are
    absent. The objects of the model's subclasses are included, as ``select(model)``
    includes them.

    The newest row of each object is found by one pass over the activity index, in
    key order, so that a page in key order reads only what it shows. For a model
    with a one-column integer or text key, that column is the stored key in SQL: a
    filter on it, or ordering by it, uses the index (see :class:`StoredKey`).

    :param session: the session whose database tells whether the activity table has
        the columns of time travel.
    :param at: the point in time; a naive datetime is taken to be UTC.
    :raises InvalidArgumentError: ``at`` is not a datetime.
    :raises ChrononautException: the activity table lacks the columns of time travel.
    """
    if not isinstance(at, datetime):
        raise InvalidArgumentError(f"as_of() takes a datetime, not {type(at).__name__}: {at!r}.")
    mapper: Mapper[Any] = inspect(model)
    activity = activity_class_for(model).__table__
    require_time_travel_columns(session, activity)
    rows = activity.alias("chrononaut_rows")
    table_names = _table_names(mapper)
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
    state = (
        select(activity).where(activity.c.id == newest_id).limit(1).lateral("chrononaut_state")
    )
    if _records_operations(session, activity, table_names):
        deleted: ColumnElement[bool] = func.coalesce(state.c.operation == DELETE, False)
    else:
        deleted = _deleted(state, activity, mapper)
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
        .subquery(f"{mapper.local_table.name}_as_of")  # type: ignore[attr-defined]
    )


def changed_between(model: type[Any], session: Session, start: datetime, end: datetime) -> Subquery:
    """Return the changes of the objects of ``model`` recorded after ``start`` and up to
    ``end`` included, as a named subquery: one row per recorded change.

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
    activity = activity_class_for(model).__table__
    require_time_travel_columns(session, activity)
    rows = activity.alias("chrononaut_rows")
    table_names = _table_names(mapper)
    operation: ColumnElement[str | None] = rows.c.operation
    if not _records_operations(session, activity, table_names):
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
        .subquery(f"{mapper.local_table.name}_changes")  # type: ignore[attr-defined]
    )


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


class StoredKey(TypeDecorator[Any]):
    """The type of a one-column integer or text key in the dated selectables: in SQL
    the stored ``key`` JSON itself (``{"id": 5}``), in Python the key's value.

    The activity index leads with ``key``, and a single-member JSON object sorts as its
    value does for integers and text, so comparing this column with values, and
    ordering by it, is done on ``key`` and served by the index: one object of 10,000
    is found without reading the others, and a page in key order reads only its rows.
    Compared with another column, or with any operator other than the comparisons,
    it is read as its column type first (``CAST(key ->> 'id' AS INTEGER)``), so it
    joins with the columns of other tables. Put it on the left of such a comparison:
    on the right, SQLAlchemy compares the other column with the JSON.
    """

    impl = JSONB
    cache_ok = True

    def __init__(self, name: str, column_type: types.TypeEngine[Any]) -> None:
        super().__init__()
        self.name = name
        self.column_type = column_type

    @staticmethod
    def serves(column_type: types.TypeEngine[Any]) -> bool:
        """Tell whether stored keys of ``column_type`` sort and compare as the column."""
        if isinstance(column_type, (types.Enum, types.Boolean, types.CHAR)):
            return False
        try:
            python_type = column_type.python_type
        except NotImplementedError:
            return False
        return python_type in (int, str) and not isinstance(column_type, TypeDecorator)

    def process_bind_param(self, value: Any, dialect: Any) -> Any:
        return None if value is None else {self.name: serialize_value(value)}

    def column_expression(self, colexpr: Any) -> Any:
        # Selected, the value is read out of the JSON in SQL, so that rows arrive with
        # the key's integer or text, without a JSON document to parse for each.
        return stored_value(type_coerce(colexpr, JSONB)[self.name], self.column_type)

    def process_result_value(self, value: Any, dialect: Any) -> Any:
        return value

    class comparator_factory(TypeDecorator.Comparator[Any]):
        def operate(self, op: Any, *other: Any, **kwargs: Any) -> Any:
            key_type: StoredKey = self.type  # type: ignore[assignment]
            if op in _KEY_OPERATORS and all(_same_stored_form(key_type, item) for item in other):
                return super().operate(op, *other, **kwargs)
            return op(_typed(self.expr), *map(_typed, other), **kwargs)


def _same_stored_form(key_type: StoredKey, other: Any) -> bool:
    """Tell whether an operand compares with a stored key as JSON: a plain value (or a
    list of them), which is bound as the stored key, or a stored key of the same name."""
    if isinstance(other, (list, tuple)):
        return all(_same_stored_form(key_type, item) for item in other)
    if isinstance(other, ColumnElement) or hasattr(other, "__clause_element__"):
        other_type = getattr(other, "type", None)
        return isinstance(other_type, StoredKey) and other_type.name == key_type.name
    return True


def _typed(operand: Any) -> Any:
    """An operand with a stored key read as its column type; any other as it is."""
    operand_type = getattr(operand, "type", None)
    if not isinstance(operand_type, StoredKey):
        return operand
    stored = type_coerce(operand, JSONB)[operand_type.name]
    return stored_value(stored, operand_type.column_type)


#: The operators a one-column key applies to its stored JSON: comparisons with
#: values, and ordering.
_KEY_OPERATORS = frozenset(
    {
        operators.eq,
        operators.ne,
        operators.lt,
        operators.le,
        operators.gt,
        operators.ge,
        operators.in_op,
        operators.not_in_op,
        operators.between_op,
        operators.is_,
        operators.is_not,
        operators.asc_op,
        operators.desc_op,
        operators.nulls_first_op,
        operators.nulls_last_op,
    }
)


#: A stored datetime that names its offset. serialize_datetime always writes one; a
#: value without one (another writer's) is in UTC, as deserialize_value reads it.
_HAS_OFFSET = r"([+-]\d\d(:?\d\d(:?\d\d(\.\d+)?)?)?|[Zz])$"
#: The ``#>>`` path of a whole value: its text, unquoted if it is a string.
_WHOLE_VALUE = literal_column("'{}'", Text)
#: The Python types whose stored text PostgreSQL reads with a plain cast.
_CAST_TYPES = frozenset({str, int, float, bool, Decimal, date, time, uuid.UUID})


def stored_value(
    stored: ColumnElement[Any], column_type: types.TypeEngine[Any]
) -> ColumnElement[Any]:
    """Return the SQL expression of a value stored in a snapshot, typed as its column.

    It is :func:`~chrononaut.history.serialization.deserialize_value` in SQL: the
    result reads back as that function's result would (``Decimal`` for ``Numeric``,
    the member for an ``Enum``, an aware datetime for ``DateTime(timezone=True)`` and
    a naive UTC one otherwise, ``bytes``, ``date``, ``time``, ``timedelta``, ``UUID``,
    lists for ``ARRAY`` columns, ``JSON`` with its strings unescaped), and it compares,
    sorts and joins in SQL as the column's own type does. Values of types it does not
    know stay the stored JSON, as ``deserialize_value`` returns them as stored.

    Two forms only releases before 0.6 wrote are not read: ``bytes`` stored as
    Python's ``repr`` make the query fail, and lists stored as Python's ``repr`` read
    as ``NULL``.

    :param stored: the ``jsonb`` expression of one stored value, such as
        ``activity.c.data["title"]`` or ``activity.c.key["id"]``.
    :param column_type: the type of the model's column (``column.type``).
    :return: an expression of type ``column_type`` (``NULL`` for a JSON ``null``).
    """
    stored = type_coerce(stored, JSONB)
    if isinstance(column_type, types.JSON):
        return type_coerce(stored, _StoredJSON())
    if isinstance(column_type, types.ARRAY):
        return _stored_array(stored, column_type)
    text = stored.op("#>>", return_type=Text)(_WHOLE_VALUE)
    if isinstance(column_type, types.Enum):
        return _stored_enum(stored, text, column_type)
    try:
        python_type = column_type.python_type
    except NotImplementedError:
        return stored
    if python_type is bytes:
        return type_coerce(func.decode(text, "base64"), column_type)
    if python_type is timedelta:
        # str(timedelta) puts a comma after the days, which interval input refuses.
        return cast(func.replace(text, ", ", " "), column_type)
    if python_type is datetime:
        return _stored_datetime(text, column_type)
    if python_type in _CAST_TYPES:
        return cast(text, column_type)
    return stored


def _stored_datetime(
    text: ColumnElement[str], column_type: types.TypeEngine[Any]
) -> ColumnElement[Any]:
    aware = _has_timezone(column_type)
    with_offset = cast(text, types.DateTime(timezone=True))
    without_offset = cast(text, types.DateTime())
    has_offset = text.regexp_match(_HAS_OFFSET)
    if aware:
        value = case((has_offset, with_offset), else_=func.timezone("UTC", without_offset))
    else:
        # A naive column's values were stored as UTC: their UTC wall time is theirs.
        value = case((has_offset, func.timezone("UTC", with_offset)), else_=without_offset)
    return type_coerce(value, column_type)


def _has_timezone(column_type: types.TypeEngine[Any]) -> bool:
    if isinstance(column_type, TypeDecorator):
        column_type = column_type.impl_instance
    return bool(getattr(column_type, "timezone", False))


def _stored_enum(
    stored: ColumnElement[Any], text: ColumnElement[str], column_type: types.Enum
) -> ColumnElement[Any]:
    """An enum value: stored as ``str(member)``, or by another writer as the plain
    value; the database value is otherwise taken as it is (a name, or a string enum's
    value)."""
    enum_class = column_type.enum_class
    if enum_class is None:
        return cast(text, column_type)
    members = list(enum_class)
    stored_forms: list[tuple[Any, Any]] = [(str(member), member) for member in members]
    stored_forms += [
        (member.value, member)
        for member in members
        if isinstance(member.value, (str, int, float)) and not isinstance(member.value, bool)
    ]
    # The simple form of CASE reads the stored value once for all the comparisons.
    return case(
        *((literal(form, JSONB), literal(member, column_type)) for form, member in stored_forms),
        value=stored,
        else_=cast(text, column_type),
    )


def _stored_array(stored: ColumnElement[Any], column_type: types.ARRAY[Any]) -> ColumnElement[Any]:
    """An array: a JSON array of items stored by the rules of one value, strings
    escaped; nested JSON arrays for more dimensions."""
    item = column("value", JSONB)
    position = column("ordinality", Integer)
    item_type = column_type.item_type
    dimensions = column_type.dimensions or 1
    if dimensions > 1:
        item_value = _stored_array(item, type(column_type)(item_type, dimensions=dimensions - 1))
    elif isinstance(item_type, types.JSON):
        item_value = type_coerce(item, _StoredJSON())
    else:
        item_value = stored_value(_unescaped(item), item_type)
    items = (
        func.jsonb_array_elements(stored)
        .table_valued(item, with_ordinality="ordinality")
        .render_derived()
    )
    in_order = select(item_value).select_from(items).order_by(position).scalar_subquery()
    return case(
        (func.jsonb_typeof(stored) == "array", type_coerce(func.array(in_order), column_type))
    )


def _unescaped(item: ColumnElement[Any]) -> ColumnElement[Any]:
    """An array item string with the escape of escape_text undone, as JSON. PostgreSQL
    text holds no NUL, so only the mark and doubled backslashes are undone."""
    text = item.op("#>>", return_type=Text)(_WHOLE_VALUE)
    return case(
        (
            text.startswith(ESCAPE_MARK),
            func.to_jsonb(func.replace(func.substr(text, len(ESCAPE_MARK) + 1), "\\\\", "\\")),
        ),
        else_=item,
    )


class _StoredJSON(TypeDecorator[Any]):
    """A stored ``JSON`` value, read back with its strings unescaped."""

    impl = JSONB
    cache_ok = True

    def process_result_value(self, value: Any, dialect: Any) -> Any:
        return deserialize_value(value, types.JSON())
