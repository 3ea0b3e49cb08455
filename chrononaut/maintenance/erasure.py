"""Erasing values from one object's history, for a person's right to erasure.

History is append-only, so erasing is a deliberate act: it runs only inside
:func:`allow_erasure`, and it is itself recorded, as a row of its own that no erasure
touches. It removes the values of some columns from every snapshot of one object and
keeps everything else: that the versions existed, when, who made them and which
columns each one changed. ``docs/retention.rst`` tells the whole story.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from flask import current_app
from sqlalchemy import (
    ARRAY,
    BigInteger,
    Table,
    Text,
    bindparam,
    cast,
    func,
    insert,
    inspect,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Session

from chrononaut.capture.change_info import active_extra_change_info
from chrononaut.capture.guard import suppress_versioning
from chrononaut.capture.versioned import Versioned
from chrononaut.exceptions import ChrononautException, InvalidArgumentError
from chrononaut.history.activity import (
    INSERT,
    UPDATE,
    VERSION_KEY,
    activity_class_for,
    has_time_travel_columns,
)
from chrononaut.history.columns import VersionedColumns
from chrononaut.history.serialization import STORED_AS_IS, UTC, serialize_value
from chrononaut.history.snapshot import ERASED_COLUMNS_KEY
from chrononaut.maintenance.retention import take_maintenance_lock

#: The ``table_name`` of the rows that record erasures. Their ``key`` is
#: ``{"table_name": ..., "key": ...}`` of the object erased, their ``data`` holds the
#: erased ``columns`` and the number of ``snapshots`` changed, and their ``extra_info``
#: the ``reason``. No versioned model has this table name, so no erasure reaches them.
ERASURE_TABLE_NAME = "chrononaut_erasure"

_ALLOWED: ContextVar[bool] = ContextVar("chrononaut_erasure_allowed", default=False)


@contextmanager
def allow_erasure() -> Iterator[None]:
    """Allow :func:`erase` inside the block, in this thread or task only.

    .. code-block:: python

        with chrononaut.allow_erasure():
            chrononaut.erase(Customer, 42, reason="GDPR request 2024-17")
    """
    token = _ALLOWED.set(True)
    try:
        yield
    finally:
        _ALLOWED.reset(token)


@dataclass(frozen=True)
class Erasure:
    """What :func:`erase` did.

    :ivar columns: the columns whose values were removed, sorted.
    :ivar snapshots: how many snapshots held one of them and were changed.
    """

    columns: tuple[str, ...]
    snapshots: int


def erase(
    model: type[Versioned],
    key: Any,
    columns: Collection[str] | None = None,
    *,
    reason: str,
) -> Erasure:
    """Remove the values of ``columns`` from every snapshot of one object.

    Each changed snapshot notes the erased columns in ``extra_info["erased_cols"]``,
    so snapshots raise :class:`~chrononaut.exceptions.ErasedAttributeError` for them
    and diffs show :data:`~chrononaut.history.snapshot.ERASED` where they changed. The
    erasure is recorded as a row of :data:`ERASURE_TABLE_NAME`, with who (as changes
    record it) and ``reason``, and committed with the erased rows in one transaction
    of its own session: the application's session is not touched. The object's live
    row keeps its values: change it (and commit) first, or its next change records
    them again.

    :param model: the versioned model of the object.
    :param key: the object's primary key: ``{attribute: value}``, or the bare value
        for a one-column key.
    :param columns: the column attributes to erase; by default every value the
        snapshots hold except ``version`` and the key, which is never erased.
    :param reason: why, recorded with the erasure.
    :return: the columns erased and the number of snapshots changed.
    :raises ChrononautException: no :func:`allow_erasure` block is open, or the object
        has no recorded history.
    :raises InvalidArgumentError: ``model`` is not a versioned model, ``key`` does not
        name its key attributes, ``columns`` names something other than column
        attributes outside the key and ``version``, or ``reason`` is empty.
    """
    if not _ALLOWED.get():
        raise ChrononautException(
            "Erasing history is only allowed inside `with chrononaut.allow_erasure():`."
        )
    if not isinstance(reason, str) or not reason.strip():
        raise InvalidArgumentError("An erasure needs a reason: a non-empty string.")
    if not (isinstance(model, type) and issubclass(model, Versioned)):
        raise InvalidArgumentError(f"{model!r} is not a versioned model.")
    versioned = VersionedColumns.of(inspect(model))
    stored_key = _stored_key(model, versioned, key)
    wanted = None if columns is None else _checked_columns(model, versioned, columns)
    session: Session = current_app.extensions["chrononaut"].session.session_factory()
    try:
        # The one sanctioned way to change history rows; a fresh session, so that
        # nothing of the application's is flushed without being recorded.
        with suppress_versioning(allow_deleting_history=True):
            erasure = _erase_rows(session, model, versioned, stored_key, wanted, reason)
            session.commit()
    finally:
        session.close()
    return erasure


def _erase_rows(
    session: Session,
    model: type[Versioned],
    versioned: VersionedColumns,
    key: dict[str, Any],
    wanted: frozenset[str] | None,
    reason: str,
) -> Erasure:
    table_name = versioned.table_name
    table = activity_class_for(model).__table__
    c = table.c
    take_maintenance_lock(session)
    rows = session.execute(
        select(c.id, c.data, c.extra_info)
        .where(c.table_name == table_name, c.key == key)
        .order_by(c.changed, c.id)
        .with_for_update()
    ).all()
    if not rows:
        raise ChrononautException(
            f"{model.__name__} {json.dumps(key)} has no recorded history: nothing to erase."
        )
    names = wanted
    if names is None:
        kept = {VERSION_KEY, *versioned.primary_key}
        names = frozenset(name for row in rows for name in row.data if name not in kept)
    marks = _value_numbers(rows, names)
    changes = [
        {"row_id": row.id, "names": sorted(row_marks), "marks": {**_marks_of(row), **row_marks}}
        for row, row_marks in zip(rows, marks, strict=True)
        if row_marks
    ]
    if changes:
        session.execute(_erase_statement(table), changes)
    erased = tuple(sorted({name for change in changes for name in change["names"]}))
    _record(session, model, table, table_name, key, erased, len(changes), reason)
    return Erasure(erased, len(changes))


def _erase_statement(table: Table) -> Any:
    c = table.c
    return (
        update(table)
        .where(c.id == bindparam("row_id"))
        .values(
            data=c.data.op("-")(cast(bindparam("names"), ARRAY(Text))),
            extra_info=c.extra_info.op("||")(
                func.jsonb_build_object(ERASED_COLUMNS_KEY, bindparam("marks", type_=JSONB))
            ),
        )
    )


def _marks_of(row: Any) -> dict[str, int]:
    """The erased columns an earlier erasure noted on ``row``."""
    marks = row.extra_info.get(ERASED_COLUMNS_KEY)
    return dict(marks) if isinstance(marks, dict) else {}


def _value_numbers(rows: Sequence[Any], names: frozenset[str]) -> list[dict[str, int]]:
    """Number each distinct value of each column in ``names`` over the object's rows.

    Numbers go on after those an earlier erasure gave, so that a value recorded since
    never looks equal to one erased before.
    """
    seen: dict[str, dict[str, int]] = {name: {} for name in names}
    first: dict[str, int] = {name: 0 for name in names}
    for row in rows:
        for name, number in _marks_of(row).items():
            if name in first and isinstance(number, int):
                first[name] = max(first[name], number + 1)
    numbered = []
    for row in rows:
        row_marks = {}
        for name in names:
            if name in row.data:
                # JSON text tells 1 from true and 1.0, which == does not.
                text = json.dumps(row.data[name], sort_keys=True)
                values = seen[name]
                row_marks[name] = values.setdefault(text, first[name] + len(values))
        numbered.append(row_marks)
    return numbered


def _record(
    session: Session,
    model: type[Versioned],
    table: Table,
    table_name: str,
    key: dict[str, Any],
    erased: tuple[str, ...],
    snapshots: int,
    reason: str,
) -> None:
    """Write the row that records the erasure: the object's erasures are its versions."""
    c = table.c
    record_key = {"table_name": table_name, "key": key}
    earlier = session.scalar(
        select(func.count()).where(c.table_name == ERASURE_TABLE_NAME, c.key == record_key)
    )
    version = int(earlier or 0)
    values: dict[str, Any] = {
        "table_name": ERASURE_TABLE_NAME,
        "changed": datetime.now(UTC),
        "version": version,
        "key": record_key,
        "data": {"columns": list(erased), "snapshots": snapshots, VERSION_KEY: version},
        "user_info": model._capture_user_info(),
        "extra_info": {**(active_extra_change_info() or {}), "reason": reason},
    }
    if has_time_travel_columns(session, table):
        values["operation"] = UPDATE if version else INSERT
        values["transaction_id"] = cast(cast(func.pg_current_xact_id(), Text), BigInteger)
    session.execute(insert(table).values(**values))


