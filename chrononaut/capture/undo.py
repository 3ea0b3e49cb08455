"""Undo of one object: setting it back to a recorded state, or bringing it back after
its delete. :mod:`chrononaut.capture.undo_transaction` undoes a whole transaction with
the same pieces.

History is never rewritten. Each undo is an ordinary change of the session, recorded
as a new version like any other, with a note in its ``extra_info`` of what it undid;
reading the history of an undone change shows the change and then its undo.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy import Column, inspect
from sqlalchemy.orm import Mapper, object_session
from sqlalchemy.orm.exc import UnmappedColumnError

from chrononaut._compat import instance_state, new_instance
from chrononaut.capture.change_info import APPENDED_CHANGE_INFO_KEY, transaction_within
from chrononaut.capture.session import read_history_on_primary
from chrononaut.exceptions import ChrononautException, InvalidArgumentError
from chrononaut.history.activity import (
    DELETE,
    VERSION_KEY,
    activity_class_for,
    require_time_travel_columns,
)
from chrononaut.history.columns import VersionedColumns
from chrononaut.history.lives import operation_of
from chrononaut.history.reads import HistoryStatements, object_history
from chrononaut.history.serialization import deserialize_value
from chrononaut.history.snapshot import HistorySnapshot

if TYPE_CHECKING:
    from sqlalchemy import Table
    from sqlalchemy.orm import InstanceState, Session

#: The ``extra_info`` keys an undo records: the version an object was set back to,
#: that an object was brought back after its delete, and the transaction undone.
REVERTED_TO_KEY = "reverted_to"
UNDELETED_KEY = "undeleted"
REVERTED_TRANSACTION_KEY = "reverted_transaction"
_UNDO_KEYS = (REVERTED_TO_KEY, UNDELETED_KEY, REVERTED_TRANSACTION_KEY)
#: ``Session.info`` key: ``(transaction, state)`` of each undo noted and not committed.
_UNDO_NOTES_KEY = "chrononaut.undo_notes"

_Model = TypeVar("_Model", bound="HistoryUndo")


class HistoryUndo:
    """The undo methods of a versioned object, mixed into :class:`~chrononaut.Versioned`.

    The methods change the session only; the caller flushes or commits, and the changes
    are recorded then, with the change info of the blocks open at that time, as any
    change is (:func:`~chrononaut.rationale` works around the commit as usual).
    """

    def revert_to(self, snapshot_or_version: HistorySnapshot | int) -> None:
        """Set this object's tracked attributes back to the values of one of its
        recorded states.

        The next flush records the change as a new version (the version number goes
        on up), with ``extra_info["reverted_to"]`` set to the version reverted to, next
        to the change info of the open blocks and of
        :func:`~chrononaut.append_change_info`. Like appended info, the note stays with
        the object until a commit records it; a rollback takes it back with the change.
        When every tracked value already equals the recorded one, nothing is changed
        and nothing will be recorded.

        Hidden attributes keep their current values, as theirs were never stored;
        untracked attributes keep theirs too, as they are not part of history. The
        primary key is never changed, and attributes the state does not hold (columns
        added to the model after it was recorded) keep their values.

        :param snapshot_or_version: a snapshot from this object's
            :meth:`~chrononaut.history.reads.HistoryReads.versions`, of any of its
            rows, including a delete row (whose state is the one just before that
            delete) and rows of an earlier object that had the same key; or a version
            number of the object as it is now, counted from its creation (version 0),
            an undelete carrying on its numbers.
        :raises InvalidArgumentError: the argument is neither a snapshot nor an
            integer, the snapshot is not one of this object's rows, or the object has
            no such version.

        .. versionadded:: 1.0
        """
        state = instance_state(self)
        session = object_session(self) or _session_of(type(self))
        # Undo reads history to write from it: never from a replica that may lag.
        read_history_on_primary(session)
        # Unflushed changes of the object are replaced, not recorded first.
        with session.no_autoflush:
            snapshot = _snapshot_to_revert_to(session, self, state.mapper, snapshot_or_version)
            changed = set_back(self, snapshot, VersionedColumns.of_object(state.mapper, state))
        if changed:
            note_undo(self, **{REVERTED_TO_KEY: snapshot.chrononaut_version})

    @classmethod
    def undelete(cls: type[_Model], key: Any) -> _Model:
        """Bring back the deleted object of this model with primary key ``key``.

        The object is rebuilt from its last recorded state under its old key, added to
        the model's session (``db.session``) and returned; the next flush inserts it
        and records the insert (operation ``"insert"``) with the version after its
        delete's, so its history carries on, and ``extra_info["undeleted"] = True``.
        Its relationships are loaded from the foreign keys it gets back; an object it
        refers to that is deleted too must be brought back first (or in the same
        flush).

        Hidden and untracked attributes were never stored: they get their column's
        default, or ``None``. A column among them that may not be ``NULL`` and has no
        default makes the call fail, before the session is changed.

        Called on a base class of joined- or single-table inheritance, it brings back
        an object of the subclass that was deleted.

        :param key: the primary key value, or ``{attribute: value}`` for every
            attribute of the primary key (required for a composite key).
        :return: the new instance, pending in the session.
        :raises InvalidArgumentError: the key is not one of this model's, a live row
            has it, or the last recorded change of the key is not a delete (nothing was
            deleted, or it was deleted without history).
        :raises ChrononautException: the activity table lacks the time-travel columns,
            or a column that must have a value cannot get one.

        .. versionadded:: 1.0
        """
        mapper: Mapper[Any] = inspect(cls)
        session = _session_of(cls)
        read_history_on_primary(session)
        activity = activity_class_for(cls).__table__
        require_time_travel_columns(session, activity)
        key_values = _key_values(mapper, key)
        stored_key = _stored_key(mapper, key_values)
        shown = shown_key(stored_key)
        found = _newest_row(session, activity, mapper, stored_key)
        if found is None:
            raise InvalidArgumentError(
                f"No {cls.__name__} with key {shown} was ever recorded: nothing to undelete."
            )
        if session.get(mapper.base_mapper.class_, tuple(key_values.values())) is not None:
            raise InvalidArgumentError(
                f"{cls.__name__} {shown} exists: undelete brings back deleted objects; "
                "use revert_to() to set a live object back to an earlier state."
            )
        newest, model = found
        operation = operation_of(newest, None, live=False)
        if operation != DELETE:
            raise InvalidArgumentError(
                f"The last recorded change of {cls.__name__} {shown} is an {operation}, not "
                "a delete: it was deleted without history (inside suppress_versioning()), "
                "so its delete cannot be undone."
            )
        if not issubclass(model, cls):
            raise InvalidArgumentError(
                f"The deleted object with key {shown} was a {model.__name__}, not a {cls.__name__}."
            )
        restored: _Model = restored_object(newest, newest.chrononaut_version + 1)
        session.add(restored)
        note_undo(restored, **{UNDELETED_KEY: True})
        return restored


def _session_of(model: type[Any]) -> Session:
    session: Session = model.query.session
    return session


def note_undo(obj: object, **info: Any) -> None:
    """Attach ``info`` to ``obj``'s next recorded version, as
    :func:`~chrononaut.append_change_info` does, until the transaction it was noted in
    rolls back (:func:`drop_rolled_back_undo_notes`)."""
    state = instance_state(obj)
    state.info.setdefault(APPENDED_CHANGE_INFO_KEY, {}).update(info)
    session = state.session
    if session is not None:
        transaction = session.get_nested_transaction() or session.get_transaction()
        session.info.setdefault(_UNDO_NOTES_KEY, []).append((transaction, state))


def drop_rolled_back_undo_notes(session: Session, previous_transaction: Any) -> None:
    """``after_soft_rollback``: the undo a rolled back transaction (or savepoint) held
    is gone, and so are its notes; they would otherwise stay on the objects, as
    appended info does, and be recorded with the next change of each."""
    notes = session.info.get(_UNDO_NOTES_KEY)
    if not notes:
        return
    # A failed flush rolls back its own subtransaction, and with it every transaction
    # up to the nearest savepoint, or the outermost one.
    rolled_back = previous_transaction
    while rolled_back.parent is not None and not rolled_back.nested:
        rolled_back = rolled_back.parent
    kept = []
    for transaction, state in notes:
        if transaction_within(transaction, rolled_back):
            _forget_undo_notes(state)
        else:
            kept.append((transaction, state))
    session.info[_UNDO_NOTES_KEY] = kept


def forget_committed_undo_notes(session: Session) -> None:
    """``after_commit``: a commit records every note; the recorder drops them from the
    objects, and here they are forgotten."""
    if session.get_nested_transaction() is None:
        session.info.pop(_UNDO_NOTES_KEY, None)


def _forget_undo_notes(state: InstanceState[Any]) -> None:
    appended = state.info.get(APPENDED_CHANGE_INFO_KEY, {})
    for key in _UNDO_KEYS:
        appended.pop(key, None)
    if not appended:
        state.info.pop(APPENDED_CHANGE_INFO_KEY, None)


def shown_key(key: Mapping[str, Any]) -> str:
    return ", ".join(f"{name}={value!r}" for name, value in key.items())


def _snapshot_to_revert_to(
    session: Session, obj: Any, mapper: Mapper[Any], wanted: Any
) -> HistorySnapshot:
    """Return the row of ``obj``'s history that ``wanted`` names, read with ``obj``'s
    model so that its values type as its columns."""
    if isinstance(wanted, bool) or not isinstance(wanted, (HistorySnapshot, int)):
        raise InvalidArgumentError(
            "revert_to() takes a HistorySnapshot of the object or a version number, "
            f"not {type(wanted).__name__}."
        )
    key = VersionedColumns.of(mapper).key_of(obj)
    history = object_history(session, type(obj), key)
    described = f"{type(obj).__name__} {shown_key(key)}"
    if isinstance(wanted, HistorySnapshot):
        for snapshot in history:
            if _same_row(snapshot, wanted):
                return snapshot
        raise InvalidArgumentError(
            f"The snapshot ({wanted.chrononaut_meta['table_name']}, "
            f"{shown_key(wanted.chrononaut_key)}) is not one of {described}'s: "
            "revert_to() takes a snapshot from its versions()."
        )
    # The object as it is now began with its last version 0 row; an undelete carries
    # the numbers on, so they do not repeat after it.
    for snapshot in reversed(history):
        if snapshot.chrononaut_version == wanted:
            return snapshot
        if snapshot.chrononaut_version == 0:
            break
    raise InvalidArgumentError(f"{described} has no version {wanted}.")


def _same_row(snapshot: HistorySnapshot, wanted: HistorySnapshot) -> bool:
    """Tell whether two snapshots are of one row: a snapshot read from the table is
    known by its row's id, one built by hand by what it holds."""
    if wanted.chrononaut_activity_id is None:
        return snapshot == wanted
    return snapshot.chrononaut_activity_id == wanted.chrononaut_activity_id


