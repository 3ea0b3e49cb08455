"""How column values are written into the JSON ``key`` and ``data`` of a snapshot, and
read back as the Python values of their columns.

The format is the one Chrononaut has always written, so that history recorded by older
releases reads the same way as new history. Where that format could not hold a value
(NaN and infinite floats, which PostgreSQL refuses in JSON) or lost it (``str()`` of
bytes, lists and dicts), it is extended as described in :func:`serialize_value`.
"""

from __future__ import annotations

import ast
import base64
import enum
import math
import re
import uuid
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal
from typing import Any

from sqlalchemy import types

#: The UTC time zone. Snapshots store every timestamp in UTC.
UTC = timezone.utc

JSONScalar = str | int | float | bool | None

#: Types :func:`serialize_value` stores as they are (their subclasses, such as enums,
#: may not be), for callers that skip the call for the most common column values.
STORED_AS_IS = frozenset({str, int, bool, type(None)})


def serialize_datetime(dt: datetime) -> str:
    """Return ``dt`` as ISO 8601 text in UTC, ending in ``+00:00``.

    :param dt: an aware datetime, or a naive one, which is taken to be in UTC already.
    :return: for example ``"2024-05-01T12:30:00+00:00"``.
    """
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC).isoformat()


def as_utc(dt: datetime) -> datetime:
    """Return ``dt`` as an aware datetime, taking a naive one to be in UTC."""
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt


#: Starts every escaped string. U+FDD0 is a Unicode noncharacter: reserved for use
#: inside programs, it is never assigned, so ordinary text practically never starts
#: with it (and is escaped when it does, so that reading back is never ambiguous).
ESCAPE_MARK = "\ufdd0"
_ESCAPED = re.compile(r"\\(.)", re.DOTALL)


def escape_text(text: str) -> str:
    """Return ``text`` in the form a snapshot can store inside JSON.

    PostgreSQL's ``json`` type, and lists and dicts in Python, may hold strings with NUL
    (``"\\u0000"``), which ``jsonb`` refuses. Such a string, and one that starts with
    :data:`ESCAPE_MARK`, is stored as the mark followed by the text with each backslash
    doubled and each NUL written as a backslash and ``0``: ``"a\\x00b"`` is stored as
    ``"\\ufdd0a\\\\0b"``. Every other string is stored as it is.
    :func:`unescape_text` reads it back.
    """
    if "\x00" not in text and not text.startswith(ESCAPE_MARK):
        return text
    return ESCAPE_MARK + text.replace("\\", "\\\\").replace("\x00", "\\0")


def unescape_text(stored: str) -> str:
    """Return the string that :func:`escape_text` stored as ``stored``."""
    if not stored.startswith(ESCAPE_MARK):
        return stored
    return _ESCAPED.sub(
        lambda escape: "\x00" if escape[1] == "0" else escape[1], stored[len(ESCAPE_MARK) :]
    )


def serialize_value(value: Any) -> Any:
    """Return the JSON value a snapshot stores for one column value.

    - ``None``, strings, integers, booleans and finite floats are kept;
    - NaN and infinite floats become ``"nan"``, ``"inf"`` and ``"-inf"`` (``str(value)``);
    - datetimes become UTC ISO text (:func:`serialize_datetime`);
    - bytes become their standard Base64 text;
    - lists, tuples (``ARRAY`` columns) and dicts (``JSON`` columns) stay JSON arrays and
      objects, their items stored by these same rules and the strings among their
      items and keys escaped by :func:`escape_text`;
    - anything else, enum members included, is stored as ``str(value)``: for example
      ``"Priority.HIGH"``, ``"12.50"`` for a ``Decimal``, ``"2024-05-01"`` for a date,
      ``"1 day, 2:00:00"`` for a timedelta.

    :func:`deserialize_value` reads each of them back. The value of a ``JSON`` column
    is stored with :func:`serialize_json_value`.
    """
    # Enum members are checked first: a str- or int-based enum would otherwise pass as
    # its plain value, while history has always stored them as ``str(member)``.
    if isinstance(value, enum.Enum):
        return str(value)
    if value is None or isinstance(value, (str, int)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, datetime):
        return serialize_datetime(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, (list, tuple)):
        return [serialize_json_value(item) for item in value]
    if isinstance(value, dict):
        return {escape_text(str(name)): serialize_json_value(item) for name, item in value.items()}
    return str(value)


def serialize_json_value(value: Any) -> Any:
    """Return the JSON value a snapshot stores for the value of a ``JSON`` column, or
    for an item of a list or dict: :func:`serialize_value`, with a string escaped by
    :func:`escape_text` (a ``json`` string may hold NUL, text columns cannot)."""
    stored = serialize_value(value)
    return escape_text(stored) if isinstance(stored, str) else stored


