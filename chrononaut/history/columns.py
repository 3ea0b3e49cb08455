"""Which columns of a versioned model its history holds, and in which role.

A versioned model's attributes are *tracked* (their values are stored), *hidden*
(``__chrononaut_hidden__``: a change is noted, the value never stored) or *untracked*
(``__chrononaut_untracked__``: ignored). The facts are worked out once per mapper.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from weakref import WeakKeyDictionary

from sqlalchemy import CHAR, JSON, NCHAR, ColumnDefault, Table, TypeDecorator
from sqlalchemy.orm import InstanceState, Mapper

from chrononaut._compat import instance_state
from chrononaut.exceptions import ChrononautException
from chrononaut.history.activity import VERSION_KEY
from chrononaut.history.serialization import STORED_AS_IS, escape_text, serialize_value

#: ``Table.info`` key that marks the table of a versioned model.
_VERSIONED_KEY = "chrononaut.versioned"


#: Snapshots keep their own accessors under this prefix (``chrononaut_key`` and so on),
#: so a versioned model may not use it for attributes of its own.
RESERVED_PREFIX = "chrononaut_"
#: The declarations a model, or one of its instances, may make.
HIDDEN_ATTRIBUTE = "__chrononaut_hidden__"
UNTRACKED_ATTRIBUTE = "__chrononaut_untracked__"
_DECLARATION_TYPES = (list, tuple, set, frozenset)


def check_declaration(mapper: Mapper[Any]) -> None:
    """Refuse a versioned model whose declaration history could not hold faithfully.

    :raises ChrononautException: an attribute name starts with ``chrononaut_``, or the
        model's ``__chrononaut_hidden__`` or ``__chrononaut_untracked__`` is not a
        list, tuple or set of its column attribute names outside the primary key and
        ``version``, or names an attribute in both.
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
    model = mapper.class_
    _declared_roles(
        mapper, getattr(model, HIDDEN_ATTRIBUTE, ()), getattr(model, UNTRACKED_ATTRIBUTE, ())
    )


def _declared_roles(
    mapper: Mapper[Any],
    hidden: Any,
    untracked: Any,
    instance: str | None = None,
    hidden_by_class: tuple[str, ...] = (),
) -> tuple[frozenset[str], frozenset[str]]:
    """Return the hidden and the untracked attribute names of a declaration.

    :param instance: the identity of the instance that declares them, if not the class.
    :param hidden_by_class: names the instance's class hides, hidden in any case.
    :raises ChrononautException: the declaration breaks a rule of :func:`check_declaration`.
    """
    owner = mapper.class_.__name__
    if instance is not None:
        owner = f"{owner} instance {instance}"
    hidden_names = _declared_names(mapper, owner, HIDDEN_ATTRIBUTE, hidden, instance)
    hidden_names |= frozenset(hidden_by_class)
    untracked_names = _declared_names(mapper, owner, UNTRACKED_ATTRIBUTE, untracked, instance)
    for name in sorted(hidden_names & untracked_names):
        raise ChrononautException(
            f"{owner}: {name!r} is in both {HIDDEN_ATTRIBUTE} and {UNTRACKED_ATTRIBUTE}; "
            "list it in one of them."
        )
    return hidden_names, untracked_names


