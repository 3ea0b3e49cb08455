"""Snapshots: read-only views of the activity rows of one object."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from types import MappingProxyType
from typing import Any

from sqlalchemy import Row, inspect

from chrononaut._compat import new_instance
from chrononaut.exceptions import (
    ChrononautException,
    ChrononautRelationshipError,
    ErasedAttributeError,
    HiddenAttributeError,
    InvalidArgumentError,
    UntrackedAttributeError,
)
from chrononaut.history.activity import HIDDEN_COLUMNS_CHANGED_KEY, VERSION_KEY
from chrononaut.history.columns import HIDDEN_ATTRIBUTE, UNTRACKED_ATTRIBUTE, VersionedColumns
from chrononaut.history.serialization import deserialize_value

#: The key of ``extra_info`` under which :func:`chrononaut.erase` notes the columns whose
#: values it removed from a row: ``{column: n}``, where ``n`` numbers the distinct
#: values the column had in the object's history (0 for the first), so that a diff
#: still tells whether an erased value changed without knowing it.
ERASED_COLUMNS_KEY = "erased_cols"


class Erased(str):
    """The type of :data:`ERASED`. It is a string, so that every view that prints
    values prints it as ``(erased)``; compare with ``is ERASED``."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "ERASED"


#: Stands in diffs for a value :func:`chrononaut.erase` removed.
ERASED = Erased("(erased)")


def _loaded(activity: Any, name: str) -> Any:
    """Return the column ``name`` of an activity row or object, or ``None``.

    The time-travel columns are deferred on the activity model: read from an object,
    only a loaded value counts, so that no query is sent (and none fails on a table
    made before they existed).
    """
    if isinstance(activity, Row):
        # Asked by mapping: a missing attribute of a row costs SQLAlchemy an exception
        # and its fallbacks, more than building the snapshot itself.
        return activity._mapping.get(name)
    values = getattr(activity, "__dict__", None)
    if values is not None:
        return values.get(name)
    return getattr(activity, name, None)