_TIMEDELTA = re.compile(
    r"(?:(?P<days>-?\d+) days?, )?(?P<hours>\d+):(?P<minutes>\d\d):(?P<seconds>\d\d)"
    r"(?:\.(?P<microseconds>\d{6}))?"
)


def _parse_timedelta(text: str) -> timedelta:
    """Read back ``str(timedelta)``: ``[D day[s], ]H:MM:SS[.ffffff]``."""
    match = _TIMEDELTA.fullmatch(text)
    if match is None:
        raise ValueError(f"{text!r} is not a stored interval.")
    return timedelta(**{unit: int(amount) for unit, amount in match.groupdict("0").items()})


def _parse_bytes(text: str) -> bytes:
    # Releases before 0.6 stored str(bytes), such as "b'\\x00ab'".
    if text[:2] in ("b'", 'b"'):
        legacy = ast.literal_eval(text)
        if isinstance(legacy, bytes):
            return legacy
    return base64.b64decode(text, validate=True)


def _parse_datetime(text: str, aware: bool) -> datetime:
    value = datetime.fromisoformat(text)
    if aware:
        return as_utc(value).astimezone(UTC)
    # Naive datetimes were stored as if they were UTC, so the UTC wall time is theirs.
    return value if value.tzinfo is None else value.astimezone(UTC).replace(tzinfo=None)


def _parse_enum(stored: Any, column_type: types.Enum) -> Any:
    enum_class = column_type.enum_class
    if enum_class is None or isinstance(stored, enum.Enum):
        return stored
    members = {str(member): member for member in enum_class}
    if stored in members:
        return members[stored]
    # Plain values, as another writer may have stored them.
    return enum_class(stored)


def deserialize_value(stored: Any, column_type: types.TypeEngine[Any]) -> Any:
    """Return the Python value of a column, read back from its snapshot JSON.

    It undoes :func:`serialize_value` for the column's SQLAlchemy type, so that the
    result equals what the column itself returns: ``Decimal`` for ``Numeric``,
    ``float`` (NaN and infinities included) for ``Float``, ``date``, ``time``,
    ``timedelta``, ``uuid.UUID``, enum members, ``bytes`` and lists of such items for
    ``ARRAY``. Datetimes come back in UTC: aware for ``DateTime(timezone=True)``, naive
    otherwise. ``JSON`` values come back with their strings unescaped
    (:func:`unescape_text`). Values of types it does not know are returned as stored.

    :param stored: the value from a snapshot's ``data`` or ``key``.
    :param column_type: the type of the model's column, such as ``column.type``.
    :return: the typed value, or ``None`` for ``None``.
    :raises ValueError: ``stored`` is not something the column type can hold.
    """
    if stored is None:
        return None
    if isinstance(column_type, types.JSON):
        return _unescape_json(stored)
    if isinstance(column_type, types.ARRAY):
        if isinstance(stored, str):
            stored = ast.literal_eval(stored)  # str(list), as releases before 0.6 stored
        return _parse_array(stored, column_type)
    if isinstance(column_type, types.Enum):
        return _parse_enum(stored, column_type)
    try:
        python_type = column_type.python_type
    except NotImplementedError:
        return stored
    parse = _PARSERS.get(python_type)
    if parse is not None:
        return parse(stored)
    if python_type is datetime:
        return _parse_datetime(stored, aware=_has_timezone(column_type))
    return stored


def _has_timezone(column_type: types.TypeEngine[Any]) -> bool:
    if isinstance(column_type, types.TypeDecorator):
        column_type = column_type.impl_instance
    return bool(getattr(column_type, "timezone", False))


def _parse_decimal(stored: Any) -> Decimal:
    # A float assigned to the column before it was read back is stored as a JSON number.
    return Decimal(repr(stored) if isinstance(stored, float) else stored)


#: How a stored value is read back, by the ``python_type`` of its column.
_PARSERS: dict[type[Any], Any] = {
    bool: bool,
    int: int,
    float: float,
    Decimal: _parse_decimal,
    date: date.fromisoformat,
    time: time.fromisoformat,
    timedelta: _parse_timedelta,
    uuid.UUID: uuid.UUID,
    bytes: _parse_bytes,
}


def _unescape_json(stored: Any) -> Any:
    if isinstance(stored, str):
        return unescape_text(stored)
    if isinstance(stored, list):
        return [_unescape_json(item) for item in stored]
    if isinstance(stored, dict):
        return {unescape_text(name): _unescape_json(item) for name, item in stored.items()}
    return stored


def _parse_array(stored: Any, column_type: types.ARRAY[Any]) -> Any:
    if not isinstance(stored, list):
        if isinstance(stored, str) and not isinstance(column_type.item_type, types.JSON):
            stored = unescape_text(stored)
        return deserialize_value(stored, column_type.item_type)
    items = [_parse_array(item, column_type) for item in stored]
    return tuple(items) if column_type.as_tuple else items
