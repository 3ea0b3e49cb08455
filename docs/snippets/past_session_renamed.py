"""A past session beside the live one: what was renamed since a moment."""

from datetime import datetime

from sqlalchemy import select

from chrononaut import VersionedSQLAlchemy


def renamed_since(db: VersionedSQLAlchemy, model: type, at: datetime) -> dict[int, tuple]:
    """Return ``{id: (name then, name now)}`` of the objects renamed since ``at``.

    Objects created or deleted in between are left out.
    """
    with db.as_of(at) as past:
        then = dict(past.execute(select(model.id, model.name)).all())
    now = dict(db.session.execute(select(model.id, model.name)).all())
    return {
        key: (then[key], now[key])
        for key in sorted(then.keys() & now.keys())
        if then[key] != now[key]
    }
