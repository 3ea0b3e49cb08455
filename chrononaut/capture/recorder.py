"""The event listeners that turn flushes into history.

Mapper events on the :class:`~chrononaut.Versioned` mixin see every row the flush
writes, including foreign keys synchronised from relationships, orphan deletes and
cascades. They bump versions and queue the changes on the session; ``after_flush``
then writes the queued snapshots with one Core ``INSERT`` per activity table (and
1,000 snapshots), inside the flush's transaction, so data and history commit or roll
back together. Before the first UPDATE or DELETE they lock the rows the flush changes
(:mod:`chrononaut.capture.locking`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from flask import current_app, has_app_context
from sqlalchemy import (
    BigInteger,
    Insert,
    Table,
    Text,
    bindparam,
    cast,
    column,
    event,
    func,
    insert,
    select,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import InstanceState, Mapper, Session, UOWTransaction, object_session
from sqlalchemy.orm.attributes import set_committed_value

from chrononaut._compat import instance_state
from chrononaut.capture.change_info import (
    APPENDED_CHANGE_INFO_KEY,
    ChangeInfoMixin,
    RecordChanges,
    active_extra_change_info,
    forget_recorded_appended_info,
    keep_appended_info_rolled_back,
    note_appended_info_recorded,
    refuse_reserved_keys,
)
from chrononaut.capture.changes import (
    changed_attributes,
    changes_a_column,
    changes_any,
    hidden_changed,
)
from chrononaut.capture.guard import (
    guard_table,
    refuse_history_delete,
    refuse_history_update,
    versioning_suppressed,
)
from chrononaut.capture.locking import RowsToLock, lock_rows, rows_to_lock
from chrononaut.capture.session import VersionedSession
from chrononaut.capture.undo import drop_rolled_back_undo_notes, forget_committed_undo_notes
from chrononaut.capture.versioned import Versioned
from chrononaut.exceptions import ChrononautException
from chrononaut.history.activity import (
    DELETE,
    HIDDEN_COLUMNS_CHANGED_KEY,
    INSERT,
    UPDATE,
    VERSION_KEY,
    Activity,
    activity_class_for,
    has_time_travel_columns,
)
from chrononaut.history.columns import VersionedColumns, check_declaration, mark_versioned_table
from chrononaut.history.retention import check_retention
from chrononaut.history.serialization import UTC

_FLUSH_KEY = "chrononaut.flush"
_INSERT_STATEMENT_KEY = "chrononaut.activity_insert"
_RECORD_CHANGES_COLUMNS = frozenset({"change_info", "changed"})


@dataclass(slots=True)
class PendingActivity:
    """A change of one versioned object, queued until the flush has written its row."""

    target: Versioned
    columns: VersionedColumns
    #: :data:`~chrononaut.history.activity.INSERT`, ``UPDATE`` or ``DELETE``.
    operation: str
    hidden_columns_changed: list[str]
    #: Set for deletes, whose state must be read before the row is gone.
    key: dict[str, Any] | None = None
    data: dict[str, Any] | None = None


@dataclass
class FlushRecord:
    """Per-flush state, kept in ``session.info`` from ``before_flush`` on.

    What depends only on the flush's context (the time, the open blocks, the
    configuration) is read here once, not for each object the flush writes.
    """

    changed: datetime
    #: False inside ``suppress_versioning()``.
    recording: bool
    #: Strict tracking is on, but no ``extra_change_info`` block is open.
    missing_change_info: bool
    #: The info of the innermost open ``extra_change_info`` block.
    block_info: dict[str, Any]
    pending: list[PendingActivity] = field(default_factory=list)
    #: Rows to lock before the flush's first UPDATE or DELETE, and those locked since.
    to_lock: RowsToLock = field(default_factory=dict)
    locked: set[InstanceState[Any]] = field(default_factory=set)
    _user_info: dict[type[Any], dict[str, Any]] = field(default_factory=dict)
    _custom_info: dict[type[Any], dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def start(cls, session: Session) -> FlushRecord:
        """Return the state of a flush of ``session`` that starts now."""
        block_info = active_extra_change_info()
        strict = has_app_context() and current_app.config.get(
            "CHRONONAUT_REQUIRE_EXTRA_CHANGE_INFO"
        )
        return cls(
            changed=datetime.now(UTC),
            recording=not versioning_suppressed(),
            missing_change_info=bool(strict) and block_info is None,
            block_info=block_info or {},
            to_lock=rows_to_lock(session),
        )

    def user_info_for(self, model: type[ChangeInfoMixin]) -> dict[str, Any]:
        """Return ``model._capture_user_info()``, asked once per flush."""
        if model not in self._user_info:
            self._user_info[model] = model._capture_user_info()
        return self._user_info[model]

    def extra_info_for(
        self, model: type[ChangeInfoMixin], state: InstanceState[Any]
    ) -> dict[str, Any]:
        """Return a new dict with the extra change info of ``state``'s object: the
        configured function's, then the open block's, then what was appended to it."""
        if model not in self._custom_info:
            custom_info = model._get_custom_change_info()
            refuse_reserved_keys(custom_info)
            self._custom_info[model] = custom_info
        return {
            **self._custom_info[model],
            **self.block_info,
            **state.info.get(APPENDED_CHANGE_INFO_KEY, {}),
        }


def _start_flush(session: Session, flush_context: UOWTransaction, instances: Any) -> None:
    session.info[_FLUSH_KEY] = FlushRecord.start(session)


def _flush_record(target: object) -> FlushRecord | None:
    """Return the flush state of ``target``'s session if that session is versioned."""
    session = object_session(target)
    if not isinstance(session, VersionedSession):
        return None
    record: FlushRecord | None = session.info.get(_FLUSH_KEY)
    if record is None:
        record = session.info[_FLUSH_KEY] = FlushRecord.start(session)
    return record