def _declared_names(
    mapper: Mapper[Any], owner: str, attribute: str, names: Any, instance: str | None
) -> frozenset[str]:
    where = f"{owner}.{attribute}" if instance is None else f"{owner}, {attribute}"
    if not isinstance(names, _DECLARATION_TYPES):
        raise ChrononautException(
            f"{where} must be a list, tuple or set of attribute names, "
            f"not {type(names).__name__}: {names!r}."
        )
    # Keyed by attribute name, and complete before the mappers are configured.
    columns = mapper.columns
    primary_key = set(mapper.primary_key)
    for name in names:
        if not isinstance(name, str):
            raise ChrononautException(f"{where}: {name!r} is not an attribute name.")
        if name == VERSION_KEY:
            raise ChrononautException(
                f"{where}: {VERSION_KEY!r} is always recorded; it can be neither hidden "
                "nor untracked."
            )
        column = columns.get(name)
        if column is None:
            by_column_name = [key for key, column in columns.items() if column.name == name]
            if by_column_name:
                raise ChrononautException(
                    f"{where}: {name!r} is the column of the attribute {by_column_name[0]!r}; "
                    "name the attribute."
                )
            raise ChrononautException(
                f"{where}: {name!r} is not a column attribute of {mapper.class_.__name__}."
            )
        if column.primary_key or column in primary_key:
            raise ChrononautException(
                f"{where}: {name!r} is part of the primary key, which every snapshot "
                "stores as its key; it can be neither hidden nor untracked."
            )
    return frozenset(names)


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
    untracked: tuple[str, ...]
    #: ``tracked`` as a set, for the membership tests of every flushed object.
    tracked_keys: frozenset[str]
    #: The tracked ``JSON`` columns, whose own string values may hold NUL.
    json_tracked: tuple[str, ...]
    #: The attributes a change could list as hidden: every column attribute except
    #: the primary key, ``version`` and the untracked ones.
    hideable: frozenset[str]
    #: ``(position in the key, attribute, function)`` for each key column whose value
    #: the database returns in another form than it was given: the function gives
    #: that form. PostgreSQL pads ``CHAR(n)``, so ``"ab"`` comes back as ``"ab  "``.
    key_forms: tuple[tuple[int, str, Callable[[Any], Any]], ...]
    #: The ``version`` column's own default gives a new row version 0, so the flush
    #: need not set it (SQLAlchemy puts the default in the object after the INSERT).
    version_defaults_to_zero: bool

    @classmethod
    def of(cls, mapper: Mapper[Any]) -> VersionedColumns:
        """Return the (cached) columns of ``mapper``, as its class declares them."""
        columns = _columns_by_mapper.get(mapper)
        if columns is None:
            model = mapper.class_
            columns = cls._sorted(
                mapper,
                frozenset(getattr(model, HIDDEN_ATTRIBUTE, ())),
                frozenset(getattr(model, UNTRACKED_ATTRIBUTE, ())),
            )
            _columns_by_mapper[mapper] = columns
        return columns

    @classmethod
    def of_object(cls, mapper: Mapper[Any], state: InstanceState[Any]) -> VersionedColumns:
        """Return the columns of one object of ``mapper``, whose own
        ``__chrononaut_hidden__`` or ``__chrononaut_untracked__`` apply if it has them.

        An instance's untracked list replaces its class's; its hidden list adds to its
        class's, so that an instance never stores a value its class hides.

        :raises ChrononautException: the instance's declaration breaks a rule of
            :func:`check_declaration`.
        """
        declared = state.dict
        if HIDDEN_ATTRIBUTE not in declared and UNTRACKED_ATTRIBUTE not in declared:
            return cls.of(mapper)
        of_class = cls.of(mapper)
        identity = state.identity
        hidden, untracked = _declared_roles(
            mapper,
            declared.get(HIDDEN_ATTRIBUTE, ()),
            declared.get(UNTRACKED_ATTRIBUTE, of_class.untracked),
            instance="(new)" if identity is None else ", ".join(map(str, identity)),
            hidden_by_class=of_class.hidden,
        )
        variants = _variants_by_mapper.setdefault(mapper, {})
        variant = variants.get((hidden, untracked))
        if variant is None:
            variant = variants[hidden, untracked] = cls._sorted(mapper, hidden, untracked)
        return variant

    @classmethod
    def _sorted(
        cls, mapper: Mapper[Any], hidden: frozenset[str], untracked: frozenset[str]
    ) -> VersionedColumns:
        # Only attributes stored in the mapper's own tables: ConcreteBase adds a
        # discriminator that lives in its polymorphic union and on no instance.
        stored = set(mapper.tables)
        attribute_keys = [
            prop.key
            for prop in mapper.column_attrs
            if any(getattr(column, "table", None) in stored for column in prop.columns)
        ]
        tracked = tuple(
            key
            for key in attribute_keys
            if key not in hidden and key not in untracked and key != VERSION_KEY
        )
        # Snapshots may be built with a model that is not versioned.
        version_column = mapper.columns.get(VERSION_KEY)
        version_default = None if version_column is None else version_column.default
        primary_key = tuple(
            mapper.get_property_by_column(column).key for column in mapper.primary_key
        )
        return cls(
            table_name=mapper.local_table.name,  # type: ignore[attr-defined]
            primary_key=primary_key,
            tracked=tracked,
            hidden=tuple(key for key in attribute_keys if key in hidden),
            untracked=tuple(key for key in attribute_keys if key in untracked),
            tracked_keys=frozenset(tracked),
            json_tracked=tuple(
                key for key in tracked if isinstance(_type_of(mapper.columns[key]), JSON)
            ),
            key_forms=tuple(
                (position, name, form)
                for position, (name, form) in enumerate(
                    zip(primary_key, map(_stored_form, mapper.primary_key), strict=True)
                )
                if form is not None
            ),
            hideable=frozenset(attribute_keys)
            - untracked
            - {VERSION_KEY, *primary_key, *_primary_key_attributes(mapper)},
            version_defaults_to_zero=isinstance(version_default, ColumnDefault)
            and version_default.is_scalar
            and version_default.arg == 0,
        )

    def key_of(self, obj: object) -> dict[str, Any]:
        """Return the ``key`` JSON that identifies ``obj`` in the activity table, with
        each value as the database returns it."""
        key = _values_of(obj, self.primary_key)
        for _, name, form in self.key_forms:
            key[name] = form(key[name])
        return key

    def stored_identity(self, identity: tuple[Any, ...] | None) -> tuple[Any, ...] | None:
        """Return an identity key of the mapper with each value as the database returns it."""
        if not self.key_forms or identity is None:
            return identity
        stored = list(identity)
        for position, _, form in self.key_forms:
            stored[position] = form(stored[position])
        return tuple(stored)

    def data_of(self, obj: object) -> dict[str, Any]:
        """Return the ``data`` JSON of ``obj``: tracked values plus ``version``."""
        data = _values_of(obj, self.tracked)
        self.escape_json_text(data)
        data[VERSION_KEY] = getattr(obj, VERSION_KEY)
        return data

    def escape_json_text(self, data: dict[str, Any]) -> None:
        """Escape, in place, the text values of JSON columns in ``data``.

        A ``json`` column may hold a string with NUL, which ``jsonb`` refuses; the
        escaped form (:func:`~chrononaut.history.serialization.escape_text`) reads back
        exactly. Strings nested in JSON values are escaped by ``serialize_value``.
        """
        for name in self.json_tracked:
            value = data.get(name)
            if isinstance(value, str):
                data[name] = escape_text(value)


