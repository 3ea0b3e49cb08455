"""How column values are stored in the JSON of a snapshot."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone, tzinfo
from decimal import Decimal

import pytest
from sqlalchemy import select

from chrononaut.flask_versioning import UTC, serialize_datetime
from chrononaut.history.serialization import serialize_value
from tests.models import Priority

PLUS_TWO = timezone(timedelta(hours=2))


def _stored(db, session):
    """The ``key``, ``data`` and ``version`` of every activity row, oldest first."""
    table = db.metadata._activity_cls.__table__
    query = select(table.c.key, table.c.data, table.c.version).order_by(table.c.id)
    return session.execute(query).all()


# -- through the database -------------------------------------------------------------


def test_scalars_enums_and_datetimes_in_the_activity_table(db, session, models):
    todo = models.Todo(
        title="Buy milk",
        text=None,
        done=True,
        priority=Priority.HIGH,
        due_at=datetime(2024, 5, 1, 12, 30, 15, 123456, tzinfo=UTC),
        secret="s",
        starred=True,
    )
    session.add(todo)
    session.commit()

    ((key, data, version),) = _stored(db, session)

    assert key == {"id": todo.id}
    assert data == {
        "id": todo.id,
        "title": "Buy milk",
        "text": None,
        "done": True,
        "priority": "Priority.HIGH",
        "due_at": "2024-05-01T12:30:15.123456+00:00",
        "version": 0,
    }
    assert version == 0
    assert data["done"] is True
    assert isinstance(data["id"], int)


def test_false_and_other_enum_members(db, session, models):
    session.add(models.Todo(title="", done=False, priority=Priority.LOW))
    session.commit()

    ((_, data, _),) = _stored(db, session)

    assert data["done"] is False
    assert data["title"] == ""
    assert data["priority"] == "Priority.LOW"


def test_naive_datetime_is_stored_as_utc(db, session, models):
    session.add(models.Todo(title="a", due_at=datetime(2024, 5, 1, 12, 30)))
    session.commit()

    ((_, data, _),) = _stored(db, session)

    assert data["due_at"] == "2024-05-01T12:30:00+00:00"


def test_aware_datetime_is_converted_to_utc(db, tokyo_session, models):
    todo = models.Todo(title="a", due_at=datetime(2024, 5, 1, 14, 30, tzinfo=PLUS_TWO))
    tokyo_session.add(todo)
    tokyo_session.commit()
    # The next snapshot reads due_at back from the database, as a +09:00 datetime.
    assert todo.due_at.utcoffset() == timedelta(hours=9)
    todo.title = "b"
    tokyo_session.commit()

    stored = _stored(db, tokyo_session)

    assert [data["due_at"] for _, data, _ in stored] == ["2024-05-01T12:30:00+00:00"] * 2
    assert [version for _, _, version in stored] == [0, 1]


def test_text_and_composite_keys(db, session, models):
    session.add(models.Country(code="NL", name="Netherlands"))
    session.commit()
    session.add(models.Translation(locale="en", slug="hello", text="Hello"))
    session.commit()

    (country_key, country_data, _), (translation_key, _, _) = _stored(db, session)

    assert country_key == {"code": "NL"}
    assert country_data == {"code": "NL", "name": "Netherlands", "version": 0}
    assert translation_key == {"locale": "en", "slug": "hello"}


def test_snapshot_attributes_read_the_stored_values(session, models):
    todo = models.Todo(
        title="a", done=True, priority=Priority.HIGH, due_at=datetime(2024, 5, 1, 12, 30)
    )
    session.add(todo)
    session.commit()

    (snapshot,) = todo.versions()

    assert snapshot.priority == "Priority.HIGH"
    assert snapshot.due_at == "2024-05-01T12:30:00+00:00"
    assert snapshot.done is True


# -- the functions --------------------------------------------------------------------


@pytest.mark.parametrize("value", [None, "", "text", 0, 42, -7, 1.5, True, False])
def test_json_scalars_are_kept(value):
    serialized = serialize_value(value)

    assert serialized == value
    assert type(serialized) is type(value)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (Priority.HIGH, "Priority.HIGH"),
        (Decimal("1.50"), "1.50"),
        (date(2020, 1, 2), "2020-01-02"),
        (timedelta(hours=1), "1:00:00"),
    ],
)
def test_other_values_are_stored_as_their_str(value, expected):
    assert serialize_value(value) == expected == str(value)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (datetime(2024, 5, 1, 12, 30), "2024-05-01T12:30:00+00:00"),
        (datetime(2024, 5, 1, 12, 30, tzinfo=UTC), "2024-05-01T12:30:00+00:00"),
        (datetime(2024, 5, 1, 14, 30, tzinfo=PLUS_TWO), "2024-05-01T12:30:00+00:00"),
        (datetime(2024, 1, 1, 1, 0, tzinfo=PLUS_TWO), "2023-12-31T23:00:00+00:00"),
        (datetime(2024, 5, 1, 12, 30, 0, 5), "2024-05-01T12:30:00.000005+00:00"),
    ],
)
def test_datetimes_become_utc_iso_text(value, expected):
    assert serialize_datetime(value) == expected
    assert serialize_value(value) == expected


def test_flask_versioning_exports_utc():
    assert isinstance(UTC, tzinfo)
    assert datetime(2020, 1, 1, tzinfo=UTC).utcoffset() == timedelta(0)
    assert datetime(2020, 7, 1, tzinfo=UTC).dst() in (None, timedelta(0))
    assert serialize_datetime(datetime(2020, 1, 1, tzinfo=UTC)) == "2020-01-01T00:00:00+00:00"