def _require_change_info(record: FlushRecord, target: object) -> None:
    if record.missing_change_info:
        raise ChrononautException(
            f"Strict tracking is enabled, but a change to {type(target).__name__} was "
            "flushed outside `extra_change_info(...)`. Wrap the commit in "
            "`extra_change_info(...)` or `rationale(...)`."
        )


def _mapped_versioned(mapper: Mapper[Any], class_: type[Any]) -> None:
    check_declaration(mapper)
    check_retention(mapper)
    table = mapper.local_table
    if isinstance(table, Table):
        mark_versioned_table(table)
        guard_table(table, "versioned")


def _lock_row(
    record: FlushRecord,
    mapper: Mapper[Any],
    connection: Any,
    state: InstanceState[Any],
    deleting: bool,
) -> None:
    """Lock the rows the flush changes before its first UPDATE or DELETE, and then
    ``state``'s row if the flush did not know it would change it when it started."""
    if record.to_lock:
        pending, record.to_lock = record.to_lock, {}
        for version_column, states in pending.items():
            lock_rows(connection, version_column, states)
            record.locked.update(states)
    if state not in record.locked and (deleting or changes_a_column(state)):
        lock_rows(connection, mapper.columns[VERSION_KEY], [state])
        record.locked.add(state)


def _record_insert(mapper: Mapper[Any], connection: Any, target: Versioned) -> None:
    record = _flush_record(target)
    if record is None:
        return
    state = instance_state(target)
    columns = VersionedColumns.of_object(mapper, state)
    replaced = _replaced_row(mapper, state, columns.primary_key)
    if replaced is not None:
        _switch_row(mapper, connection, target, replaced)
    if not record.recording:
        return
    _require_change_info(record, target)
    if not columns.version_defaults_to_zero and state.dict.get(VERSION_KEY) is None:
        target.version = 0
    record.pending.append(
        PendingActivity(target, columns, INSERT, hidden_changed(state, columns.hidden))
    )


def _replaced_row(
    mapper: Mapper[Any], state: InstanceState[Any], primary_key: tuple[str, ...]
) -> Versioned | None:
    """Return the object, deleted in this flush, whose row the new object of ``state``
    takes over: the one with the same identity, if there is one."""
    loaded = state.dict
    # Keys the database generates are not set yet: the common case ends here.
    if any(loaded.get(name) is None for name in primary_key) or state.session is None:
        return None
    identity = mapper.identity_key_from_instance(state.obj())
    replaced: Versioned | None = state.session.identity_map.get(identity)
    return replaced


