"""Undoing one database transaction: every change it recorded, across models.

Each activity row records the id of the transaction that wrote it, so the changes of
one commit can be found again and undone together, as new changes of the session.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import BigInteger, Text, and_, cast, func, select, true, tuple_
from sqlalchemy.orm import Mapper, RelationshipDirection, RelationshipProperty

from chrononaut._compat import instance_state
from chrononaut.capture.session import read_history_on_primary
from chrononaut.capture.undo import (
    REVERTED_TO_KEY,
    REVERTED_TRANSACTION_KEY,
    UNDELETED_KEY,
    note_undo,
    recording_model,
    restored_object,
    set_back,
    shown_key,
    versioned_mappers,
)
from chrononaut.exceptions import ChrononautException, InvalidArgumentError
from chrononaut.history.activity import (
    DELETE,
    INSERT,
    activity_class_for,
    require_time_travel_columns,
)
from chrononaut.history.columns import VersionedColumns
from chrononaut.history.lives import row_before
from chrononaut.history.serialization import deserialize_value
from chrononaut.history.snapshot import HistorySnapshot

if TYPE_CHECKING:
    from sqlalchemy import Table
    from sqlalchemy.orm import Session


@dataclass(frozen=True)
class RevertedTransaction:
    """What :meth:`~chrononaut.VersionedSQLAlchemy.revert_transaction` did, flushed
    and waiting for the caller's commit.

    .. versionadded:: 1.0
    """

    #: The transaction undone.
    transaction_id: int
    #: Objects it changed, set back to their state before it (those whose tracked
    #: values differed from it have a new version; a change of hidden values only
    #: cannot be undone).
    reverted: tuple[Any, ...]
    #: Objects it deleted, brought back (new instances in the session).
    undeleted: tuple[Any, ...]
    #: Objects it inserted, now deleted.
    deleted: tuple[Any, ...]


@dataclass
class _ObjectRows:
    """The rows one transaction recorded for one object: its first and its last."""

    first: Any
    last: Any
    #: The versioned mappers whose rows are recorded under the object's table name.
    mappers: list[Mapper[Any]]


def revert_transaction(
    session: Session, base: type[Any], transaction_id: int
) -> RevertedTransaction:
    """Undo every change recorded by the transaction ``transaction_id``; see
    :meth:`chrononaut.VersionedSQLAlchemy.revert_transaction`."""
    if not isinstance(transaction_id, int) or isinstance(transaction_id, bool):
        raise InvalidArgumentError(
            f"revert_transaction() takes a transaction id (an integer, such as a "
            f"snapshot's chrononaut_transaction_id), not {type(transaction_id).__name__}."
        )
    # The plan is read from history and checked against later changes: on the primary.
    read_history_on_primary(session)
    activity = activity_class_for(base).__table__
    require_time_travel_columns(session, activity)
    plan = _plan(session, activity, base, transaction_id)
    # A flush that fails (a unique value taken since, strict tracking without a
    # reason) rolls the savepoint back: the session is left as it was, and the
    # rollback takes the notes back.
    with session.begin_nested():
        _apply(session, plan)
    return RevertedTransaction(
        transaction_id,
        tuple(obj for obj, _ in plan.reverted),
        tuple(plan.undeleted),
        tuple(plan.deleted),
    )


@dataclass
class _Plan:
    """What undoing a transaction will do, worked out before the session is changed."""

    transaction_id: int
    #: Each object to set back, with its state before the transaction.
    reverted: list[tuple[Any, HistorySnapshot]] = field(default_factory=list)
    #: New, transient objects that take the place of those the transaction deleted.
    undeleted: list[Any] = field(default_factory=list)
    deleted: list[Any] = field(default_factory=list)


def _plan(session: Session, activity: Table, base: type[Any], transaction_id: int) -> _Plan:
    """Work out the undo of the transaction from its rows and the rows before them.

    :raises ChrononautException: something stands in the way of undoing it.
    """
    objects = _rows_by_object(session, activity, base, transaction_id)
    _refuse_later_changes(session, activity, transaction_id, objects)
    before = _rows_before(session, activity, [rows.first.id for rows in objects.values()])
    live_objects = _live_objects(
        session, [rows for rows in objects.values() if rows.last.operation != DELETE]
    )
    plan = _Plan(transaction_id)
    for rows in objects.values():
        existed, exists = rows.first.operation != INSERT, rows.last.operation != DELETE
        if not existed:
            if exists:
                plan.deleted.append(_live_object(live_objects, rows, transaction_id))
            continue
        previous = before.get(rows.first.id)
        if previous is None:
            raise ChrononautException(
                f"Transaction {transaction_id} changed {rows.first.table_name} "
                f"{shown_key(rows.first.key)}, whose earlier state was never recorded: "
                "it cannot be set back."
            )
        if exists:
            live = _live_object(live_objects, rows, transaction_id)
            plan.reverted.append((live, HistorySnapshot.from_activity(previous, type(live))))
        else:
            state = HistorySnapshot.from_activity(
                previous, recording_model(rows.mappers, previous.data)
            )
            plan.undeleted.append(restored_object(state, rows.last.version + 1))
    _refuse_detaching_others(
        plan.deleted, {id(obj) for obj, _ in plan.reverted} | {id(obj) for obj in plan.deleted}
    )
    return plan


def _apply(session: Session, plan: _Plan) -> None:
    noted = {REVERTED_TRANSACTION_KEY: plan.transaction_id}
    for obj, previous_state in plan.reverted:
        columns = VersionedColumns.of_object(instance_state(obj).mapper, instance_state(obj))
        if set_back(obj, previous_state, columns):
            note_undo(obj, **noted, **{REVERTED_TO_KEY: previous_state.chrononaut_version})
    session.add_all(plan.undeleted)
    for obj in plan.undeleted:
        note_undo(obj, **noted, **{UNDELETED_KEY: True})
    # Set back and brought back first, so that rows referring to an object about to be
    # deleted refer to another by the time it is: a delete sets the foreign keys of
    # the objects in its collections to NULL, so those are read again after the flush.
    session.flush()
    for obj in plan.deleted:
        note_undo(obj, **noted)
        session.expire(obj, [relationship.key for relationship in _collections_of(obj)])
        session.delete(obj)
    session.flush()


def _rows_by_object(
    session: Session, activity: Table, base: type[Any], transaction_id: int
) -> dict[tuple[str, str], _ObjectRows]:
    """Return the rows of the transaction by object, in the order it first changed each.

    :raises InvalidArgumentError: it recorded nothing, or it is the session's own.
    :raises ChrononautException: it changed a table no versioned model maps.
    """
    c = activity.c
    rows = session.execute(
        select(activity).where(c.transaction_id == transaction_id).order_by(c.changed, c.id)
    ).all()
    if not rows:
        raise InvalidArgumentError(f"No change was recorded by transaction {transaction_id}.")
    # xid8 has no cast to bigint; its text form is the 64-bit number.
    own = session.scalar(
        select(cast(cast(func.pg_current_xact_id_if_assigned(), Text), BigInteger))
    )
    if own == transaction_id:
        raise InvalidArgumentError(
            f"Transaction {transaction_id} is the session's own, still open: commit it "
            "before undoing it, or roll it back."
        )
    by_table = versioned_mappers(base.registry)
    objects: dict[tuple[str, str], _ObjectRows] = {}
    for row in rows:
        if row.table_name not in by_table:
            raise ChrononautException(
                f"Transaction {transaction_id} changed the table {row.table_name}, which "
                "no versioned model of this extension maps: it cannot be undone here."
            )
        identity = (row.table_name, json.dumps(row.key, sort_keys=True))
        if identity in objects:
            objects[identity].last = row
        else:
            objects[identity] = _ObjectRows(row, row, by_table[row.table_name])
    return objects


def _refuse_later_changes(
    session: Session, activity: Table, transaction_id: int, objects: dict[Any, _ObjectRows]
) -> None:
    """:raises ChrononautException: another transaction recorded a change of one of
    the objects after this one."""
    undone, later = activity.alias("undone"), activity.alias("later")
    statement = (
        select(later.c.table_name, later.c.key, later.c.version, later.c.transaction_id)
        .select_from(
            undone.join(
                later,
                and_(
                    later.c.table_name == undone.c.table_name,
                    later.c.key == undone.c.key,
                    tuple_(later.c.changed, later.c.id) > tuple_(undone.c.changed, undone.c.id),
                ),
            )
        )
        .where(
            undone.c.id.in_([rows.last.id for rows in objects.values()]),
            later.c.transaction_id.is_distinct_from(transaction_id),
        )
        .order_by(later.c.changed, later.c.id)
        .limit(1)
    )
    conflict = session.execute(statement).first()
    if conflict is not None:
        raise ChrononautException(
            f"Transaction {transaction_id} cannot be undone: {conflict.table_name} "
            f"{shown_key(conflict.key)} was changed after it (version {conflict.version}, "
            f"by transaction {conflict.transaction_id}). Undo the later change first, or "
            "set the object back yourself with revert_to()."
        )


def _rows_before(session: Session, activity: Table, row_ids: list[int]) -> dict[int, Any]:
    """Return, for each activity row id, the row of the same object recorded just
    before it, when there is one."""
    undone, earlier = activity.alias("undone"), activity.alias("earlier")
    previous = row_before(select(earlier), earlier, undone).lateral("previous")
    statement = (
        select(undone.c.id.label("undone_id"), previous)
        .select_from(undone.join(previous, true()))
        .where(undone.c.id.in_(row_ids))
    )
    return {row.undone_id: row for row in session.execute(statement)}


#: Objects loaded by one SELECT; PostgreSQL takes far more, but plans long lists slowly.
_OBJECTS_PER_SELECT = 1000


def _identity(base_mapper: Mapper[Any], key: dict[str, Any]) -> tuple[Any, ...]:
    """Return the primary key values of the object with the stored ``key``."""
    names = VersionedColumns.of(base_mapper).primary_key
    return tuple(
        deserialize_value(key.get(name), column.type)
        for name, column in zip(names, base_mapper.primary_key, strict=True)
    )


def _live_objects(
    session: Session, objects: list[_ObjectRows]
) -> dict[tuple[Mapper[Any], tuple[Any, ...]], Any]:
    """Load the live objects of ``objects`` with one SELECT per model (and 1,000
    objects), rather than one for each; return them by base mapper and identity."""
    identities: dict[Mapper[Any], list[tuple[Any, ...]]] = {}
    for rows in objects:
        base_mapper = rows.mappers[0].base_mapper
        identities.setdefault(base_mapper, []).append(_identity(base_mapper, rows.last.key))
    loaded: dict[tuple[Mapper[Any], tuple[Any, ...]], Any] = {}
    for base_mapper, wanted in identities.items():
        key_columns = tuple_(*base_mapper.primary_key)
        for first in range(0, len(wanted), _OBJECTS_PER_SELECT):
            chunk = wanted[first : first + _OBJECTS_PER_SELECT]
            found = session.scalars(select(base_mapper).where(key_columns.in_(chunk)))
            for obj in found:
                identity = tuple(base_mapper.primary_key_from_instance(obj))
                loaded[base_mapper, identity] = obj
    return loaded


def _live_object(
    live_objects: dict[tuple[Mapper[Any], tuple[Any, ...]], Any],
    rows: _ObjectRows,
    transaction_id: int,
) -> Any:
    """Return the live object the rows are of.

    :raises ChrononautException: it has no live row, though no change after the
        transaction was recorded: it was deleted without history.
    """
    base_mapper = rows.mappers[0].base_mapper
    live = live_objects.get((base_mapper, _identity(base_mapper, rows.last.key)))
    if live is None:
        raise ChrononautException(
            f"{rows.last.table_name} {shown_key(rows.last.key)}, which transaction "
            f"{transaction_id} changed, no longer exists though no later change was "
            "recorded: it was deleted without history, and cannot be set back."
        )
    return live


def _refuse_detaching_others(deleted: list[Any], undone: set[int]) -> None:
    """:raises ChrononautException: an object to delete has related objects that refer
    to it and are not undone with it: they were attached to it after the transaction,
    and deleting it would delete them too or change their foreign keys."""
    for obj in deleted:
        for relationship in _collections_of(obj):
            related = getattr(obj, relationship.key)
            for other in related if relationship.uselist else [related]:
                if other is not None and id(other) not in undone:
                    raise ChrononautException(
                        f"{type(obj).__name__} {shown_key(_key_of(obj))} was inserted by the "
                        f"transaction, and {type(other).__name__} "
                        f"{shown_key(_key_of(other))} refers to it through "
                        f"{relationship.key!r} since: deleting it would change that object "
                        "too. Detach it first."
                    )


def _key_of(obj: object) -> dict[str, Any]:
    return VersionedColumns.of(instance_state(obj).mapper).key_of(obj)


def _collections_of(obj: object) -> list[RelationshipProperty[Any]]:
    """The one-to-many relationships of ``obj``: those whose objects refer to it."""
    return [
        relationship
        for relationship in instance_state(obj).mapper.relationships
        if relationship.direction is RelationshipDirection.ONETOMANY
    ]
