"""History arranged for people to read: an object's timeline and the activity feed.

The history viewer (:mod:`chrononaut.views`) and the ``flask chrononaut history`` and
``activity`` commands show the same things, built here from the activity table.
Hidden columns only ever appear by name: a value found under a hidden column (an old
row written before the column was made hidden) is never passed on.

What each change did comes from history alone: the operation a row records, or for
rows written before operations were recorded, the rule of
:mod:`chrononaut.history.lives`. So a key deleted and used again reads as two lives,
and an object reads as deleted because its history ends with a delete, not because
its row is missing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, cast

from flask import current_app
from sqlalchemy import (
    ColumnElement,
    FromClause,
    Table,
    and_,
    case,
    false,
    func,
    inspect,
    not_,
    null,
    select,
    true,
)

from chrononaut.capture.undo import REVERTED_TO_KEY, REVERTED_TRANSACTION_KEY, UNDELETED_KEY
from chrononaut.capture.versioned import Versioned
from chrononaut.exceptions import InvalidArgumentError
from chrononaut.extension import VersionedSQLAlchemy
from chrononaut.history.activity import (
    DELETE,
    HIDDEN_COLUMNS_CHANGED_KEY,
    INSERT,
    TIME_TRAVEL_COLUMNS,
    UPDATE,
    VERSION_KEY,
    Activity,
    has_time_travel_columns,
)
from chrononaut.history.columns import VersionedColumns
from chrononaut.history.lives import deleted_condition, operation_of, row_before
from chrononaut.history.reads import hidden_changes_of, object_history
from chrononaut.history.snapshot import (
    ERASED,
    HistorySnapshot,
    changes_between,
    erased_columns_of,
)
from chrononaut.interfaces.text import utc

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, registry

#: Shown in place of a hidden column's value, which is never stored.
HIDDEN_MARKER = "changed (hidden)"

#: The kinds of change :func:`kind_of` tells apart, as the viewer and the commands
#: label them.
CREATED, CHANGED, DELETED = "created", "changed", "deleted"

#: How the viewer and the commands mark a change an undo made (:attr:`TimelineEntry.undo`).
REVERTED, RESTORED = "reverted", "restored"

#: The kinds the activity feed can be filtered by (:func:`kind_condition`).
FILTERABLE_KINDS = (CREATED, CHANGED, DELETED)

# The kind of each operation, and back.
_KIND_OF_OPERATION = {INSERT: CREATED, UPDATE: CHANGED, DELETE: DELETED}
_OPERATION_OF_KIND = {kind: operation for operation, kind in _KIND_OF_OPERATION.items()}

# The label of the feed's column with the operation of each change, recorded or read.
_OPERATION_LABEL = "chrononaut_operation"


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
    :ivar operation: what the change did, ``"insert"``, ``"update"`` or ``"delete"``:
        the operation the row records, else the one
        :func:`~chrononaut.history.lives.operation_of` reads from the object's rows.
    :ivar changes: ``{column: (before, after)}`` of the tracked columns; when the object
        was created every column is new, with ``None`` before.
    :ivar hidden_changed: names of the hidden columns that changed in this version.
    """

    snapshot: HistorySnapshot
    operation: str
    changes: dict[str, tuple[Any, Any]]
    hidden_changed: tuple[str, ...]

    @property
    def version(self) -> int:
        """The version number the object had in this state."""
        return self.snapshot.chrononaut_version

    @property
    def kind(self) -> str:
        """What happened to the object: :data:`CREATED`, :data:`CHANGED` or
        :data:`DELETED`."""
        return _KIND_OF_OPERATION[self.operation]

    @property
    def undo(self) -> str | None:
        """:data:`RESTORED` for an object brought back after its delete, :data:`REVERTED`
        for any other change an undo made (``revert_to``, ``revert_transaction``),
        ``None`` for ordinary changes: read from the keys the undo recorded in
        ``extra_info``."""
        extra_info = self.snapshot.chrononaut_extra_info
        if UNDELETED_KEY in extra_info:
            return RESTORED
        if REVERTED_TO_KEY in extra_info or REVERTED_TRANSACTION_KEY in extra_info:
            return REVERTED
        return None

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
        """Every tracked value of this version, hidden columns left out, erased ones as
        :data:`~chrononaut.history.snapshot.ERASED`."""
        hidden = hidden_columns(self.snapshot.chrononaut_model)
        stored = {
            **self.snapshot.chrononaut_data,
            **dict.fromkeys(erased_columns_of(self.snapshot), ERASED),
        }
        return {
            column: value
            for column, value in stored.items()
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


def kind_of(snapshot: HistorySnapshot, following: HistorySnapshot | None, live: bool) -> str:
    """Return what the change of ``snapshot`` did: :data:`CREATED`, :data:`CHANGED` or
    :data:`DELETED`.

    A snapshot that records its operation says; for one that does not, the object's
    other rows tell (:func:`~chrononaut.history.lives.operation_of`).

    :param following: the object's next snapshot after ``snapshot``, if there is one.
    :param live: a live row has the snapshot's key; only read for the newest snapshot
        of an object when it records no operation.
    """
    return _KIND_OF_OPERATION[operation_of(snapshot, following, live)]


def has_been_deleted(entries: list[TimelineEntry]) -> bool:
    """Tell whether the object of a timeline from :func:`object_timeline` has been
    deleted: its newest entry is a delete. A key deleted and used again is not."""
    return bool(entries) and entries[-1].kind == DELETED


def parse_kind(text: str) -> str:
    """Check a kind of change to filter the feed by.

    :raises ValueError: ``text`` is not one of :data:`FILTERABLE_KINDS`.
    """
    if text not in FILTERABLE_KINDS:
        raise InvalidArgumentError(f"{text!r} is not one of {', '.join(FILTERABLE_KINDS)}")
    return text


def kind_condition(
    rows: FromClause, kind: str, activity: FromClause | None = None
) -> ColumnElement[bool]:
    """Return the condition that selects the changes of one kind, one of
    :data:`FILTERABLE_KINDS`, among activity rows.

    Rows that record their operation are selected by it; the others by the rule of
    :mod:`chrononaut.history.lives` (version 0 is a creation; a delete is read from the
    object's next row or its live row, for the tables of the app's versioned models).
    Needs an application context.

    :param rows: the activity table, or a selectable with its columns.
    :param activity: the activity rows to find each row's next row in (the table, or
        the rows of a table made before the time-travel columns); defaults to ``rows``.
    :raises ValueError: ``kind`` is not one of them.
    """
    kind = parse_kind(kind)
    recorded = rows.c.operation == _OPERATION_OF_KIND[kind]
    # Each kind reads only as much of the rule as it needs: a creation is told by its
    # version alone, and only deletes and changes look up other rows.
    if kind == CREATED:
        read: ColumnElement[bool] = rows.c.version == 0
    elif kind == DELETED:
        read = _read_delete(rows, activity)
    else:
        read = and_(rows.c.version > 0, not_(_read_delete(rows, activity)))
    # COALESCE reads the rule only for the rows that record no operation.
    condition: ColumnElement[bool] = func.coalesce(recorded, read)
    return condition


def operation_expression(
    rows: FromClause, activity: FromClause | None = None
) -> ColumnElement[str]:
    """Return the SQL expression of the operation of each activity row of ``rows``: the
    recorded one, else the one the rule of :mod:`chrononaut.history.lives` reads.

    A row of a table that no versioned model of the app maps, and that records no
    operation, reads as an insert at version 0 and as an update otherwise: without a
    model, its live rows cannot be looked up. Needs an application context.

    :param rows: the activity table, or a selectable with its columns.
    :param activity: the activity table; defaults to ``rows``.
    """
    return case(
        (rows.c.operation.is_not(None), rows.c.operation),
        (rows.c.version == 0, INSERT),
        (_read_delete(rows, activity), DELETE),
        else_=UPDATE,
    )


def _read_delete(rows: FromClause, activity: FromClause | None) -> ColumnElement[bool]:
    """The rule's delete, for rows that record no operation: by the versioned model
    of each row's table; never for a table that no model maps."""
    table = rows if activity is None else activity
    by_table = [
        (rows.c.table_name == table_name, deleted_condition(rows, table, inspect(model)))
        for table_name, model in models_by_table().items()
    ]
    if not by_table:
        return false()
    condition: ColumnElement[bool] = case(*by_table, else_=false())
    return condition


def models_by_table() -> dict[str, type[Versioned]]:
    """Return the versioned model of each ``table_name`` the activity rows carry; a table
    that several models share (single-table inheritance) maps to the first by name."""
    by_table: dict[str, type[Versioned]] = {}
    for model in versioned_models():
        by_table.setdefault(table_name_of(model), model)
    return by_table


def _entry(
    previous: HistorySnapshot | None,
    snapshot: HistorySnapshot,
    operation: str,
    hidden: frozenset[str],
) -> TimelineEntry:
    """Return the entry of ``snapshot``, compared with the object's ``previous`` one."""
    if operation == INSERT:
        previous = None  # a key used again starts a new object: everything is new
    changes = changes_between(previous, snapshot)
    hidden_changed = dict.fromkeys(hidden_changes_of(snapshot))
    # A value under a hidden column comes from a row written before the column was
    # hidden: it is named as changed, never shown.
    for column in sorted(hidden & changes.keys()):
        del changes[column]
        hidden_changed[column] = None
    return TimelineEntry(snapshot, operation, changes, tuple(hidden_changed))


def object_timeline(
    session: Session, model: type[Versioned], key: dict[str, Any]
) -> list[TimelineEntry]:
    """Return every version of the object of ``model`` with ``key``, oldest first.

    It works for deleted objects as well, since it reads only the activity table. The
    live table is read only when the newest row records no operation (it was written
    before operations were recorded), to tell whether it was a delete.

    :param key: the key as stored, for example from :func:`parse_key`.
    """
    hidden = hidden_columns(model)
    snapshots = object_history(session, model, key)
    if not snapshots:
        return []
    live = snapshots[-1].chrononaut_operation is not None
    if not live:
        names = VersionedColumns.of(inspect(model)).primary_key
        live = session.get(model, tuple(key[name] for name in names)) is not None
    entries = []
    previous: HistorySnapshot | None = None
    for snapshot, following in zip(snapshots, [*snapshots[1:], None], strict=True):
        entries.append(_entry(previous, snapshot, operation_of(snapshot, following, live), hidden))
        previous = snapshot
    return entries


def newest_life(entries: list[TimelineEntry]) -> list[TimelineEntry]:
    """Return the entries of the object that has the key now, or had it last: those from
    the last creation on. The ones before it belong to objects deleted before the key
    was used again."""
    starts = [index for index, entry in enumerate(entries) if entry.kind == CREATED]
    return entries[starts[-1] if starts else 0 :]


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
    source = _readable_rows(session, table)
    c = source.c
    page = select(source)
    if since is not None:
        page = page.where(c.changed >= utc(since))
    if until is not None:
        page = page.where(c.changed <= utc(until))
    if table_name is not None:
        page = page.where(c.table_name == table_name)
    if user_id is not None:
        page = page.where(c.user_info["user_id"].astext == user_id)
    if kind is not None:
        page = page.where(kind_condition(source, kind, source))
    newest_first = (c.changed.desc(), c.id.desc())
    rows = page.order_by(*newest_first).limit(limit).offset(offset).subquery("page")
    before = table.alias("before")
    previous = row_before(
        select(
            before.c.changed.label("previous_changed"),
            before.c.version.label("previous_version"),
            before.c.data.label("previous_data"),
        ),
        before,
        rows,
    ).lateral("previous")
    query = (
        select(rows, previous, operation_expression(rows, source).label(_OPERATION_LABEL))
        .select_from(rows.outerjoin(previous, true()))
        .order_by(rows.c.changed.desc(), rows.c.id.desc())
    )
    models = models_by_table()
    entries = []
    for row in session.execute(query):
        model = models.get(row.table_name)
        snapshot = HistorySnapshot.from_activity(row, model)
        entries.append(
            _entry(
                _previous_of(row, model),
                snapshot,
                getattr(row, _OPERATION_LABEL),
                hidden_columns(model),
            )
        )
    return entries


def _readable_rows(session: Session, table: Table) -> FromClause:
    """The activity table, or for a table made before the time-travel columns, its rows
    with those columns as NULL, so that one statement reads both."""
    if has_time_travel_columns(session, table):
        return table
    return select(
        *(column for column in table.c if column.name not in TIME_TRAVEL_COLUMNS),
        *(null().cast(table.c[name].type).label(name) for name in TIME_TRAVEL_COLUMNS),
    ).subquery("activity")


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
