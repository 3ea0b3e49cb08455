"""The activity table that holds every snapshot, and the read-only snapshot view."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any
from weakref import WeakKeyDictionary

from sqlalchemy import BigInteger, DateTime, Index, Integer, Text, inspect, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column, registry

from chrononaut.exceptions import (
    ChrononautException,
    ChrononautRelationshipError,
    HiddenAttributeError,
    UntrackedAttributeError,
)
from chrononaut.serialization import deserialize_value

if TYPE_CHECKING:
    from collections.abc import Mapping

#: Activity class of each declarative registry, so that a model finds its history
#: table also when it lives on a ``__bind_key__`` metadata of its own.
_activity_classes: WeakKeyDictionary[registry, type[Any]] = WeakKeyDictionary()

_EMPTY_JSON = text("'{}'::jsonb")


def activity_factory(Base: type[Any], schema: str | None = None) -> type[Any]:
    """Define the ``chrononaut_activity`` model on a declarative base.

    :class:`~chrononaut.VersionedSQLAlchemy` calls this for ``db.Model``; call it
    yourself only when you manage the declarative base on your own.

    :param Base: the declarative base class (``db.Model``).
    :param schema: the database schema of the table, if not the default one.
    :return: the mapped activity class.
    """

    class ChrononautActivity(Base):
        """One snapshot of one versioned row."""

        __tablename__ = "chrononaut_activity"
        __table_args__ = (
            # One object's rows in time order, so that version_at() reads one index
            # entry however long the history is. It replaces the original index on
            # (key, table_name), whose columns it leads with: a second index only made
            # every recorded change dearer. Tables made by older releases may still
            # have that one; docs/performance.rst has the migration that swaps them.
            Index(
                "ix_chrononaut_activity_table_name_key_changed",
                "table_name",
                "key",
                "changed",
                "id",
            ),
            {"schema": schema},
        )

        id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
        table_name: Mapped[str] = mapped_column(Text, nullable=False)
        changed: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
        version: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
        key: Mapped[dict[str, Any]] = mapped_column(
            JSONB, nullable=False, server_default=_EMPTY_JSON
        )
        data: Mapped[dict[str, Any]] = mapped_column(
            JSONB, nullable=False, server_default=_EMPTY_JSON
        )
        user_info: Mapped[dict[str, Any]] = mapped_column(
            JSONB, nullable=False, server_default=_EMPTY_JSON
        )
        extra_info: Mapped[dict[str, Any]] = mapped_column(
            JSONB, nullable=False, server_default=_EMPTY_JSON
        )

    _activity_classes[ChrononautActivity.registry] = ChrononautActivity
    return ChrononautActivity


def activity_class_for(model: type[Any]) -> type[Any]:
    """Return the activity class that holds the history of ``model``.

    :raises ChrononautException: ``model`` is not on a base that has an activity table.
    """
    try:
        return _activity_classes[model.registry]
    except (AttributeError, KeyError):
        raise ChrononautException(
            f"{model.__name__} has no activity table: versioned models must derive "
            "from the `Model` of a `VersionedSQLAlchemy` instance."
        ) from None


def is_activity(obj: object) -> bool:
    """Tell whether ``obj`` is a row of an activity table."""
    model = type(obj)
    model_registry = getattr(model, "registry", None)
    return isinstance(model_registry, registry) and _activity_classes.get(model_registry) is model


class HistorySnapshot:
    """A read-only view of one row of ``chrononaut_activity``.

    Tracked column values read as attributes (``snapshot.title``); ``version`` is the
    version the object had in that state. Reading a hidden column raises
    :class:`~chrononaut.exceptions.HiddenAttributeError`, an untracked one
    :class:`~chrononaut.exceptions.UntrackedAttributeError`. Values are the JSON values
    stored (datetimes as ISO text).

    :ivar chrononaut_meta: ``table_name``, ``changed``, ``user_info`` and ``extra_info``
        of the activity row.
    """

    _data: dict[str, Any]
    _key: dict[str, Any]
    _version: int
    _activity_id: int | None
    _model: type[Any] | None
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
        )

    def __getattr__(self, name: str) -> Any:
        # Only called when normal lookup fails; dunder names are never column values and
        # must fail fast for copy, pickle and friends.
        if name.startswith("__"):
            raise AttributeError(name)
        data = object.__getattribute__(self, "_data")
        if name in data:
            return data[name]
        model = object.__getattribute__(self, "_model")
        if name in getattr(model, "__chrononaut_hidden__", ()):
            raise HiddenAttributeError(f"{name!r} is a hidden column: its values are not stored.")
        if name in getattr(model, "__chrononaut_untracked__", ()):
            raise UntrackedAttributeError(f"{name!r} is an untracked column.")
        if model is not None and name in inspect(model).relationships:
            raise ChrononautRelationshipError(
                f"{name!r} is a relationship: snapshots hold column values only."
            )
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
        """
        if not isinstance(other, HistorySnapshot):
            raise ChrononautException("`other` needs to be a history snapshot.")
        changes = {}
        for column in self._data.keys() | other._data.keys():
            if column == "version":
                continue
            old, new = self._data.get(column), other._data.get(column)
            if old != new:
                changes[column] = (old, new)
        return changes

    def typed_data(self) -> dict[str, Any]:
        """Return the stored values as the Python values of the model's columns.

        Each value is read back with :func:`~chrononaut.serialization.deserialize_value`
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
        instance = mapper.class_manager.new_instance()
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
