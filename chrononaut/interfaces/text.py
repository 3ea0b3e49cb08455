"""Text people type and text they read: keys, times, users and page numbers given to the
viewer and the commands are checked here, and stored values are made safe to print.

Every check refuses what PostgreSQL could not compare or store (NUL, lone surrogates,
integers beyond a column's range, offsets beyond BIGINT) with a clear
:class:`~chrononaut.exceptions.InvalidArgumentError`, so that bad input never reaches the
database as an error page or a traceback.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import TYPE_CHECKING, Any, NoReturn

from sqlalchemy import BigInteger, Integer, SmallInteger, inspect

from chrononaut.exceptions import InvalidArgumentError
from chrononaut.history.columns import VersionedColumns
from chrononaut.history.serialization import UTC, as_utc, serialize_value

if TYPE_CHECKING:
    from collections.abc import Callable

    from chrononaut.capture.versioned import Versioned

#: The most rows a query can skip or return: ``OFFSET`` and ``LIMIT`` take a BIGINT.
MAX_ROWS = 2**63 - 1

#: The longest key text :func:`parse_key` reads, far beyond any indexable key.
MAX_KEY_LENGTH = 10_000

# NUL, which PostgreSQL text and jsonb cannot hold, and lone surrogates, which are not
# UTF-8 (a command line that is not UTF-8 reaches Python as such).
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")

# What visible() escapes: its docstring lists them.
_UNSAFE_TO_PRINT = re.compile(
    "[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069\ud800-\udfff]"
)

# A JSON string, closed or not, or an opening bracket: finding them in turn finds the
# brackets outside strings in one pass.
_JSON_STRING_OR_OPENING = re.compile(r'"(?:[^"\\]|\\.)*"?|[\[{]', re.DOTALL)

# Whole numbers in the digits 0 to 9, never longer than BIGINT's.
_INTEGER_TEXT = re.compile("[-+]?[0-9]{1,19}")
_PAGE_TEXT = re.compile("[0-9]{1,19}")

# The integer column types by the bits they hold; Integer is last, as the others
# derive from it.
_INTEGER_BITS = ((SmallInteger, 16), (BigInteger, 64), (Integer, 32))


def utc(moment: datetime) -> datetime:
    """Return ``moment`` in UTC; a naive datetime is taken to be UTC already."""
    return as_utc(moment).astimezone(UTC)


def parse_time(text: str) -> datetime:
    """Read an ISO 8601 date or date and time; one without a time zone is taken as UTC.

    :return: the time in UTC (PostgreSQL takes offsets up to 15:59 hours, Python up to
        23:59).
    :raises ValueError: ``text`` is not an ISO 8601 date or date and time, or is one
        that falls outside the years 1 to 9999 in UTC.
    """
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise InvalidArgumentError(
            f"{text!r} is not an ISO 8601 date or time, such as 2024-05-01T12:30"
        ) from None
    try:
        return utc(moment)
    except OverflowError:
        raise InvalidArgumentError(
            f"{text!r} is out of range: in UTC it falls outside the years 1 to 9999"
        ) from None


def parse_user(text: str) -> str:
    """Check a user id to filter by: it is compared with the stored ``user_id`` as text.

    :raises ValueError: ``text`` holds a character that PostgreSQL cannot store (NUL or
        a lone surrogate), so no stored user id can equal it.
    """
    char = _unstorable(text)
    if char is not None:
        raise InvalidArgumentError(f"{text!r} holds {char!r}, which PostgreSQL cannot store")
    return text


def parse_page(text: str, per_page: int) -> int:
    """Read the number of a page of ``per_page`` changes, counted from 1.

    :raises ValueError: ``text`` is not a whole number written in the digits 0 to 9, is
        below 1, or is so large that the changes before the page are more than a query
        can skip (:data:`MAX_ROWS`).
    """
    # Not str.isdigit(): it accepts '²', which int() refuses, and int() reads the
    # digits of other scripts too.
    if _PAGE_TEXT.fullmatch(text):
        number = int(text)
        if number >= 1 and (number - 1) * per_page <= MAX_ROWS:
            return number
    raise InvalidArgumentError(f"{text!r} is not a page number")


def _unstorable(text: str) -> str | None:
    match = _UNSTORABLE.search(text)
    return match.group() if match else None


def visible(text: str) -> str:
    """Return ``text`` fit to print on a terminal: every character that could steer it
    or reorder what it shows, listed below, is written as its Python escape instead.

    Those characters are the C0 and C1 controls and DEL (``\\x1b``, ``\\x9b``, ``\\x07``,
    ``\\x08``, ``\\r``, ``\\n``, ``\\t`` ...), the line and paragraph separators
    (``\\u2028``, ``\\u2029``), the bidirectional marks, embeddings, overrides and
    isolates (``\\u061c``, ``\\u200e``, ``\\u200f``, ``\\u202a`` to ``\\u202e``, ``\\u2066``
    to ``\\u2069``) and lone surrogates. Everything else, backslashes included, is left
    as it is.
    """
    return _UNSAFE_TO_PRINT.sub(_escape, text)


def _escape(match: re.Match[str]) -> str:
    return match.group().encode("unicode_escape").decode("ascii")


def parse_key(model: type[Versioned], text: str) -> dict[str, Any]:
    """Read the primary key of an object of ``model`` as its activity rows store it.

    ``text`` is either a JSON object naming every primary key attribute, such as
    ``{"locale": "en", "slug": "intro"}``, or, for a single-column key, the bare value
    (``42``). Text values are converted to the column's type, so ``"42"`` finds the
    object whose integer key is 42.

    :raises ValueError: ``text`` does not name exactly the key attributes, is longer
        than :data:`MAX_KEY_LENGTH`, is JSON with a list or object inside the key object,
        or a value does not fit its column: the wrong JSON type, an integer outside the
        column's range or not written in the digits 0 to 9, or text holding a
        character that PostgreSQL cannot store.
    """
    mapper = inspect(model)
    names = VersionedColumns.of(mapper).primary_key
    if len(text) > MAX_KEY_LENGTH:
        raise InvalidArgumentError(
            f"a key of {len(text):,} characters is too long: keys are at most {MAX_KEY_LENGTH:,}"
        )
    if text.lstrip().startswith("{"):
        given = _key_object(model, names, text)
    elif len(names) == 1:
        given = {names[0]: text}
    else:
        raise InvalidArgumentError(
            f"{model.__name__} has a composite key: give it as a JSON object with the "
            f"names {', '.join(names)}"
        )
    key = {name: _key_value(mapper, name, given[name]) for name in names}
    for _, name, stored_form in VersionedColumns.of(mapper).key_forms:
        key[name] = _stored_key_value(model, name, key[name], stored_form)
    return key


def _stored_key_value(
    model: type[Versioned], name: str, value: Any, stored_form: Callable[[Any], Any]
) -> Any:
    # Keys are stored as the database returns them (a CHAR(n) padded with spaces), so
    # "ab" must find "ab  ". Only trailing spaces may be cut to fit: any other value
    # longer than the column could not be a key of it.
    stored = stored_form(value)
    if isinstance(value, str) and value.rstrip(" ") != stored.rstrip(" "):
        raise InvalidArgumentError(f"{value!r} is not a valid {name} of {model.__name__}")
    return stored


def _key_object(model: type[Versioned], names: tuple[str, ...], text: str) -> dict[str, Any]:
    # json.loads recurses once per level of nesting and runs out of stack at a few
    # thousand; a key has no nesting at all, so it is refused before parsing.
    openings = _JSON_STRING_OR_OPENING.finditer(text)
    if sum(match.group() in ("[", "{") for match in openings) > 1:
        raise InvalidArgumentError(
            f"the key of {model.__name__} is a JSON object of single values (text or "
            "numbers), with no list or object inside"
        )
    try:
        given = json.loads(text, parse_constant=_refuse_constant)
    except ValueError as error:  # also Python's limit on the digits of an integer
        raise InvalidArgumentError(f"the key {text!r} is not valid JSON: {error}") from None
    if not isinstance(given, dict) or set(given) != set(names):
        raise InvalidArgumentError(
            f"the key of {model.__name__} is a JSON object with the names "
            f"{', '.join(names)}; got {text!r}"
        )
    return given


def _refuse_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not a JSON number")


def _key_value(mapper: Any, name: str, value: Any) -> Any:
    model_name = mapper.class_.__name__
    written = repr(value) if isinstance(value, str) else json.dumps(value)
    invalid = InvalidArgumentError(f"{written} is not a valid {name} of {model_name}")
    column = mapper.get_property(name).columns[0]
    try:
        python_type = column.type.python_type
    except NotImplementedError:
        python_type = None
    if isinstance(value, str):
        char = _unstorable(value)
        if char is not None:
            raise InvalidArgumentError(
                f"{invalid}: it holds {char!r}, which PostgreSQL cannot store"
            )
        if python_type is int:
            if not _INTEGER_TEXT.fullmatch(value):
                raise invalid
            value = int(value)
        elif python_type in (None, str):
            return value
        else:
            try:
                return serialize_value(python_type(value))
            except (TypeError, ValueError, ArithmeticError):
                raise invalid from None
    if python_type is int:
        # bool is an int to Python, not to JSON.
        if type(value) is not int or not _fits_integer_column(column.type, value):
            raise invalid
        return value
    if python_type is str or not isinstance(value, (int, float)):
        raise invalid
    return value


def _fits_integer_column(column_type: Any, value: int) -> bool:
    bits = next((bits for kind, bits in _INTEGER_BITS if isinstance(column_type, kind)), 64)
    return -(1 << (bits - 1)) <= value < 1 << (bits - 1)


def format_key(key: dict[str, Any]) -> str:
    """Write ``key`` the way :func:`parse_key` reads it back: the bare value for a
    single-column key, else a JSON object."""
    if len(key) == 1:
        (value,) = key.values()
        if not str(value).lstrip().startswith("{"):
            return str(value)
    return json.dumps(key)
