"""A model's objects as they were at one moment, a page at a time, for the viewer's
"state at" page and ``flask chrononaut as-of``.

The rows come from :meth:`~chrononaut.Versioned.as_of`, ordered by key. Values are
shown as the timelines show them: each typed value is written in its stored form
(:func:`~chrononaut.history.serialization.serialize_value`) and read as people read it
(:func:`~chrononaut.interfaces.display.readable_value`), so an enum reads as its
member's name in every view. Hidden and untracked columns are not in ``as_of``, so no
value of theirs can be shown.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import inspect, select

from chrononaut.history.activity import VERSION_KEY
from chrononaut.history.columns import VersionedColumns
from chrononaut.history.serialization import serialize_value
from chrononaut.interfaces.display import readable_value

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from chrononaut.capture.versioned import Versioned

#: The column of ``as_of`` that holds when each object reached its state.
_CHANGED = "chrononaut_changed"


@dataclass(frozen=True)
class StatePage:
    """One page of a model's objects as they were at :attr:`at`.

    :ivar columns: the key columns first, then the tracked ones, then ``version``.
    :ivar rows: for each object, ``(key, values, changed)``: its key as stored, its
        readable values in the order of :attr:`columns`, and when it reached that state.
    :ivar has_next: more objects follow this page.
    """

    model: type[Versioned]
    at: datetime
    columns: tuple[str, ...]
    rows: list[tuple[dict[str, Any], list[Any], datetime]]
    has_next: bool


def state_at(
    session: Session, model: type[Versioned], at: datetime, *, limit: int, offset: int = 0
) -> StatePage:
    """Return the objects of ``model`` as they were at ``at``, ordered by key.

    :param at: the moment; a change made exactly then is included.
    :param limit: at most this many objects.
    :param offset: skip this many objects first.
    :raises ChrononautException: the activity table lacks the time-travel columns.
    """
    past = model.as_of(at)
    key_names = VersionedColumns.of(inspect(model)).primary_key
    shown = [
        column.key
        for column in past.c
        if column.key not in key_names and column.key not in (VERSION_KEY, _CHANGED)
    ]
    columns = (*key_names, *shown, VERSION_KEY)
    statement = (
        select(past).order_by(*(past.c[name] for name in key_names)).limit(limit + 1).offset(offset)
    )
    found = session.execute(statement).mappings().all()
    rows = [
        (
            {name: serialize_value(row[name]) for name in key_names},
            [readable_value(model, name, serialize_value(row[name])) for name in columns],
            row[_CHANGED],
        )
        for row in found[:limit]
    ]
    return StatePage(model, at, columns, rows, has_next=len(found) > limit)