class HistorySnapshot:
    """A read-only view of one row of ``chrononaut_activity``.

    Tracked column values read as attributes (``snapshot.title``); ``version`` is the
    version the object had in that state. Reading a hidden column raises
    :class:`~chrononaut.exceptions.HiddenAttributeError`, an untracked one
    :class:`~chrononaut.exceptions.UntrackedAttributeError`, one whose values
    :func:`chrononaut.erase` removed :class:`~chrononaut.exceptions.ErasedAttributeError`.
    Values are the JSON values stored (datetimes as ISO text); :meth:`typed_data` and
    :meth:`reify` give them back as the column types.

    Everything else a snapshot knows is read through the ``chrononaut_``-prefixed
    accessors, a prefix versioned models may not use for attributes of their own, so
    that no column can hide them.

    :ivar chrononaut_meta: ``table_name``, ``changed``, ``user_info`` and ``extra_info``
        of the activity row.
    """

    # The underscore names are those of the original; code written for it reads them.
    _data: dict[str, Any]
    _key: dict[str, Any]
    _version: int
    _activity_id: int | None
    _model: type[Any] | None
    _operation: str | None
    _transaction_id: int | None
    chrononaut_meta: dict[str, Any]

    def __init__(
        self,
        *,
        table_name: str,
        changed: datetime,
        version: int,
        key: Mapping[str, Any],
        data: Mapping[str, Any],
        user_info: Mapping[str, Any] | None = None,
        extra_info: Mapping[str, Any] | None = None,
        model: type[Any] | None = None,
        activity_id: int | None = None,
        operation: str | None = None,
        transaction_id: int | None = None,
    ) -> None:
        fields = {
            "_data": dict(data),
            "_key": dict(key),
            "_version": version,
            "_activity_id": activity_id,
            "_model": model,
            "chrononaut_meta": {
                "table_name": table_name,
                "changed": changed,
                "user_info": dict(user_info or {}),
                "extra_info": dict(extra_info or {}),
            },
            "_operation": operation,
            "_transaction_id": transaction_id,
        }
        for name, value in fields.items():
            object.__setattr__(self, name, value)

    @classmethod
    def from_activity(cls, activity: Any, model: type[Any] | None = None) -> HistorySnapshot:
        """Build a snapshot from an activity object or row.

        :param activity: a loaded activity model instance or a result row with its columns.
        :param model: the versioned class the row belongs to; it tells hidden and
            untracked columns apart from unknown ones.
        """
        return cls(
            table_name=activity.table_name,
            changed=activity.changed,
            version=activity.version,
            key=activity.key,
            data=activity.data,
            user_info=activity.user_info,
            extra_info=activity.extra_info,
            model=model,
            activity_id=activity.id,
            operation=_loaded(activity, "operation"),
            transaction_id=_loaded(activity, "transaction_id"),
        )

    # -- public accessors ----------------------------------------------------------

    @property
    def chrononaut_data(self) -> Mapping[str, Any]:
        """The stored values of this version, ``version`` included, as stored."""
        return MappingProxyType(self._data)

    @property
    def chrononaut_key(self) -> Mapping[str, Any]:
        """The object's primary key, ``{attribute: value}``, as stored."""
        return MappingProxyType(self._key)

    @property
    def chrononaut_version(self) -> int:
        """The version the object had in this state."""
        return self._version

    @property
    def chrononaut_model(self) -> type[Any] | None:
        """The versioned class the snapshot belongs to, if it was built with one."""
        return self._model

    @property
    def chrononaut_activity_id(self) -> int | None:
        """The ``id`` of the activity row, if the snapshot was read from one."""
        return self._activity_id

    @property
    def chrononaut_changed(self) -> datetime:
        """When the change that produced this state was made."""
        changed: datetime = self.chrononaut_meta["changed"]
        return changed

    @property
    def chrononaut_user_info(self) -> Mapping[str, Any]:
        """Who made the change: ``user_id`` and ``remote_addr``."""
        return MappingProxyType(self.chrononaut_meta["user_info"])

    @property
    def chrononaut_extra_info(self) -> Mapping[str, Any]:
        """The extra change info recorded with the change."""
        return MappingProxyType(self.chrononaut_meta["extra_info"])

    @property
    def chrononaut_operation(self) -> str | None:
        """What the change did: ``"insert"``, ``"update"`` or ``"delete"``.

        ``None`` for rows written before the operation was recorded (by Chrononaut 0.5
        or before the migration); :func:`~chrononaut.history.lives.operation_of` tells
        theirs from the object's other rows.

        .. versionadded:: 1.0
        """
        return self._operation

    @property
    def chrononaut_transaction_id(self) -> int | None:
        """The id of the database transaction that recorded the change, shared by every
        change of one commit; ``None`` for rows written before it was recorded.

        .. versionadded:: 1.0
        """
        return self._transaction_id

    def __getattr__(self, name: str) -> Any:
        # Only called when normal lookup fails; dunder names are never column values and
        # must fail fast for copy, pickle and friends.
        if name.startswith("__"):
            raise AttributeError(name)
        data = object.__getattribute__(self, "_data")
        if name in data:
            return data[name]
        model = object.__getattribute__(self, "_model")
        if name in getattr(model, HIDDEN_ATTRIBUTE, ()) or name in hidden_changes_of(self):
            raise HiddenAttributeError(f"{name!r} is a hidden column: its values are not stored.")
        if name in erased_columns_of(self):
            raise ErasedAttributeError(f"{name!r} was erased from this object's history.")
        if name in getattr(model, UNTRACKED_ATTRIBUTE, ()):
            raise UntrackedAttributeError(f"{name!r} is an untracked column.")
        if model is not None:
            mapper = inspect(model)
            if name in mapper.relationships:
                raise ChrononautRelationshipError(
                    f"{name!r} is a relationship: snapshots hold column values only."
                )
            if name in mapper.column_attrs:
                # Untracked by the instance when it was recorded, or not yet a column.
                raise UntrackedAttributeError(f"{name!r} is not stored in this snapshot.")
        raise AttributeError(f"{type(self).__name__} has no attribute {name!r}.")

    def __setattr__(self, name: str, value: Any) -> None:
        raise ChrononautException("Cannot modify a HistorySnapshot model.")

    def __delattr__(self, name: str) -> None:
        raise ChrononautException("Cannot modify a HistorySnapshot model.")

    def diff(self, other: HistorySnapshot) -> dict[str, tuple[Any, Any]]:
        """Return the columns whose values differ from this snapshot to ``other``.

        :param other: the later snapshot.
        :return: ``{column: (value here, value in other)}``; a column missing on one
            side counts as ``None`` there. ``version`` is left out.
        :raises ChrononautException: ``other`` is not a snapshot.
        """
        if not isinstance(other, HistorySnapshot):
            raise InvalidArgumentError("`other` needs to be a history snapshot.")
        return changes_between(self, other)

    def typed_data(self) -> dict[str, Any]:
        """Return the stored values as the Python values of the model's columns.

        Each value is read back with :func:`~chrononaut.history.serialization.deserialize_value`
        for the type of the model's column of that name, so a ``Numeric`` column gives a
        ``Decimal`` and an ``Enum`` column its member. Values of attributes the model no
        longer has are returned as stored.

        .. versionadded:: 0.6

        :return: ``{attribute: value}`` for every stored attribute, ``version`` included.
        :raises ChrononautException: the snapshot was built without its model.
        """
        model = self._model
        if model is None:
            raise ChrononautException("This snapshot does not know its model to type its data.")
        columns = inspect(model).columns
        return {
            name: deserialize_value(value, columns[name].type) if name in columns else value
            for name, value in self._data.items()
        }

    def reify(self) -> Any:
        """Return a new instance of the model that holds this snapshot's values.

        The instance is transient: it belongs to no session and writes nothing unless you
        add it to one. Hidden and untracked attributes, and attributes the model no
        longer has, are left out; relationships are empty.

        .. versionadded:: 0.6

        :return: an instance of the snapshot's model with :meth:`typed_data` set on it.
        :raises ChrononautException: the snapshot was built without its model.
        """
        values = self.typed_data()
        mapper = inspect(self._model)
        instance = new_instance(mapper)
        for name, value in values.items():
            if name in mapper.columns:
                setattr(instance, name, value)
        return instance

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, HistorySnapshot):
            return NotImplemented
        return (self._key, self._data, self.chrononaut_meta) == (
            other._key,
            other._data,
            other.chrononaut_meta,
        )

    __hash__ = None  # type: ignore[assignment]

    def __str__(self) -> str:
        meta = self.chrononaut_meta
        return f"{meta['table_name']} snapshot at {meta['changed'].isoformat()}: {self._data}"

    def __repr__(self) -> str:
        meta = self.chrononaut_meta
        return (
            f"<HistorySnapshot table={meta['table_name']!r} key={self._key!r} "
            f"version={self._version!r} changed={meta['changed'].isoformat()!r}>"
        )


