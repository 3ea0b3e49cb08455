"""History arranged for people to read: an object's timeline and the activity feed.

The history viewer (:mod:`chrononaut.views`) and the ``flask chrononaut history`` and
``activity`` commands show the same things, built here from the activity table.
Hidden columns only ever appear by name: a value found under a hidden column (an old
row written before the column was made hidden) is never passed on.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, cast

from flask import current_app
from sqlalchemy import inspect, select

from chrononaut.capture.versioned import Versioned
from chrononaut.exceptions import InvalidArgumentError
from chrononaut.extension import VersionedSQLAlchemy
from chrononaut.history.activity import HIDDEN_COLUMNS_CHANGED_KEY, VERSION_KEY, Activity
from chrononaut.history.columns import VersionedColumns
from chrononaut.history.reads import hidden_changes_of, object_history
from chrononaut.history.snapshot import HistorySnapshot, changes_between
from chrononaut.interfaces.text import utc

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, registry

#: Shown in place of a hidden column's value, which is never stored.
HIDDEN_MARKER = "changed (hidden)"


def extension() -> VersionedSQLAlchemy:
    """Return the :class:`~chrononaut.VersionedSQLAlchemy` of the current app.

    :raises RuntimeError: it is not registered on the app.
    """
    db = current_app.extensions.get("chrononaut")
    if not isinstance(db, VersionedSQLAlchemy):
        raise RuntimeError("Chrononaut's VersionedSQLAlchemy is not registered on this app.")
    return db


def versioned_models() -> list[type[Versioned]]:
    """Return the versioned models of the app's ``db.Model``, sorted by class name."""
    model_registry: registry = cast(Any, extension().Model).registry
    return sorted(
        (
            mapper.class_
            for mapper in model_registry.mappers
            if issubclass(mapper.class_, Versioned)
        ),
        key=lambda model: model.__name__,
    )


def versioned_model(name: str) -> type[Versioned]:
    """Return the versioned model named ``name`` (class name or table name).

    :raises ValueError: no versioned model of the app's ``db.Model`` has that name.
    """
    models = versioned_models()
    for model in models:
        if name in (model.__name__, table_name_of(model)):
            return model
    known = ", ".join(model.__name__ for model in models) or "none"
    raise InvalidArgumentError(f"no versioned model named {name!r} (known: {known})")


@dataclass(frozen=True)
class TimelineEntry:
    """One version of an object and what changed since the version before it.

    :ivar snapshot: the version as recorded.
    :ivar changes: ``{column: (before, after)}`` of the tracked columns; on the first
        version every column is new, with ``None`` before.
    :ivar hidden_changed: names of the hidden columns that changed in this version.
    """

    snapshot: HistorySnapshot
    changes: dict[str, tuple[Any, Any]]
    hidden_changed: tuple[str, ...]

    @property
    def version(self) -> int:
        """The version number the object had in this state."""
        return self.snapshot.chrononaut_version

    @property
    def changed(self) -> datetime:
        """When the change was made, in UTC."""
        return utc(self.snapshot.chrononaut_changed)

    @property
    def user_id(self) -> Any:
        """Who made the change, as captured in ``user_info``."""
        return self.snapshot.chrononaut_user_info.get("user_id")

    @property
    def remote_addr(self) -> Any:
        """The address the change came from, as captured in ``user_info``."""
        return self.snapshot.chrononaut_user_info.get("remote_addr")

    @property
    def extra(self) -> dict[str, Any]:
        """The extra change info (rationale and the like), without the hidden column list."""
        return extra_of(self.snapshot)

    @property
    def state(self) -> dict[str, Any]:
        """Every tracked value of this version, hidden columns left out."""
        hidden = hidden_columns(self.snapshot.chrononaut_model)
        return {
            column: value
            for column, value in self.snapshot.chrononaut_data.items()
            if column != VERSION_KEY and column not in hidden
        }


def table_name_of(model: type[Versioned]) -> str:
    """Return the ``table_name`` that the activity rows of ``model`` carry."""
    return VersionedColumns.of(inspect(model)).table_name


def hidden_columns(model: type[Any] | None) -> frozenset[str]:
    """Return the hidden column names of ``model`` (none when it is unknown)."""
    return frozenset(getattr(model, "__chrononaut_hidden__", ()))


def extra_of(snapshot: HistorySnapshot) -> dict[str, Any]:
    """Return the extra change info of ``snapshot`` without the hidden column list."""
    extra_info = snapshot.chrononaut_extra_info
    return {name: value for name, value in extra_info.items() if name != HIDDEN_COLUMNS_CHANGED_KEY}


def object_timeline(
    session: Session, model: type[Versioned], key: dict[str, Any]
) -> list[TimelineEntry]:
    """Return every version of the object of ``model`` with ``key``, oldest first.

    It works for deleted objects as well, since it reads only the activity table.

    :param key: the key as stored, for example from :func:`parse_key`.
    """
    hidden = hidden_columns(model)
    entries = []
    previous: HistorySnapshot | None = None
    for snapshot in object_history(session, model, key):
        changes = changes_between(previous, snapshot)
        hidden_changed = dict.fromkeys(hidden_changes_of(snapshot))
        # A value under a hidden column comes from a row written before the column
        # was hidden: it is named as changed, never shown.
        for column in hidden & changes.keys():
            del changes[column]
            hidden_changed[column] = None
        entries.append(TimelineEntry(snapshot, changes, tuple(hidden_changed)))
        previous = snapshot
    return entries


def object_exists(session: Session, model: type[Versioned], key: dict[str, Any]) -> bool:
    """Tell whether the object of ``model`` with ``key`` is still in the database."""
    names = VersionedColumns.of(inspect(model)).primary_key
    return session.get(model, tuple(key[name] for name in names)) is not None


def activity_feed(
    session: Session,
    activity: type[Activity],
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    table_name: str | None = None,
    user_id: str | None = None,
    limit: int = 50,
    offset: int = 0,
) -> list[HistorySnapshot]:
    """Return recorded changes of every versioned model, newest first.

    :param activity: the activity model (``db.activity_cls``).
    :param since: only changes at or after this time (naive: UTC).
    :param until: only changes at or before this time (naive: UTC).
    :param table_name: only changes of this table.
    :param user_id: only changes whose ``user_info`` names this user.
    :param limit: at most this many changes.
    :param offset: skip this many of the newest changes first (for paging).
    """
    query = select(activity)
    if since is not None:
        query = query.where(activity.changed >= utc(since))
    if until is not None:
        query = query.where(activity.changed <= utc(until))
    if table_name is not None:
        query = query.where(activity.table_name == table_name)
    if user_id is not None:
        query = query.where(activity.user_info["user_id"].astext == user_id)
    query = query.order_by(activity.changed.desc(), activity.id.desc()).limit(limit).offset(offset)
    return [HistorySnapshot.from_activity(row) for row in session.scalars(query)]