def _type_of(column: Any) -> Any:
    column_type = column.type
    return column_type.impl_instance if isinstance(column_type, TypeDecorator) else column_type


def _stored_form(column: Any) -> Callable[[Any], Any] | None:
    """Return how the database changes a value of ``column``, if it does."""
    column_type = _type_of(column)
    if isinstance(column_type, (CHAR, NCHAR)):
        length = column_type.length or 1

        def padded(value: Any) -> Any:
            # What PostgreSQL stores: cut to the length (only spaces may be cut, or the
            # INSERT fails) and padded with spaces up to it.
            return value[:length].ljust(length) if isinstance(value, str) else value

        return padded
    return None


def _primary_key_attributes(mapper: Mapper[Any]) -> list[str]:
    # A joined-inheritance subclass maps its own table's key columns as well.
    return [key for key, column in mapper.columns.items() if column.primary_key]


# Mappers, unlike tables, have no ``info`` dictionary; classes of one table may track
# different columns (single-table inheritance), so the table's cannot stand in.
_columns_by_mapper: WeakKeyDictionary[Mapper[Any], VersionedColumns] = WeakKeyDictionary()
#: The columns of instances with declarations of their own, by hidden and untracked names.
_variants_by_mapper: WeakKeyDictionary[
    Mapper[Any], dict[tuple[frozenset[str], frozenset[str]], VersionedColumns]
] = WeakKeyDictionary()


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
