"""Time travel: what happened to a model during a window of time."""

from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session


def changes_by_operation(session: Session, Todo: type, start: datetime, end: datetime) -> dict:
    """How many todos were inserted, updated and deleted after ``start``, up to ``end``."""
    changes = Todo.changed_between(start, end)
    query = select(changes.c.chrononaut_operation, func.count()).group_by(
        changes.c.chrononaut_operation
    )
    return {operation: count for operation, count in session.execute(query)}


def deleted_between(session: Session, Todo: type, start: datetime, end: datetime) -> list:
    """The todos deleted in the window, each with the state it had just before: the
    state as of the start, for those that were already there then."""
    changes = Todo.changed_between(start, end)
    before = Todo.as_of(start)
    query = (
        select(changes.c.id, changes.c.chrononaut_changed, before.c.title)
        .select_from(changes)
        .outerjoin(before, before.c.id == changes.c.id)
        .where(changes.c.chrononaut_operation == "delete")
        .order_by(changes.c.chrononaut_changed)
    )
    return list(session.execute(query))
