"""Statements that write many rows of a versioned model, recorded as a flush records
its objects.

``session.execute(update(Model)...)``, ``delete(Model)``, ``insert(Model)`` (with a
list of rows or with ``values()``) and ``Query.update()``/``.delete()`` never reach
the mapper events. The ``do_orm_execute`` listener here changes such a statement so
that it bumps each row's version itself (an UPDATE also sets ``version =
coalesce(version, 0) + 1``) and writes one snapshot per row, by the rules of a flush,
in the same transaction. Where possible the server builds the snapshots
(:mod:`chrononaut.capture.bulk_sql`): an UPDATE or DELETE then runs inside the INSERT
of its history, one round trip for both; otherwise the statement returns its rows
(RETURNING) and either the server builds their snapshots from their keys, or Python
does and sends them with the flush's INSERT (see :func:`_run`).

The UPDATE or DELETE locks each row it writes until the transaction ends. A flush
that read a row before the statement changed it waits for that lock, then finds
another version than it read and fails with
:class:`~chrononaut.exceptions.ConcurrentChangeError`; a statement that waits for a
flush's locks bumps the version the flush wrote. Either way no change is lost and
versions have no gaps.

A statement whose rows cannot be recorded faithfully (see :func:`_refusal`) is
refused as the write guard refuses every other write that would bypass history, with
the reason in the message.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Delete, Insert, Table, Update, func, inspect
from sqlalchemy.engine import Result, Row
from sqlalchemy.orm import Mapper, ORMExecuteState, Session
from sqlalchemy.orm.attributes import set_committed_value
from sqlalchemy.orm.exc import UnmappedColumnError

from chrononaut._compat import (
    changed_since_load,
    instance_state,
    json_serializer,
    named_froms,
    new_instance,
    requests_returning,
    update_assignments,
    updates_on_conflict,
)
from chrononaut.capture.bulk_sql import WRITTEN, built_in_server, keyed_history, written_history
from chrononaut.capture.guard import Write, refuse_versioned_write, unrecorded_writes
from chrononaut.capture.recorder import FlushRecord, write_snapshots
from chrononaut.capture.versioned import Versioned
from chrononaut.exceptions import ChrononautException
from chrononaut.history.activity import (
    DELETE,
    HIDDEN_COLUMNS_CHANGED_KEY,
    INSERT,
    UPDATE,
    VERSION_KEY,
    activity_class_for,
    has_time_travel_columns,
)
from chrononaut.history.columns import VersionedColumns
from chrononaut.history.serialization import UTC


@dataclass(frozen=True)
class _Recording:
    """How to record a statement: the statement to run, before it asks for rows back,
    and what building the snapshots of its rows needs."""

    mapper: Mapper[Any]
    #: :data:`~chrononaut.history.activity.INSERT`, ``UPDATE`` or ``DELETE``.
    operation: str
    #: The application's statement; an UPDATE also bumps each row's version.
    statement: Insert | Update | Delete
    #: The attributes an UPDATE sets; empty for the others.
    assigned: frozenset[str]
    #: An INSERT of a list of rows or from a SELECT: its rows come back only through
    #: ``returning()``, which gives the caller rows; the others keep their usual result.
    returns_rows: bool


def record_statement(execute_state: ORMExecuteState) -> Result[Any] | None:
    """``do_orm_execute`` listener: record a statement that writes a versioned table,
    or refuse it; refuse statements that would change history.

    :return: the statement's result when it was recorded; ``None`` lets the session
        run the statement as it is.
    :raises UnrecordedWriteError: the statement writes a versioned table in a way its
        history cannot record; the message says why.
    :raises ChrononautException: strict tracking is on and no reason is given.
    """
    writes = unrecorded_writes(execute_state)
    if not writes:
        return None
    recording = _recording(execute_state, writes)
    if recording is None:
        return None
    return _run(execute_state, recording)


def _recording(execute_state: ORMExecuteState, writes: list[Write]) -> _Recording | None:
    """Return how to record the statement, or ``None`` if it makes no version (an
    UPDATE of untracked columns only).

    :raises UnrecordedWriteError: it cannot be recorded.
    """
    _, action, table = writes[0]
    statement = execute_state.statement
    refusal = _refusal(execute_state, writes)
    if refusal is not None:
        refuse_versioned_write(table.name, action, refusal)
    assert isinstance(statement, (Insert, Update, Delete))
    mapper: Mapper[Any] = inspect(statement.entity_description["entity"])
    if isinstance(statement, Update):
        assigned = _assigned_attributes(mapper, statement)
        if all(assigned <= set(VersionedColumns.of(m).untracked) for m in _row_mappers(mapper)):
            return None
        version = mapper.columns[VERSION_KEY]
        bumped = statement.values({version: func.coalesce(version, 0) + 1})
        return _Recording(mapper, UPDATE, bumped, assigned, returns_rows=False)
    if isinstance(statement, Delete):
        return _Recording(mapper, DELETE, statement, frozenset(), returns_rows=False)
    # An INSERT of a list of rows runs as an executemany, and INSERT ... SELECT takes
    # no return_defaults(): their rows come back only through returning(). One
    # INSERT ... VALUES keeps its usual result (and rowcount).
    returns_rows = execute_state.is_executemany or statement.select is not None
    return _Recording(mapper, INSERT, statement, frozenset(), returns_rows)


def _returning(recording: _Recording, columns: Sequence[Any]) -> Insert | Update | Delete:
    """The recorded statement, returning ``columns`` of the rows it writes, while its
    result stays the one the application expects (a rowcount, no rows asked for)."""
    statement = recording.statement
    if recording.returns_rows:
        assert isinstance(statement, Insert)
        return statement.returning(*columns)
    table = recording.mapper.local_table
    return statement.return_defaults(*table.primary_key, supplemental_cols=columns)


def _refusal(execute_state: ORMExecuteState, writes: list[Write]) -> str | None:
    """Say why the statement's writes cannot be recorded, or return ``None`` if they
    can: one INSERT, UPDATE or DELETE of a versioned model stored in one table, whose
    rows RETURNING gives in full."""
    statement = execute_state.statement
    if (
        len(writes) > 1
        or not isinstance(statement, (Insert, Update, Delete))
        or not statement.table.is_derived_from(writes[0][2])
    ):
        return "Writes inside a CTE or a subquery cannot be recorded."
    entity = statement.entity_description.get("entity")
    mapper = inspect(entity, raiseerr=False) if entity is not None else None
    if not isinstance(mapper, Mapper) or not issubclass(mapper.class_, Versioned):
        return (
            "Only statements on the model class itself are recorded, such as "
            "`update(Model)`, not those on its table or an alias."
        )
    if requests_returning(statement):
        return "A statement that asks for RETURNING itself cannot be recorded."
    if (
        any(m.local_table is not mapper.local_table for m in _row_mappers(mapper))
        or len(mapper.tables) > 1
    ):
        return (
            f"The rows of {mapper.class_.__name__} or of its subclasses span several "
            "tables (joined-table inheritance)."
        )
    if isinstance(statement, Insert):
        if updates_on_conflict(statement):
            return "An INSERT ... ON CONFLICT DO UPDATE cannot be recorded."
        return None
    if execute_state.is_executemany:
        return "An UPDATE or DELETE with a list of parameter sets cannot be recorded."
    if any(not statement.table.is_derived_from(other) for other in named_froms(statement)):
        return "An UPDATE ... FROM or DELETE ... USING another table cannot be recorded."
    if isinstance(statement, Update):
        return _assignment_refusal(mapper, statement)
    return None


def _assignment_refusal(mapper: Mapper[Any], statement: Update) -> str | None:
    if update_assignments(statement) is None:
        return "An UPDATE with ordered_values() cannot be recorded; use values()."
    try:
        assigned = _assigned_attributes(mapper, statement)
    except UnmappedColumnError:
        return "It sets a column that is not an attribute of the model."
    if VERSION_KEY in assigned:
        return "It sets `version`, which Chrononaut maintains."
    if assigned & set(VersionedColumns.of(mapper).primary_key):
        return "It changes the primary key, by which history finds each row."
    return None


def _assigned_attributes(mapper: Mapper[Any], statement: Update) -> frozenset[str]:
    """The attributes of ``mapper`` the UPDATE sets (SQLAlchemy turns every key given to
    ``values()`` into a column)."""
    assignments = update_assignments(statement) or {}
    return frozenset(mapper.get_property_by_column(column).key for column in assignments)


def _row_mappers(mapper: Mapper[Any]) -> Sequence[Mapper[Any]]:
    """The mappers whose rows a statement on ``mapper`` may write."""
    return list(mapper.self_and_descendants)


def _run(execute_state: ORMExecuteState, recording: _Recording) -> Result[Any]:
    """Run the statement and write its history, by the quickest of three ways that
    records it exactly.

    - An UPDATE or DELETE whose rows are of no object the session holds runs as part
      of the INSERT of its history, which the server builds: one statement.
    - Otherwise, if the server can build the snapshots of the model, the statement
      returns its rows' primary keys (an UPDATE all its values, for the objects to
      refresh) and the server builds their snapshots from the rows in the table.
    - Otherwise (and for a DELETE of rows the session holds, which leaves nothing to
      read, or for an activity table without the time-travel columns), the statement
      returns its rows and Python builds their snapshots.
    """
    session = execute_state.session
    record = FlushRecord.start(session)
    mapper = recording.mapper
    if record.missing_change_info:
        raise ChrononautException(
            f"Strict tracking is enabled, but a statement writing {mapper.class_.__name__} "
            "was executed outside `extra_change_info(...)`. Wrap it in "
            "`extra_change_info(...)` or `rationale(...)`."
        )
    snapshots = _SnapshotBuilder(session, record, mapper, recording)
    table = mapper.local_table
    # Activity tables made before the time-travel columns get their rows from Python.
    in_server = built_in_server(mapper) and has_time_travel_columns(
        session, snapshots.activity_table
    )
    if in_server and recording.operation != INSERT and _synchronizes_nothing(execute_state, mapper):
        written = recording.statement.returning(*table.columns).cte(WRITTEN)
        # Dated once the autoflush ran, whose changes come before.
        history = written_history(
            mapper,
            snapshots.activity_table,
            written,
            recording.operation,
            snapshots.info_of(mapper),
            datetime.now(UTC),
        )
        return execute_state.invoke_statement(statement=history)
    if in_server and recording.operation != DELETE:
        refreshes = recording.operation == UPDATE
        statement = _returning(
            recording, list(table.columns) if refreshes else list(table.primary_key)
        )
        result = execute_state.invoke_statement(statement=statement)
        changed = datetime.now(UTC)
        rows = _returned_rows(result, statement)
        if not rows:
            return result
        if refreshes:
            snapshots.prepare(rows[0]._fields)
            _refresh_loaded(session, mapper, rows, snapshots.values_of)
        keys = snapshots.keys_of(rows)
        history = keyed_history(
            mapper,
            snapshots.activity_table,
            keys,
            recording.operation,
            snapshots.info_of(mapper),
            changed,
        )
        session.connection(bind_arguments={"mapper": mapper}).execute(history)
        return result
    statement = _returning(recording, list(table.columns))
    result = execute_state.invoke_statement(statement=statement)
    # Dated after the statement and the autoflush it ran first, whose changes come before.
    changed = datetime.now(UTC)
    rows = _returned_rows(result, statement)
    if not rows:
        return result
    snapshots.prepare(rows[0]._fields)
    if recording.operation == UPDATE:
        _refresh_loaded(session, mapper, rows, snapshots.values_of)
    activity_rows = [snapshots.activity_row(row) for row in rows]
    write_snapshots(session, {snapshots.activity_table: activity_rows}, changed)
    return result


def _synchronizes_nothing(execute_state: ORMExecuteState, mapper: Mapper[Any]) -> bool:
    """Autoflush as the statement would, then tell whether the session holds no object
    the statement may write, so that it has no objects to synchronize and no result to
    read.

    ``synchronize_session="evaluate"`` fails on criteria Python cannot evaluate, even
    with no object to evaluate them on: such a statement keeps that check.
    """
    session = execute_state.session
    options = execute_state.execution_options
    if options.get("synchronize_session", "auto") == "evaluate":
        return False
    # ``no_autoflush`` switches ``autoflush`` off while it lasts.
    if session.autoflush and options.get("autoflush", True):
        session.flush()
    return not any(
        state.mapper.isa(mapper) or mapper.isa(state.mapper)
        for state in session.identity_map.all_states()
    )


def _returned_rows(result: Result[Any], statement: Insert | Update | Delete) -> Sequence[Row[Any]]:
    if statement.exported_columns:  # rows asked for with returning()
        return result.all()
    rows: Sequence[Row[Any]] | None = getattr(result, "returned_defaults_rows", None)
    return rows or ()


@dataclass
class _RowsOf:
    """What the snapshots of one mapper's rows share, worked out once per statement."""

    columns: VersionedColumns
    #: ``(attribute, position in the returned row)`` of each column attribute.
    positions: list[tuple[str, int]]
    user_info: dict[str, Any]
    extra_info: dict[str, Any]
    #: A transient instance that holds each row's values in turn: the snapshot rules
    #: of :class:`~chrononaut.history.columns.VersionedColumns` take an instance.
    holder: Any


