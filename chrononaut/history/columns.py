"""Which columns of a versioned model its history holds, and in which role.

A versioned model's attributes are *tracked* (their values are stored), *hidden*
(``__chrononaut_hidden__``: a change is noted, the value never stored) or *untracked*
(``__chrononaut_untracked__``: ignored). The facts are worked out once per mapper.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from weakref import WeakKeyDictionary

from sqlalchemy import ColumnDefault, Table
from sqlalchemy.orm import Mapper

from chrononaut._compat import instance_state
from chrononaut.exceptions import ChrononautException
from chrononaut.history.activity import VERSION_KEY
from chrononaut.history.serialization import STORED_AS_IS, serialize_value

#: ``Table.info`` key that marks the table of a versioned model.
_VERSIONED_KEY = "chrononaut.versioned"


#: Snapshots keep their own accessors under this prefix (``chrononaut_key`` and so on),
#: so a versioned model may not use it for attributes of its own.
RESERVED_PREFIX = "chrononaut_"


def check_declaration(mapper: Mapper[Any]) -> None:
    """Refuse a versioned model whose declaration history could not hold faithfully.

    :raises ChrononautException: an attribute name starts with ``chrononaut_``.
    """
    # ``mapper.columns`` is complete once the mapper is constructed; ``column_attrs``
    # would configure every mapper, before related classes may even exist.
    reserved = [key for key, _ in mapper.columns.items() if key.startswith(RESERVED_PREFIX)]
    if reserved:
        raise ChrononautException(
            f"{mapper.class_.__name__}: attribute names starting with {RESERVED_PREFIX!r} "
            f"are reserved for history snapshots ({', '.join(reserved)}); map the column "
            "under another attribute name."
        )


def mark_versioned_table(table: Any) -> None:
    """Note that ``table`` holds the rows of a versioned model."""
    if isinstance(table, Table):
        table.info[_VERSIONED_KEY] = True


def is_versioned_table(table: Any) -> bool:
    """Tell whether ``table`` holds the rows of a versioned model."""
    return isinstance(table, Table) and bool(table.info.get(_VERSIONED_KEY))


@dataclass(frozen=True)
class VersionedColumns:
    """The attribute names of a versioned mapper, sorted by their role in history."""

    table_name: str
    primary_key: tuple[str, ...]
    tracked: tuple[str, ...]
    hidden: tuple[str, ...]
    #: ``tracked`` as a set, for the membership tests of every flushed object.
    tracked_keys: frozenset[str]
    #: The ``version`` column's own default gives a new row version 0, so the flush
    #: need not set it (SQLAlchemy puts the default in the object after the INSERT).
    version_defaults_to_zero: bool

    @classmethod
    def of(cls, mapper: Mapper[Any]) -> VersionedColumns:
        """Return the (cached) columns of ``mapper``."""
        columns = _columns_by_mapper.get(mapper)
        if columns is None:
            model = mapper.class_
            hidden = set(getattr(model, "__chrononaut_hidden__", ()))
            untracked = set(getattr(model, "__chrononaut_untracked__", ()))
            attribute_keys = [prop.key for prop in mapper.column_attrs]
            tracked = tuple(
                key
                for key in attribute_keys
                if key not in hidden and key not in untracked and key != VERSION_KEY
            )
            version_default = mapper.columns[VERSION_KEY].default
            columns = cls(
                table_name=mapper.local_table.name,  # type: ignore[attr-defined]
                primary_key=tuple(
                    mapper.get_property_by_column(column).key for column in mapper.primary_key
                ),
                tracked=tracked,
                hidden=tuple(key for key in attribute_keys if key in hidden),
                tracked_keys=frozenset(tracked),
                version_defaults_to_zero=isinstance(version_default, ColumnDefault)
                and version_default.is_scalar
                and version_default.arg == 0,
            )
            _columns_by_mapper[mapper] = columns
        return columns

    def key_of(self, obj: object) -> dict[str, Any]:
        """Return the ``key`` JSON that identifies ``obj`` in the activity table."""
        return _values_of(obj, self.primary_key)

    def data_of(self, obj: object) -> dict[str, Any]:
        """Return the ``data`` JSON of ``obj``: tracked values plus ``version``."""
        data = _values_of(obj, self.tracked)
        data[VERSION_KEY] = getattr(obj, VERSION_KEY)
        return data


# Mappers, unlike tables, have no ``info`` dictionary; classes of one table may track
# different columns (single-table inheritance), so the table's cannot stand in.
_columns_by_mapper: WeakKeyDictionary[Mapper[Any], VersionedColumns] = WeakKeyDictionary()


def _values_of(obj: object, names: tuple[str, ...]) -> dict[str, Any]:
    """Return the stored form of ``obj``'s attributes ``names``.

    Loaded values are read from the instance's dict, which is what the attribute
    access would return without its per-call instrumentation; only attributes that are
    expired or deferred go through ``getattr`` and load.
    """
    loaded = instance_state(obj).dict
    values = [loaded[name] if name in loaded else getattr(obj, name) for name in names]
    return {
        name: value if type(value) in STORED_AS_IS else serialize_value(value)
        for name, value in zip(names, values, strict=True)
    }
