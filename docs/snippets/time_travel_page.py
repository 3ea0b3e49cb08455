"""Time travel: page through a model as it was, 50 objects at a time, in key order."""

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session


def page_at(session: Session, Todo: type, at: datetime, after: int = 0) -> list[Any]:
    """The next 50 todos as they were at ``at``, after the key ``after``."""
    then = Todo.as_of(at)
    page = select(then).where(then.c.id > after).order_by(then.c.id).limit(50)
    return list(session.execute(page))


def every_page_at(session: Session, Todo: type, at: datetime) -> list[list[Any]]:
    """All of them, page by page: each page starts after the last key of the one before."""
    pages, after = [], 0
    while page := page_at(session, Todo, at, after):
        pages.append(page)
        after = page[-1].id
    return pages