def _stored_key(model: type[Any], versioned: VersionedColumns, key: Any) -> dict[str, Any]:
    names = versioned.primary_key
    if not isinstance(key, Mapping):
        if len(names) != 1:
            raise InvalidArgumentError(
                f"{model.__name__} has a composite key: give it as a dict with the "
                f"attributes {', '.join(names)}."
            )
        key = {names[0]: key}
    if set(key) != set(names):
        raise InvalidArgumentError(
            f"The key of {model.__name__} names the attributes {', '.join(names)}, "
            f"not {', '.join(map(str, key))}."
        )
    stored = {
        name: key[name] if type(key[name]) in STORED_AS_IS else serialize_value(key[name])
        for name in names
    }
    for _, name, form in versioned.key_forms:
        stored[name] = form(stored[name])
    return stored


def _checked_columns(
    model: type[Any], versioned: VersionedColumns, columns: Collection[str]
) -> frozenset[str]:
    if isinstance(columns, str) or not isinstance(columns, Collection) or not columns:
        raise InvalidArgumentError(
            "`columns` must be a non-empty list of column attribute names, or None for all."
        )
    erasable = {*versioned.tracked, *versioned.hidden, *versioned.untracked}
    erasable -= set(versioned.primary_key)
    for name in columns:
        if name not in erasable:
            raise InvalidArgumentError(
                f"{name!r} is not a column attribute of {model.__name__} that history "
                "may hold: the key and `version` cannot be erased."
            )
    return frozenset(columns)