def set_back(obj: object, snapshot: HistorySnapshot, columns: VersionedColumns) -> bool:
    """Set ``obj``'s tracked attributes outside the key to the values of ``snapshot``;
    return whether any of them changed."""
    values = snapshot.typed_data()
    changed = False
    for name in columns.tracked:
        if name in columns.primary_key or name not in values:
            continue
        # Only differing values are set: assigning an expired attribute would record
        # a version even for an equal value.
        if getattr(obj, name) != values[name]:
            setattr(obj, name, values[name])
            changed = True
    return changed


def _key_values(mapper: Mapper[Any], key: Any) -> dict[str, Any]:
    """Return ``{attribute: value}`` of the primary key ``key``, in the mapper's order."""
    names = VersionedColumns.of(mapper).primary_key
    model_name = mapper.class_.__name__
    if isinstance(key, Mapping):
        if set(key) != set(names):
            raise InvalidArgumentError(
                f"The key of {model_name} has the attributes {', '.join(names)}; "
                f"got {', '.join(map(str, key)) or 'none'}."
            )
        values = {name: key[name] for name in names}
    elif len(names) > 1:
        raise InvalidArgumentError(
            f"{model_name} has a composite primary key ({', '.join(names)}): give the "
            "key as a dict of these attributes."
        )
    else:
        values = {names[0]: key}
    if any(value is None for value in values.values()):
        raise InvalidArgumentError(f"A key of {model_name} has no None in it.")
    return values


