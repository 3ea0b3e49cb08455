"""Recipe: everything history holds about a person, for a data-subject request."""

import json
from typing import Any

from chrononaut import VersionedSQLAlchemy
from chrononaut.interfaces.export import feed_document, timeline_document
from chrononaut.interfaces.timeline import activity_feed, object_timeline

PAGE = 1000


def export_person(db: VersionedSQLAlchemy, model: type[Any], key: dict, user_id: str) -> str:
    """Return as JSON the history of the person's own record and every change they made."""
    entries = object_timeline(db.session, model, key)
    made = []
    while True:  # page by page, however many changes they made
        page = activity_feed(
            db.session, db.activity_cls, user_id=user_id, limit=PAGE, offset=len(made)
        )
        made += page
        if len(page) < PAGE:
            break
    return json.dumps(
        {
            "record": timeline_document(model, key, entries),
            "changes_made": feed_document(made)["changes"],
        },
        indent=2,
    )
