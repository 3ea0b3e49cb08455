"""Reading the raw ``chrononaut_activity`` rows that tests check."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Row, select

from chrononaut import VersionedSQLAlchemy


def activity_rows(db: VersionedSQLAlchemy) -> list[Row[Any]]:
    """Every row of ``chrononaut_activity``, oldest first."""
    activity = db.activity_cls.__table__
    return list(db.session.execute(select(activity).order_by(activity.c.id)).all())


def rows_of(db: VersionedSQLAlchemy, table_name: str, **key: Any) -> list[Row[Any]]:
    """The activity rows of one table, or of one object when its ``key`` is given."""
    return [
        row
        for row in activity_rows(db)
        if row.table_name == table_name and (not key or row.key == key)
    ]