def _stored_key(mapper: Mapper[Any], key_values: dict[str, Any]) -> dict[str, Any]:
    """Return the ``key`` JSON the activity rows of the object with ``key_values`` hold,
    written by the recorder's own rule from an object that holds just the key."""
    probe = new_instance(mapper)
    for name, value in key_values.items():
        setattr(probe, name, value)
    return VersionedColumns.of(mapper).key_of(probe)


def versioned_mappers(registry: Any) -> dict[str, list[Mapper[Any]]]:
    """Return the versioned mappers of a declarative registry by the table name their
    rows are recorded under (single-table inheritance puts several on one)."""
    by_table: dict[str, list[Mapper[Any]]] = {}
    for other in registry.mappers:
        if issubclass(other.class_, HistoryUndo):
            by_table.setdefault(VersionedColumns.of(other).table_name, []).append(other)
    return by_table


def recording_model(mappers: list[Mapper[Any]], data: Mapping[str, Any]) -> type[Any]:
    """Return the class, among those mapped to one table, of the object whose state
    ``data`` is: the stored discriminator tells single-table subclasses apart."""
    top = min(mappers, key=lambda mapper: len(list(mapper.iterate_to_root())))
    discriminator = top.polymorphic_on
    if len(mappers) > 1 and isinstance(discriminator, Column):
        try:
            prop = top.get_property_by_column(discriminator)
        except UnmappedColumnError:
            return top.class_
        identity = deserialize_value(data.get(prop.key), discriminator.type)
        chosen = top.polymorphic_map.get(identity)
        if chosen in mappers:
            return chosen.class_
    return top.class_


