"""Time travel: two models at one moment, joined on their keys."""

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session


def books_with_their_authors_at(
    session: Session, Book: type, Author: type, at: datetime
) -> list[tuple[str, str]]:
    """Each book's title with the name its author had, both as they were at ``at``."""
    books, authors = Book.as_of(at), Author.as_of(at)
    query = (
        select(books.c.title, authors.c.name)
        .select_from(books)
        # The dated key goes on the left of the comparison (see "Keys" below).
        .join(authors, authors.c.id == books.c.author_id)
        .order_by(books.c.title)
    )
    return [(title, name) for title, name in session.execute(query)]
