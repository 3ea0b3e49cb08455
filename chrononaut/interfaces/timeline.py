"""History arranged for people to read: an object's timeline and the activity feed.

The history viewer (:mod:`chrononaut.views`) and the ``flask chrononaut history`` and
``activity`` commands show the same things, built here from the activity table.
Hidden columns only ever appear by name: a value found under a hidden column (an old
row written before the column was made hidden) is never passed on.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, cast

from flask import current_app
from sqlalchemy import ColumnElement, inspect, select, true, tuple_

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

#: The kinds of change :func:`kind_of` tells apart, as the viewer and the commands
#: label them.
CREATED, CHANGED, DELETED = "created", "changed", "deleted"

#: The kinds the activity feed can be filtered by (:func:`kind_condition`).
FILTERABLE_KINDS = (CREATED, CHANGED)

# The kind of each recorded operation, for rows that record theirs.
_KIND_OF_OPERATION = {"insert": CREATED, "update": CHANGED, "delete": DELETED}


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
    :ivar changes: ``{column: (before, after)}`` of the tracked columns; when the object
        was created every column is new, with ``None`` before.
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
    def kind(self) -> str:
        """What happened to the object: see :func:`kind_of`."""
        return kind_of(self.snapshot)

    @property
    def model(self) -> type[Any] | None:
        """The versioned model of the object, ``None`` for a table no model maps."""
        return self.snapshot.chrononaut_model

    @property
    def changed_columns(self) -> list[str]:
        """The names of the tracked columns this change touched, sorted; when the object
        was created, those it gave a value. Hidden columns are in
        :attr:`hidden_changed`."""
        created = self.kind == CREATED
        return sorted(
            column for column, (_, new) in self.changes.items() if not created or new is not None
        )

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


def kind_of(snapshot: HistorySnapshot) -> str:
    """Return what the change of ``snapshot`` did: :data:`CREATED`, :data:`CHANGED` or
    :data:`DELETED`.

    A snapshot that records its operation says; otherwise version 0 is a creation and
    any other version a change.
    """
    operation = getattr(snapshot, "chrononaut_operation", None)
    if operation in _KIND_OF_OPERATION:
        return _KIND_OF_OPERATION[operation]
    return CREATED if snapshot.chrononaut_version == 0 else CHANGED


def parse_kind(text: str) -> str:
    """Check a kind of change to filter the feed by.

    :raises ValueError: ``text`` is not one of :data:`FILTERABLE_KINDS`.
    """
    if text not in FILTERABLE_KINDS:
        raise InvalidArgumentError(f"{text!r} is not one of {', '.join(FILTERABLE_KINDS)}")
    return text


def kind_condition(activity: Any, kind: str) -> ColumnElement[bool]:
    """Return the condition on the activity table (or an alias of it) that selects the
    changes of one kind, one of :data:`FILTERABLE_KINDS`.

    :raises ValueError: ``kind`` is not one of them.
    """
    if parse_kind(kind) == CREATED:
        return cast("ColumnElement[bool]", activity.c.version == 0)
    return cast("ColumnElement[bool]", activity.c.version > 0)


def models_by_table() -> dict[str, type[Versioned]]:
    """Return the versioned model of each ``table_name`` the activity rows carry; a table
    that several models share (single-table inheritance) maps to the first by name."""
    by_table: dict[str, type[Versioned]] = {}
    for model in versioned_models():
        by_table.setdefault(table_name_of(model), model)
    return by_table


def _entry(
    previous: HistorySnapshot | None, snapshot: HistorySnapshot, hidden: frozenset[str]
) -> TimelineEntry:
    """Return the entry of ``snapshot``, compared with the object's ``previous`` one."""
    if kind_of(snapshot) == CREATED:
        previous = None  # a key used again starts a new object: everything is new
    changes = changes_between(previous, snapshot)
    hidden_changed = dict.fromkeys(hidden_changes_of(snapshot))
    # A value under a hidden column comes from a row written before the column was
    # hidden: it is named as changed, never shown.
    for column in sorted(hidden & changes.keys()):
        del changes[column]
        hidden_changed[column] = None
    return TimelineEntry(snapshot, changes, tuple(hidden_changed))


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
        entries.append(_entry(previous, snapshot, hidden))
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
    kind: str | None = None,
    limit: int = 50,
    offset: int = 0,
) -> list[TimelineEntry]:
    """Return recorded changes of every versioned model, newest first, each compared
    with the previous snapshot of its object.

    One query reads the page and, for each change on it, the object's snapshot before
    it (one index lookup each), however long the objects' histories are.

    :param activity: the activity model (``db.activity_cls``).
    :param since: only changes at or after this time (naive: UTC).
    :param until: only changes at or before this time (naive: UTC).
    :param table_name: only changes of this table.
    :param user_id: only changes whose ``user_info`` names this user.
    :param kind: only changes of this kind, one of :data:`FILTERABLE_KINDS`.
    :param limit: at most this many changes.
    :param offset: skip this many of the newest changes first (for paging).
    :raises ValueError: ``kind`` is not one to filter by.
    """
    table = activity.__table__
    c = table.c
    page = select(table)
    if since is not None:
        page = page.where(c.changed >= utc(since))
    if until is not None:
        page = page.where(c.changed <= utc(until))
    if table_name is not None:
        page = page.where(c.table_name == table_name)
    if user_id is not None:
        page = page.where(c.user_info["user_id"].astext == user_id)
    if kind is not None:
        page = page.where(kind_condition(table, kind))
    newest_first = (c.changed.desc(), c.id.desc())
    rows = page.order_by(*newest_first).limit(limit).offset(offset).subquery("page")
    before = table.alias("before")
    previous = (
        select(
            before.c.changed.label("previous_changed"),
            before.c.version.label("previous_version"),
            before.c.data.label("previous_data"),
        )
        .where(
            before.c.table_name == rows.c.table_name,
            before.c.key == rows.c.key,
            tuple_(before.c.changed, before.c.id) < tuple_(rows.c.changed, rows.c.id),
        )
        .order_by(before.c.changed.desc(), before.c.id.desc())
        .limit(1)
        .lateral("previous")
    )
    query = (
        select(rows, previous)
        .select_from(rows.outerjoin(previous, true()))
        .order_by(rows.c.changed.desc(), rows.c.id.desc())
    )
    models = models_by_table()
    entries = []
    for row in session.execute(query):
        model = models.get(row.table_name)
        snapshot = HistorySnapshot.from_activity(row, model)
        entries.append(_entry(_previous_of(row, model), snapshot, hidden_columns(model)))
    return entries


def _previous_of(row: Any, model: type[Any] | None) -> HistorySnapshot | None:
    data: Mapping[str, Any] | None = row.previous_data
    if data is None:
        return None
    return HistorySnapshot(
        table_name=row.table_name,
        changed=row.previous_changed,
        version=row.previous_version,
        key=row.key,
        data=data,
        model=model,
    )
