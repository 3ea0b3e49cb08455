"""Recipe: who changed what between two dates, counted by user, model and kind."""

from datetime import datetime

from sqlalchemy import func, select

from chrononaut import VersionedSQLAlchemy
from chrononaut.interfaces.timeline import FILTERABLE_KINDS, kind_condition, models_by_table


def who_did_what(db: VersionedSQLAlchemy, start: datetime, end: datetime) -> list[dict]:
    """Count the changes made from ``start`` up to, not including, ``end``."""
    activity = db.activity_cls.__table__
    user = activity.c.user_info["user_id"].astext
    counts = [
        func.count().filter(kind_condition(activity, kind)).label(kind) for kind in FILTERABLE_KINDS
    ]
    query = (
        select(user.label("user"), activity.c.table_name, *counts)
        .where(activity.c.changed >= start, activity.c.changed < end)
        .group_by(user, activity.c.table_name)
        .order_by(user, activity.c.table_name)
    )
    models = models_by_table()  # the model of each table, to report class names
    report = []
    for row in db.session.execute(query):
        model = models.get(row.table_name)
        report.append(
            {
                "user": row.user,  # None for changes made outside a signed-in request
                "model": model.__name__ if model else row.table_name,
                **{kind: getattr(row, kind) for kind in FILTERABLE_KINDS},
            }
        )
    return report