def _switch_row(mapper: Mapper[Any], connection: Any, target: Versioned, old: Versioned) -> None:
    """Record the delete of ``old``, whose row ``target`` takes over.

    SQLAlchemy turns the pair into one UPDATE (a "row switch") and fires no event for
    the delete: it is locked and recorded here, before the insert. The UPDATE writes
    only what ``target`` sets, so the row keeps the old values of the other columns;
    ``target`` gets them too, so that its snapshot is the row as it is, and the row
    gets the new object's version 0.
    """
    _record_delete(instance_state(old).mapper, connection, old)
    loaded = instance_state(target).dict
    for prop in mapper.column_attrs:
        if prop.key not in loaded:
            set_committed_value(target, prop.key, getattr(old, prop.key))
    target.version = 0


def _record_update(mapper: Mapper[Any], connection: Any, target: Versioned) -> None:
    record = _flush_record(target)
    if record is None:
        return
    state = instance_state(target)
    _lock_row(record, mapper, connection, state, deleting=False)
    if not record.recording:
        return
    columns = VersionedColumns.of_object(mapper, state)
    hidden = hidden_changed(state, columns.hidden)
    if not hidden and not changes_any(state, columns.tracked_keys):
        return
    _require_change_info(record, target)
    target.version = (target.version or 0) + 1
    record.pending.append(PendingActivity(target, columns, UPDATE, hidden))


def _record_delete(mapper: Mapper[Any], connection: Any, target: Versioned) -> None:
    record = _flush_record(target)
    if record is None:
        return
    state = instance_state(target)
    _lock_row(record, mapper, connection, state, deleting=True)
    if not record.recording:
        return
    _require_change_info(record, target)
    columns = VersionedColumns.of_object(mapper, state)
    data = columns.data_of(target)
    data[VERSION_KEY] = (data[VERSION_KEY] or 0) + 1
    record.pending.append(
        PendingActivity(target, columns, DELETE, [], key=columns.key_of(target), data=data)
    )


def _activity_insert(table: Table, time_travel: bool) -> Insert:
    """Return the (cached) statement that writes a flush's rows into ``table``.

    The rows travel as one JSON array, unpacked by ``jsonb_to_recordset`` in the
    server: a single parameter is encoded in one call, where binding the four JSONB
    columns of every row took more time than the server needed to store them.

    :param time_travel: the table has the ``operation`` and ``transaction_id`` columns;
        tables made by older releases get rows without them.
    """
    statements: dict[bool, Insert] = table.info.setdefault(_INSERT_STATEMENT_KEY, {})
    if time_travel not in statements:
        names = ["table_name", "version", "key", "data", "user_info", "extra_info"]
        if time_travel:
            names.append("operation")
        rows = (
            func.jsonb_to_recordset(bindparam("rows", type_=JSONB))
            .table_valued(*(column(name, table.c[name].type) for name in names))
            .render_derived(with_types=True)
        )
        constants = {"changed": cast(bindparam("changed"), table.c.changed.type)}
        if time_travel:
            # xid8 has no cast to bigint; its text form is the 64-bit number.
            constants["transaction_id"] = cast(cast(func.pg_current_xact_id(), Text), BigInteger)
        statements[time_travel] = insert(table).from_select(
            [*names, *constants],
            select(*(rows.c[name] for name in names), *constants.values()),
        )
    return statements[time_travel]


#: Rows per activity INSERT. A flush of more objects sends more than one statement, so
#: that its JSON stays far below the 256 MB a ``jsonb`` value may hold.
ROWS_PER_STATEMENT = 1000