class _SnapshotBuilder:
    """Builds the activity rows of one recorded statement from the rows it returned.

    The change info is gathered, and checked to be storable as JSON, before the
    statement runs: once it has run, only a database error may stop its history from
    being written, and that aborts the transaction.
    """

    def __init__(
        self, session: Session, record: FlushRecord, mapper: Mapper[Any], recording: _Recording
    ) -> None:
        self.operation = recording.operation
        self.assigned = recording.assigned
        self.activity_table: Table = activity_class_for(mapper.class_).__table__
        self._mapper = mapper
        self._table = mapper.local_table
        self._mappers = _row_mappers(mapper)
        discriminator = mapper.polymorphic_on
        self._discriminator = (
            discriminator
            if len(self._mappers) > 1
            and discriminator is not None
            and discriminator.table is self._table
            else None
        )
        encode = json_serializer(session.get_bind(mapper=mapper).dialect)
        self._info: dict[Mapper[Any], tuple[dict[str, Any], dict[str, Any]]] = {}
        for row_mapper in self._mappers:
            model = row_mapper.class_
            user_info = record.user_info_for(model)
            # A statement writes no loaded object, so no info appended to one applies.
            extra_info = record.extra_info_for(model, instance_state(new_instance(row_mapper)))
            encode(user_info)
            encode(extra_info)
            self._info[row_mapper] = (user_info, extra_info)
        self._rows_of: dict[Mapper[Any], _RowsOf] = {}
        self._discriminator_position = 0

    def prepare(self, fields: Sequence[str]) -> None:
        """Find where each column is in the returned rows, whose names are ``fields``."""
        position = {name: index for index, name in enumerate(fields)}

        def position_of(column: Any) -> int:
            return position[column.key] if column.key in position else position[column.name]

        if self._discriminator is not None:
            self._discriminator_position = position_of(self._discriminator)
        for row_mapper in self._mappers:
            user_info, extra_info = self.info_of(row_mapper)
            self._rows_of[row_mapper] = _RowsOf(
                columns=VersionedColumns.of(row_mapper),
                positions=[
                    (prop.key, position_of(prop.columns[0]))
                    for prop in row_mapper.column_attrs
                    if getattr(prop.columns[0], "table", None) is self._table
                ],
                user_info=user_info,
                extra_info=extra_info,
                holder=new_instance(row_mapper),
            )

    def info_of(self, row_mapper: Mapper[Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        """The user info and the extra info of the snapshots of ``row_mapper``'s rows;
        an UPDATE's extra info lists the hidden attributes it sets."""
        user_info, extra_info = self._info[row_mapper]
        hidden = self._hidden_assigned(VersionedColumns.of(row_mapper))
        if hidden:
            extra_info = {**extra_info, HIDDEN_COLUMNS_CHANGED_KEY: hidden}
        return user_info, extra_info

    def keys_of(self, rows: Sequence[Row[Any]]) -> list[tuple[Any, ...]]:
        """The primary key values of ``rows``, in the order of the table's key columns."""
        fields = rows[0]._fields
        positions = [
            fields.index(column.key if column.key in fields else column.name)
            for column in self._table.primary_key
        ]
        return [tuple(row[position] for position in positions) for row in rows]

    def values_of(self, row: Row[Any]) -> dict[str, Any]:
        """The values of ``row`` by attribute name."""
        return {key: row[position] for key, position in self._rows_of_row(row).positions}

    def _rows_of_row(self, row: Row[Any]) -> _RowsOf:
        if self._discriminator is None:
            return self._rows_of[self._mapper]
        identity = row[self._discriminator_position]
        row_mapper = self._mapper.polymorphic_map.get(identity, self._mapper)
        return self._rows_of[row_mapper if row_mapper in self._rows_of else self._mapper]

    def activity_row(self, row: Row[Any]) -> dict[str, Any]:
        rows_of = self._rows_of_row(row)
        columns = rows_of.columns
        # Each row sets every attribute the snapshot reads, over the previous row's.
        values = instance_state(rows_of.holder).dict
        values.update([(key, row[position]) for key, position in rows_of.positions])
        data = columns.data_of(rows_of.holder)
        if self.operation == DELETE:
            data[VERSION_KEY] = (data[VERSION_KEY] or 0) + 1
        elif data[VERSION_KEY] is None:
            # A version column without a default: NULL counts as version 0.
            data[VERSION_KEY] = 0
        extra_info = rows_of.extra_info
        if self.operation == INSERT:
            # The hidden columns a new row gives a value.
            hidden = [key for key in columns.hidden if values[key] is not None]
            if hidden:
                extra_info = {**extra_info, HIDDEN_COLUMNS_CHANGED_KEY: hidden}
        return {
            "table_name": columns.table_name,
            "version": data[VERSION_KEY],
            "key": columns.key_of(rows_of.holder),
            "data": data,
            "user_info": rows_of.user_info,
            "extra_info": extra_info,
            "operation": self.operation,
        }

    def _hidden_assigned(self, columns: VersionedColumns) -> list[str]:
        """The hidden attributes an UPDATE sets; a DELETE lists none, as a flush does."""
        if self.operation == UPDATE:
            return [key for key in columns.hidden if key in self.assigned]
        return []


def _refresh_loaded(
    session: Session,
    mapper: Mapper[Any],
    rows: Sequence[Row[Any]],
    values_of: Callable[[Row[Any]], dict[str, Any]],
) -> None:
    """Give the loaded objects of the rows an UPDATE wrote the values it returned.

    ``synchronize_session`` sets, at best, the attributes the statement assigns, and
    expires ``version``; with ``synchronize_session=False`` an object would keep its
    old version and values, and its next flush would record them. Attributes with
    changes of their own are left to that flush.
    """
    loaded = [
        state
        for state in session.identity_map.all_states()
        if state.mapper.isa(mapper) and state.identity is not None
    ]
    if not loaded:
        return
    columns = VersionedColumns.of(mapper)
    by_identity: dict[Any, dict[str, Any]] = {}
    for row in rows:
        values = values_of(row)
        by_identity[tuple(values[key] for key in columns.primary_key)] = values
    for state in loaded:
        returned = by_identity.get(columns.stored_identity(state.identity))
        if returned is None:
            continue
        pending = changed_since_load(state)
        obj = state.obj()
        for key, value in returned.items():
            if key not in pending:
                set_committed_value(obj, key, value)
