"""A past session: the catalogue of authors and their books as it was at one moment."""

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import selectinload

from chrononaut import VersionedSQLAlchemy


def catalogue_at(db: VersionedSQLAlchemy, Author: type, at: datetime) -> dict[str, list[str]]:
    """Return ``{author name: [book titles]}`` as they were at ``at``."""
    with db.as_of(at) as past:
        authors = past.scalars(
            select(Author).options(selectinload(Author.books)).order_by(Author.name)
        )
        # Read everything inside the block: the objects are detached once it ends.
        return {author.name: sorted(book.title for book in author.books) for author in authors}
