"""How column values are written into the JSON ``key`` and ``data`` of a snapshot.

The format is the one Chrononaut has always written, so that history recorded by older
releases reads the same way as new history.
"""

from __future__ import annotations

import enum
from datetime import datetime, timezone
from typing import Any

#: The UTC time zone. Snapshots store every timestamp in UTC.
UTC = timezone.utc

JSONScalar = str | int | float | bool | None


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


def serialize_value(value: Any) -> JSONScalar:
    """Return the JSON value a snapshot stores for one column value.

    ``None``, strings, numbers and booleans are kept; datetimes become UTC ISO text
    (:func:`serialize_datetime`); anything else, enum members included, is stored as
    ``str(value)``.
    """
    # Enum members are checked first: a str- or int-based enum would otherwise pass as
    # its plain value, while history has always stored them as ``str(member)``.
    if isinstance(value, enum.Enum):
        return str(value)
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if isinstance(value, datetime):
        return serialize_datetime(value)
    return str(value)