def hidden_changes_of(snapshot: HistorySnapshot) -> tuple[str, ...]:
    """Return the names of the hidden columns the change of ``snapshot`` touched.

    Only a list under ``extra_info["hidden_cols_changed"]`` counts, and of it only the
    names of columns the model could hide (not its primary key, ``version`` or its
    untracked columns) whose value the snapshot does not store: whatever else a row
    may hold under that key was not written by Chrononaut and is ignored.
    """
    names = snapshot.chrononaut_extra_info.get(HIDDEN_COLUMNS_CHANGED_KEY)
    if not isinstance(names, list):
        return ()
    stored = snapshot.chrononaut_data
    model = snapshot.chrononaut_model
    hideable = None if model is None else VersionedColumns.of(inspect(model)).hideable
    return tuple(
        dict.fromkeys(
            name
            for name in names
            if isinstance(name, str)
            and name not in stored
            and (hideable is None or name in hideable)
        )
    )


def erased_columns_of(snapshot: HistorySnapshot) -> dict[str, int]:
    """Return ``{column: n}`` of the columns :func:`chrononaut.erase` removed from
    ``snapshot``'s row (see :data:`ERASED_COLUMNS_KEY`).

    Only names whose value the row does not store count, so that a key of that name
    in an application's own change info cannot hide a stored value.
    """
    marks = snapshot.chrononaut_extra_info.get(ERASED_COLUMNS_KEY)
    if not isinstance(marks, dict):
        return {}
    stored = snapshot.chrononaut_data
    return {
        name: number for name, number in marks.items() if name not in stored and type(number) is int
    }


def changes_between(
    older: HistorySnapshot | None, newer: HistorySnapshot
) -> dict[str, tuple[Any, Any]]:
    """Return ``{column: (value in older, value in newer)}`` of the columns that differ.

    With no ``older`` snapshot every stored column is new, ``None`` before, even one
    whose value is ``None``. A column stored on one side only counts as ``None`` on the
    other. ``version`` is left out. An erased value is :data:`ERASED`; two erased
    values differ when they were different values before the erasure.
    """
    after = newer.chrononaut_data
    erased_after = erased_columns_of(newer)
    if older is None:
        changes: dict[str, tuple[Any, Any]] = {
            column: (None, value) for column, value in after.items() if column != VERSION_KEY
        }
        changes.update((column, (None, ERASED)) for column in erased_after)
        return changes
    before = older.chrononaut_data
    erased_before = erased_columns_of(older)
    changes = {}
    for column in dict.fromkeys([*before, *after, *erased_before, *erased_after]):
        if column == VERSION_KEY:
            continue
        if column in erased_before or column in erased_after:
            if erased_before.get(column, -1) != erased_after.get(column, -1):
                changes[column] = (
                    ERASED if column in erased_before else before.get(column),
                    ERASED if column in erased_after else after.get(column),
                )
            continue
        old, new = before.get(column), after.get(column)
        if old != new:
            changes[column] = (old, new)
    return changes
