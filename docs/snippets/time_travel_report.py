"""Time travel: the open todos of a past moment, counted and listed, as of then."""

from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session


def open_todos_at(session: Session, Todo: type, at: datetime) -> tuple[int, list[str]]:
    """How many todos were open at ``at``, and the titles of the ten due first."""
    then = Todo.as_of(at)  # one row per todo that existed at `at`, as it was then
    still_open = then.c.done.is_not(True)
    count = session.scalar(select(func.count()).select_from(then).where(still_open))
    first_due = (
        select(then.c.title)
        .where(still_open)
        .order_by(then.c.due_at.nulls_last(), then.c.id)
        .limit(10)
    )
    return count, list(session.scalars(first_due))