def _newest_row(
    session: Session, activity: Table, mapper: Mapper[Any], key: dict[str, Any]
) -> tuple[HistorySnapshot, type[Any]] | None:
    """Return the newest row with ``key`` of ``mapper``'s model and its subclasses,
    as a snapshot of the class that recorded it, and that class."""
    statements = HistoryStatements.for_session(session, activity)
    by_table = versioned_mappers(mapper.registry)
    tables = {VersionedColumns.of(sub).table_name for sub in mapper.self_and_descendants}
    newest: Any = None
    for table_name in sorted(tables):
        row = session.execute(statements.newest, {"table_name": table_name, "key": key}).first()
        if row is not None and (
            newest is None or (row.changed, row.id) > (newest.changed, newest.id)
        ):
            newest = row
    if newest is None:
        return None
    model = recording_model(by_table[newest.table_name], newest.data)
    return HistorySnapshot.from_activity(newest, model), model


def restored_object(snapshot: HistorySnapshot, version: int) -> Any:
    """Return a new, transient object of the snapshot's model with its tracked values
    and ``version``.

    :raises ChrononautException: a column the snapshot does not hold may not be NULL
        and has no default.
    """
    model = snapshot.chrononaut_model
    mapper: Mapper[Any] = inspect(model)
    columns = VersionedColumns.of(mapper)
    values = {
        name: value for name, value in snapshot.typed_data().items() if name in columns.tracked
    }
    missing = [
        prop.key
        for prop in mapper.column_attrs
        if prop.key not in values
        and prop.key != VERSION_KEY
        and any(_needs_a_value(column) for column in prop.columns)
    ]
    if missing:
        raise ChrononautException(
            f"{mapper.class_.__name__} {shown_key(snapshot.chrononaut_key)} cannot be "
            f"brought back: {', '.join(missing)} may not be NULL, has no default, and its "
            "value was never recorded (hidden, untracked or added later). Give the "
            "column a default, or rebuild the object from the snapshot's reify()."
        )
    restored = new_instance(mapper)
    for name, value in values.items():
        setattr(restored, name, value)
    restored.version = version
    return restored


def _needs_a_value(column: Any) -> bool:
    return (
        isinstance(column, Column)
        and not column.nullable
        and column.default is None
        and column.server_default is None
    )
