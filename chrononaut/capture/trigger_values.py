"""The SQL that turns one column of a row into the JSON a snapshot stores for it.

The safety net's triggers (:mod:`chrononaut.capture.triggers`) write snapshots in the
database, without Python. For each column type they support, the expression here gives
the JSON value that :func:`~chrononaut.history.serialization.serialize_value` writes
for the value the column returns to Python, so that a snapshot written by a trigger
reads back like one written by the session. Types whose Python form SQL cannot
reproduce are refused when the triggers are made, not recorded wrongly.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import types

from chrononaut.exceptions import ChrononautException

#: U+FDD0 starts the escaped form of a string (:func:`~chrononaut.history.serialization.
#: escape_text`); the triggers refuse values that would need it, which SQL cannot write.
_ESCAPE_MARK_SQL = "U&'\\FDD0'"

#: ``to_char`` pattern of the date and time of an ISO timestamp, without fractions.
_ISO_SECONDS = "'YYYY-MM-DD\"T\"HH24:MI:SS'"

#: Item types of ``ARRAY`` columns whose values ``to_jsonb`` writes as Python does.
_PLAIN_ITEM_TYPES = (types.Integer, types.String, types.Boolean)


class UnsupportedColumnError(ChrononautException):
    """The safety net cannot write a column of this type as Python would.

    :meta private:
    """


def quote(name: str) -> str:
    """Return ``name`` as a quoted SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


def literal(text: str) -> str:
    """Return ``text`` as an SQL string literal (standard-conforming strings)."""
    return "'" + text.replace("'", "''") + "'"


def _with_fraction(timestamp: str) -> str:
    # isoformat() writes microseconds only when there are some, as six digits.
    return (
        f"to_char({timestamp}, {_ISO_SECONDS}) || CASE WHEN to_char({timestamp}, 'US') = "
        f"'000000' THEN '' ELSE '.' || to_char({timestamp}, 'US') END || '+00:00'"
    )


def _float(value: str) -> str:
    # JSON has no NaN or infinity: Python stores str(value) for them.
    return (
        f"CASE WHEN {value} = 'NaN' THEN '\"nan\"'::jsonb "
        f"WHEN {value} = 'Infinity' THEN '\"inf\"'::jsonb "
        f"WHEN {value} = '-Infinity' THEN '\"-inf\"'::jsonb ELSE to_jsonb({value}) END"
    )


def _enum(value: str, column_type: types.Enum) -> str:
    enum_class = column_type.enum_class
    if enum_class is None:
        return f"to_jsonb({value}::text)"
    members = list(enum_class.__members__.values())
    # The database holds member names, or the values_callable's strings in member order.
    by_stored = (
        dict(zip(column_type.enums, members, strict=False))
        if column_type.values_callable is not None
        else {name: enum_class.__members__[name] for name in column_type.enums}
    )
    cases = " ".join(
        f"WHEN {literal(stored)} THEN {literal(str(member))}"
        for stored, member in by_stored.items()
    )
    return f"to_jsonb(CASE {value}::text {cases} END)"


def json_expression(value: str, column_type: types.TypeEngine[Any], where: str) -> str:
    """Return the SQL of the snapshot JSON of ``value``, a column of ``column_type``.

    :param value: the SQL of the value, such as ``NEW."title"``.
    :param where: ``table.column``, for the error message.
    :raises UnsupportedColumnError: the type is one the triggers cannot write as Python
        would (see docs/safety-net.rst).
    """
    if isinstance(column_type, types.Enum):
        return _enum(value, column_type)
    if isinstance(column_type, (types.Integer, types.String, types.Boolean)):
        return f"to_jsonb({value})"
    if isinstance(column_type, types.Float) or (
        isinstance(column_type, types.Numeric) and not column_type.asdecimal
    ):
        return _float(f"{value}::float8")
    if isinstance(column_type, types.Numeric):
        return f"to_jsonb({value}::text)"
    if isinstance(column_type, types.DateTime):
        utc = f"({value} AT TIME ZONE 'UTC')" if column_type.timezone else value
        return f"to_jsonb({_with_fraction(utc)})"
    if isinstance(column_type, types.Date):
        return f"to_jsonb(to_char({value}, 'YYYY-MM-DD'))"
    if isinstance(column_type, types.Time) and not column_type.timezone:
        moment = f"(DATE '2000-01-01' + {value})"
        return (
            f"to_jsonb(to_char({moment}, 'HH24:MI:SS') || CASE WHEN to_char({moment}, 'US') "
            f"= '000000' THEN '' ELSE '.' || to_char({moment}, 'US') END)"
        )
    if isinstance(column_type, types.Uuid):
        return f"to_jsonb({value}::text)"
    if isinstance(column_type, types.LargeBinary):
        # encode() breaks base64 lines at 76 characters; Python's has no breaks.
        return f"to_jsonb(translate(encode({value}, 'base64'), E'\\n', ''))"
    if isinstance(column_type, types.JSON):
        return f"({value})::jsonb"
    if isinstance(column_type, types.ARRAY) and isinstance(
        column_type.item_type, _PLAIN_ITEM_TYPES
    ):
        return f"to_jsonb({value})"
    raise UnsupportedColumnError(
        f"The safety net cannot record {where}: its type {column_type!r} has no SQL form "
        "equal to what Chrononaut stores from Python. Leave the model out of the safety "
        "net, or make the column untracked (see docs/safety-net.rst, 'Column types')."
    )


def member_expression(value: str, column_type: types.TypeEngine[Any], where: str) -> str:
    """Return the SQL of ``value`` as an argument of ``jsonb_build_object``, which gives
    the snapshot JSON of ``value``, a column of ``column_type``.

    ``jsonb_build_object`` turns integers, text and booleans into JSON as ``to_jsonb``
    does; passing them as they are spares a call per value, a quarter of the time it
    takes to build the snapshots of many rows.

    :raises UnsupportedColumnError: as :func:`json_expression`.
    """
    if isinstance(column_type, (types.Integer, types.String, types.Boolean)) and not isinstance(
        column_type, types.Enum
    ):
        return value
    return json_expression(value, column_type, where)


def may_hold_escape_mark(column_type: types.TypeEngine[Any]) -> bool:
    """Tell whether values of ``column_type`` may hold strings Python would escape."""
    return isinstance(column_type, types.JSON) or (
        isinstance(column_type, types.ARRAY) and isinstance(column_type.item_type, types.String)
    )


def holds_escape_mark(value: str) -> str:
    """Return the SQL condition that ``value``'s snapshot would hold U+FDD0."""
    return f"strpos(to_jsonb({value})::text, {_ESCAPE_MARK_SQL}) > 0"


def refuse_escape_mark(where: str) -> str:
    """Return the PL/pgSQL statement that refuses a value of ``where`` holding U+FDD0,
    which only the session can store (escaped). A NUL, which ``jsonb`` cannot hold,
    fails the statement by itself."""
    message = f"chrononaut safety net: {where} holds U+FDD0, which only the session can record"
    return f"RAISE EXCEPTION USING MESSAGE = {literal(message)};"