def _write_activity(session: Session, flush_context: UOWTransaction) -> None:
    record: FlushRecord | None = session.info.pop(_FLUSH_KEY, None)
    if record is None or not record.pending:
        return
    rows_by_table: dict[Table, list[dict[str, Any]]] = {}
    tables: dict[type[Any], Table] = {}
    appended_info_states: list[InstanceState[Any]] = []
    for change in record.pending:
        target, columns = change.target, change.columns
        model = type(target)
        state = instance_state(target)
        data = change.data if change.data is not None else columns.data_of(target)
        extra_info = record.extra_info_for(model, state)
        if change.hidden_columns_changed:
            extra_info[HIDDEN_COLUMNS_CHANGED_KEY] = change.hidden_columns_changed
        if APPENDED_CHANGE_INFO_KEY in state.info:
            appended_info_states.append(state)
        if model not in tables:
            tables[model] = activity_class_for(model).__table__
        rows_by_table.setdefault(tables[model], []).append(
            {
                "table_name": columns.table_name,
                "version": data[VERSION_KEY],
                "key": change.key if change.key is not None else columns.key_of(target),
                "data": data,
                "user_info": record.user_info_for(model),
                "extra_info": extra_info,
                "operation": change.operation,
            }
        )
    write_snapshots(session, rows_by_table, record.changed)
    if appended_info_states:
        note_appended_info_recorded(session, appended_info_states)


def write_snapshots(
    session: Session, rows_by_table: dict[Table, list[dict[str, Any]]], changed: datetime
) -> None:
    """Append activity rows (dicts of the activity columns) to their tables, in the
    session's transaction, dated ``changed``."""
    for table, rows in rows_by_table.items():
        statement = _activity_insert(table, has_time_travel_columns(session, table))
        for first in range(0, len(rows), ROWS_PER_STATEMENT):
            session.execute(
                statement, {"rows": rows[first : first + ROWS_PER_STATEMENT], "changed": changed}
            )


def _discard_flush_state(session: Session) -> None:
    session.info.pop(_FLUSH_KEY, None)


def _stamp(target: RecordChanges, record: FlushRecord) -> None:
    model = type(target)
    change_info = dict(record.user_info_for(model))
    extra_info = record.extra_info_for(model, instance_state(target))
    if extra_info:
        change_info["extra"] = extra_info
    target.change_info = change_info
    target.changed = record.changed


def _stamp_insert(mapper: Mapper[Any], connection: Any, target: RecordChanges) -> None:
    record = _flush_record(target)
    if record is not None:
        _stamp(target, record)


def _stamp_update(mapper: Mapper[Any], connection: Any, target: RecordChanges) -> None:
    record = _flush_record(target)
    if record is None:
        return
    changed = changed_attributes(instance_state(target), mapper.column_attrs)
    if any(key not in _RECORD_CHANGES_COLUMNS for key in changed):
        _stamp(target, record)


_SESSION_LISTENERS = (
    ("before_flush", _start_flush),
    ("after_flush", _write_activity),
    ("after_commit", forget_recorded_appended_info),
    ("after_rollback", _discard_flush_state),
    ("after_soft_rollback", keep_appended_info_rolled_back),
    ("after_commit", forget_committed_undo_notes),
    ("after_soft_rollback", drop_rolled_back_undo_notes),
)
_MAPPER_LISTENERS = (
    (Versioned, "after_mapper_constructed", _mapped_versioned),
    (Versioned, "before_insert", _record_insert),
    (Versioned, "before_update", _record_update),
    (Versioned, "before_delete", _record_delete),
    (RecordChanges, "before_insert", _stamp_insert),
    (RecordChanges, "before_update", _stamp_update),
)


def listen(activity_class: type[Activity]) -> None:
    """Register the history listeners; safe to call more than once.

    :param activity_class: the activity model whose rows must never be changed or
        deleted outside ``suppress_versioning(allow_deleting_history=True)``.
    """
    # Recorded statements build on this module's flush state and insert path, so
    # their module imports this one, and is imported here, once both exist.
    from chrononaut.capture.bulk import record_statement

    if not event.contains(VersionedSession, "before_flush", _start_flush):
        for name, session_listener in _SESSION_LISTENERS:
            event.listen(VersionedSession, name, session_listener)
        event.listen(VersionedSession, "do_orm_execute", record_statement)
        for mixin, name, mapper_listener in _MAPPER_LISTENERS:
            event.listen(mixin, name, mapper_listener, propagate=True)
    guard_table(activity_class.__table__, "history")
    if not event.contains(activity_class, "before_delete", refuse_history_delete):
        event.listen(activity_class, "before_delete", refuse_history_delete)
        event.listen(activity_class, "before_update", refuse_history_update)
