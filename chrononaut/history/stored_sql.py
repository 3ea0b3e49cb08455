"""Snapshot values read in SQL as the types of their columns.

A snapshot stores each value as JSON, in the format of
:mod:`chrononaut.history.serialization`. The dated reads of
:mod:`chrononaut.history.dated` turn each one back into a value of its column's type
inside the statement (:func:`stored_value`), so that the database filters, sorts and
joins values of the past as it does live ones, and give one-column keys a type that
lets the activity index serve them (:class:`StoredKey`).
"""

from __future__ import annotations

import json
import uuid
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Integer,
    Text,
    TypeDecorator,
    case,
    cast,
    column,
    func,
    literal,
    literal_column,
    null,
    or_,
    select,
    type_coerce,
    types,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.sql import operators

from chrononaut.history.serialization import ESCAPE_MARK, deserialize_value, serialize_value


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


#: The ``#>>`` path of a whole value: its text, unquoted if it is a string.
_WHOLE_VALUE = literal_column("'{}'", Text)
#: Base64 text, as bytes are stored since 0.6.
_BASE64 = "^[A-Za-z0-9+/]*={0,2}$"
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

    Two forms only releases before 0.6 wrote are not read: ``bytes`` and lists
    stored as Python's ``repr`` read as ``NULL``.

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
        # Releases before 0.6 stored repr(bytes): such a value reads as NULL rather
        # than failing the whole query.
        decoded = case((text.regexp_match(_BASE64), func.decode(text, "base64")), else_=null())
        return type_coerce(decoded, column_type)
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
    has_offset = _names_an_offset(text)
    if aware:
        value = case((has_offset, with_offset), else_=func.timezone("UTC", without_offset))
    else:
        # A naive column's values were stored as UTC: their UTC wall time is theirs.
        value = case((has_offset, func.timezone("UTC", with_offset)), else_=without_offset)
    return type_coerce(value, column_type)


def _names_an_offset(text: ColumnElement[str]) -> ColumnElement[bool]:
    """Whether stored ISO text names its UTC offset: a sign or a ``Z`` after the date.

    serialize_datetime always writes one; text without one (another writer's) is in
    UTC, as deserialize_value reads it. Plain string searches, cheaper than a regular
    expression by a microsecond a row, and the plus sign first, as it is written.
    """
    time_part = func.substr(text, 12)
    return or_(
        func.strpos(time_part, "+") > 0,
        func.strpos(time_part, "-") > 0,
        func.right(text, 1).in_(["Z", "z"]),
    )


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
    # The simple form of CASE reads the stored value once for all the comparisons. The
    # forms are JSON text cast in SQL, so that the expression also renders with literal
    # values, as the views of a past session need.
    return case(
        *(
            (cast(literal(json.dumps(form)), JSONB), literal(member, column_type))
            for form, member in stored_forms
        ),
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
