"""The write guard: every write that would bypass history, or change it, is decided here.

History is only complete if every write to a versioned table goes through the unit of
work, which records it, and history is only trustworthy if its rows never change. This
module refuses everything else (statements that write a versioned table and cannot be
recorded by :mod:`chrononaut.capture.bulk`, the ``bulk_*`` session methods, and updates
or deletes of activity rows) unless the application opted out on purpose with
:func:`suppress_versioning`.

Statements are read, not their SQL: every INSERT, UPDATE and DELETE in a statement
(data-modifying CTEs and upserts included) is found by walking it, and its target is
recognised by schema and name, so that a table built with ``sqlalchemy.table()``,
reflected into other metadata or aliased is recognised as well. SQL text is not read.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Generic, Literal, NoReturn, TypeVar

from flask import g, has_app_context
from sqlalchemy import Alias, Delete, Insert, Join, MetaData, Table, TableClause, Update
from sqlalchemy.orm import Mapper, ORMExecuteState

from chrononaut._compat import statement_parts, statement_shape, updates_on_conflict
from chrononaut.exceptions import ChrononautException, ProtectedHistoryError, UnrecordedWriteError
from chrononaut.history.activity import is_history_table
from chrononaut.history.columns import is_versioned_table

_Found = TypeVar("_Found")

WriteKind = Literal["insert", "update", "delete"]
Role = Literal["versioned", "history"]
#: What a write does, how it was written, and the table it writes.
Write = tuple[WriteKind, str, TableClause]

_SUPPRESS_KEY = "_chrononaut_suppress_versioning"
_ALLOW_DELETE_KEY = "_chrononaut_allow_deleting_history"
#: ``MetaData.info`` key: ``{table name: {schema: role}}`` of its guarded tables.
_GUARDED_NAMES_KEY = "chrononaut.guarded_names"
#: ``Session.info`` key: the metadata (one per bind key) whose guarded tables apply.
METADATAS_KEY = "chrononaut.metadatas"


@contextmanager
def suppress_versioning(allow_deleting_history: bool = False) -> Iterator[None]:
    """Write no history for the changes flushed or executed inside the block.

    Versions are neither bumped nor recorded, so the next recorded change continues
    from the last recorded version. Statements that write versioned tables run as
    written, and those and the ``bulk_*`` session methods that are refused otherwise
    run too. Rows are still locked and checked against concurrent changes.

    :param allow_deleting_history: also allow changing and deleting activity rows and
        snapshots; the commit that changes them must happen inside the block.
    :raises ChrononautException: there is no Flask application context.
    """
    if not has_app_context():
        raise ChrononautException("`suppress_versioning` needs a Flask application context.")
    outer = {key: g.get(key) for key in (_SUPPRESS_KEY, _ALLOW_DELETE_KEY)}
    setattr(g, _SUPPRESS_KEY, True)
    setattr(g, _ALLOW_DELETE_KEY, allow_deleting_history)
    try:
        yield
    finally:
        for key, value in outer.items():
            if value is None:
                g.pop(key, None)
            else:
                setattr(g, key, value)


def versioning_suppressed() -> bool:
    """Tell whether a :func:`suppress_versioning` block is open."""
    return has_app_context() and bool(g.get(_SUPPRESS_KEY))


def guard_table(table: Table, role: Role) -> None:
    """Note in ``table``'s metadata that statements naming it, in any form, are guarded.

    :param role: ``"versioned"`` for the table of a versioned model, ``"history"`` for
        an activity table.
    """
    names = table.metadata.info.setdefault(_GUARDED_NAMES_KEY, {})
    names.setdefault(table.name, {})[table.schema] = role


def ensure_history_writable(kind: WriteKind) -> None:
    """Refuse to change or delete history outside
    ``suppress_versioning(allow_deleting_history=True)``; adding to it is always allowed.

    :param kind: what the write does to the activity rows.
    :raises ProtectedHistoryError: history would change outside such a block.
    """
    if kind == "insert" or (has_app_context() and g.get(_ALLOW_DELETE_KEY)):
        return
    done, do = ("deleted", "Delete") if kind == "delete" else ("changed", "Change")
    raise ProtectedHistoryError(
        f"History records cannot be {done}. {do} them inside "
        "`suppress_versioning(allow_deleting_history=True)`, committing in the block."
    )


def refuse_unrecorded_write(table: Any, kind: WriteKind, action: str) -> None:
    """Refuse a write to the mapped ``table`` that bypasses the unit of work.

    :param table: the table written to, as mapped.
    :param kind: what the write does to the table's rows.
    :param action: how the write was made, for the error message.
    :raises UnrecordedWriteError: the table is versioned and versioning is on.
    :raises ProtectedHistoryError: the table holds history and would lose or change rows.
    """
    _refuse(_marked_role(table), getattr(table, "name", ""), kind, action)


def _refuse(role: Role | None, name: str, kind: WriteKind, action: str) -> None:
    """The one rule: what a write of ``kind`` to a table of ``role`` may do."""
    if role == "history":
        ensure_history_writable(kind)
    elif role == "versioned" and not versioning_suppressed():
        refuse_versioned_write(name, action)


def refuse_versioned_write(name: str, action: str, reason: str = "") -> NoReturn:
    """Refuse a write to the versioned table ``name`` that history cannot record.

    :param action: how the write was made, for the error message.
    :param reason: why it cannot be recorded, a sentence of its own, if there is more
        to say than that it bypasses the unit of work.
    :raises UnrecordedWriteError: always.
    """
    raise UnrecordedWriteError(
        f"{action} on the versioned table {name!r} would not be recorded in its "
        f"history.{' ' + reason if reason else ''} Change the objects through the "
        "session (load, modify, commit), which records each change, or run it inside "
        "`chrononaut.unsafe.suppress_versioning()` to skip history on purpose."
    )


def _marked_role(table: Any) -> Role | None:
    if is_history_table(table):
        return "history"
    if is_versioned_table(table):
        return "versioned"
    return None


def unrecorded_writes(execute_state: ORMExecuteState) -> list[Write]:
    """Check the writes of a statement executed through a session.

    Writes that would change history are refused here; writes to versioned tables,
    wherever in the statement they are, are returned unless versioning is suppressed:
    the caller records the statement or refuses it with :func:`refuse_versioned_write`.

    :raises ProtectedHistoryError: the statement would change or delete history.
    """
    if execute_state.is_relationship_load or execute_state.is_column_load:
        return []  # the ORM's own SELECTs of related objects and expired attributes
    writes = _writes_of(execute_state.statement)
    if not writes:
        return []
    session = execute_state.session
    default_schema: list[str | None] = []
    unrecorded: list[Write] = []
    for write in writes:
        kind, _, table = write
        role = _marked_role(table) or _role_by_name(session, table, default_schema)
        if role == "history":
            ensure_history_writable(kind)
        elif role == "versioned" and not versioning_suppressed():
            unrecorded.append(write)
    return unrecorded


class ShapeMemo(Generic[_Found]):
    """What ``walk`` finds in a statement, kept by the statement's structure, so that
    the statements an application runs again and again are walked once. At most
    2,000 structures are kept; then the memo starts afresh."""

    _MAX_SHAPES = 2000

    def __init__(self, walk: Callable[[Any], _Found]) -> None:
        self._walk = walk
        self._found: dict[Any, _Found] = {}

    def __call__(self, statement: Any) -> _Found:
        shape = statement_shape(statement)
        if shape is None:
            return self._walk(statement)
        found = self._found.get(shape)
        if found is None:
            if len(self._found) >= self._MAX_SHAPES:
                self._found.clear()
            found = self._found[shape] = self._walk(statement)
        return found


_writes_of = ShapeMemo(lambda statement: tuple(_writes(statement)))


def _writes(statement: Any) -> Iterator[Write]:
    """Yield what each INSERT, UPDATE and DELETE in ``statement`` does, how it was
    written, and each table it writes."""
    for element in statement_parts(statement):
        if isinstance(element, Insert):
            if updates_on_conflict(element):
                # Against stored rows an upsert is an UPDATE.
                kind: WriteKind = "update"
                action = "INSERT ... ON CONFLICT DO UPDATE statement"
            else:
                kind, action = "insert", "INSERT statement"
        elif isinstance(element, Update):
            kind, action = "update", "UPDATE statement"
        elif isinstance(element, Delete):
            kind, action = "delete", "DELETE statement"
        else:
            continue
        for table in _tables_of(element.table):
            yield kind, action, table


def _tables_of(target: Any) -> Iterator[TableClause]:
    """Yield the tables a DML target writes: itself, or those under an alias or a join
    (the ORM's target for a joined-inheritance model)."""
    if isinstance(target, Alias):
        yield from _tables_of(target.element)
    elif isinstance(target, Join):
        yield from _tables_of(target.left)
        yield from _tables_of(target.right)
    elif isinstance(target, TableClause):
        yield target


def _role_by_name(
    session: Any, table: TableClause, default_schema: list[str | None]
) -> Role | None:
    """The role of the guarded table that ``table`` names, in the session's metadata.

    A schema of ``None`` means the connection's default schema, so ``item`` and
    ``public.item`` are one table (on a default search path).
    """
    metadatas: dict[Any, MetaData] = session.info.get(METADATAS_KEY, {})
    for metadata in metadatas.values():
        by_schema: dict[str | None, Role] | None = metadata.info.get(_GUARDED_NAMES_KEY, {}).get(
            table.name
        )
        if not by_schema:
            continue
        if table.schema in by_schema:
            return by_schema[table.schema]
        if not default_schema:
            default_schema.append(session.get_bind().dialect.default_schema_name or "public")
        wanted = table.schema or default_schema[0]
        for schema, role in by_schema.items():
            if (schema or default_schema[0]) == wanted:
                return role
    return None


def refuse_history_delete(mapper: Mapper[Any], connection: Any, target: Any) -> None:
    """``before_delete`` listener of activity models."""
    ensure_history_writable("delete")


def refuse_history_update(mapper: Mapper[Any], connection: Any, target: Any) -> None:
    """``before_update`` listener of activity models."""
    ensure_history_writable("update")
