"""Record locking: a flush may only change a versioned row that nobody else changed
since the session read it.

Before the first UPDATE or DELETE of a flush, one ``SELECT ... FOR UPDATE`` per table
locks the rows the flush is about to change and reads their versions. A row locked by
another transaction is returned once that transaction ends, as it then is; if its
version is no longer the one the session read, or the row is gone, the flush fails
with :class:`~chrononaut.exceptions.ConcurrentChangeError`. The rows stay locked until
the transaction ends, so the flush's own UPDATEs and DELETEs, and the versions they
write, cannot be overtaken.

SQLAlchemy's ``version_id_col`` checks the same thing, but only by sending each UPDATE
on its own instead of as one batch; one statement per table and flush is cheaper.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import BindParameter, ColumnElement, Select, any_, bindparam, cast, select, tuple_
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import InstanceState, Session

from chrononaut._compat import changed_since_load, instance_state
from chrononaut.capture.changes import changes_a_column
from chrononaut.capture.versioned import Versioned
from chrononaut.exceptions import ConcurrentChangeError
from chrononaut.history.activity import VERSION_KEY
from chrononaut.history.columns import VersionedColumns

_LOCK_STATEMENT_KEY = "chrononaut.lock_statement"

#: States whose rows a flush changes, by the ``version`` column that guards the rows.
RowsToLock = dict[Any, list[InstanceState[Any]]]


def rows_to_lock(session: Session) -> RowsToLock:
    """Return the versioned objects the coming flush deletes or changes a column of.

    Objects whose only change is to a collection are left out, as their rows are not
    written. Rows that only the flush itself decides to change (a foreign key set from
    the other side of a relationship, an orphan deleted by a cascade) are locked one by
    one later.
    """
    rows: RowsToLock = {}
    deleted = [instance_state(obj) for obj in session.deleted if isinstance(obj, Versioned)]
    changed = [
        state
        for state in (instance_state(obj) for obj in session.dirty if isinstance(obj, Versioned))
        if changes_a_column(state)
    ]
    for state in deleted + changed:
        rows.setdefault(state.mapper.columns[VERSION_KEY], []).append(state)
    return rows


def version_read(state: InstanceState[Any]) -> Any:
    """Return the version ``state``'s changes are based on, loading it if it expired.

    That is the version the session read, unless a version was set on the object since:
    ``Session.merge()`` copies the version of the detached object it merges, which is
    the version that object's changes were made on. (Chrononaut bumps versions only
    after the rows are locked.)
    """
    if VERSION_KEY not in changed_since_load(state) and VERSION_KEY in state.dict:
        return state.dict[VERSION_KEY]
    history = state.attrs[VERSION_KEY].load_history()
    return (history.added or history.deleted or history.unchanged or (None,))[0]


def _lock_statement(version_column: Any, key_columns: Sequence[Any]) -> Select[Any]:
    """Return the (cached) ``SELECT ... FOR UPDATE`` of the rows guarded by
    ``version_column``, whose primary keys it takes as the ``keys`` parameter (a list of
    keys, or of key tuples for a composite key)."""
    # Kept on the table that holds the version column, which every class of an
    # inheritance hierarchy shares.
    info = version_column.table.info
    statement: Select[Any] | None = info.get(_LOCK_STATEMENT_KEY)
    if statement is None:
        key_in: ColumnElement[bool]
        if len(key_columns) == 1:
            # One array parameter rather than an IN list of one parameter per row: the
            # statement's text is then the same for any number of rows, so psycopg 3
            # prepares it and the server can reuse its plan, where a list of 100
            # parameters was parsed and planned anew by every flush. The cast makes the
            # array the key's type whatever type the driver sends the values as.
            key_array = ARRAY(key_columns[0].type)
            key_in = key_columns[0] == any_(cast(bindparam("keys", type_=key_array), key_array))
        else:
            composite: BindParameter[Any] = bindparam("keys", expanding=True)
            key_in = tuple_(*key_columns).in_(composite)
        statement = (
            select(version_column, *key_columns)
            .where(key_in)
            # One order for every transaction, so that two flushes cannot deadlock here.
            .order_by(*key_columns)
            .with_for_update()
        )
        info[_LOCK_STATEMENT_KEY] = statement
    return statement


def lock_rows(connection: Any, version_column: Any, states: Sequence[InstanceState[Any]]) -> None:
    """Lock the rows of ``states``, and check that each still has the version the
    session read.

    :param connection: the flush's connection.
    :param version_column: the ``version`` column of the table that holds it.
    :param states: persistent objects of models whose ``version`` is that column.
    :raises ConcurrentChangeError: another transaction changed or deleted a row.
    """
    key_columns = states[0].mapper.primary_key
    identities = [state.identity for state in states if state.identity]
    keys: list[Any] = [key[0] for key in identities] if len(key_columns) == 1 else identities
    query = _lock_statement(version_column, key_columns)
    # Once a row is locked, PostgreSQL returns its newest committed version, even if
    # it was changed while this statement waited for the lock.
    stored = {tuple(key): version for version, *key in connection.execute(query, {"keys": keys})}
    # Keys such as CHAR(n) ones come back in another form than the session holds.
    stored_identity = VersionedColumns.of(states[0].mapper).stored_identity
    stale = [
        state
        for state in states
        if (identity := stored_identity(state.identity)) not in stored
        or stored[identity] != version_read(state)
    ]
    if stale:
        names = ", ".join(f"{state.class_.__name__} {state.identity}" for state in stale)
        raise ConcurrentChangeError(
            f"{names}: changed or deleted by another transaction since this session read "
            "it. Roll back, load it again and reapply the change."
        )
