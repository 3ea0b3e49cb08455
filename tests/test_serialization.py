"""How column values are stored in the JSON of a snapshot."""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta, timezone, tzinfo
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import ARRAY, JSON, Column, Integer, Text, select, text
from sqlalchemy.dialects.postgresql import JSONB

from chrononaut import Versioned
from chrononaut.data_converters import HistoryModelDataConverter
from chrononaut.flask_versioning import UTC, serialize_datetime
from chrononaut.history.serialization import (
    deserialize_value,
    escape_text,
    serialize_json_value,
    serialize_value,
    unescape_text,
)
from chrononaut.unsafe import suppress_versioning
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


# -- NUL in JSON, and the escaped form ---------------------------------------------------

MARK = "\ufdd0"
# Any text Python can hand to a JSON encoder: NUL and the escape mark included.
ANY_TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=12) | st.builds(
    lambda tail: MARK + tail, st.text(st.characters(exclude_categories=("Cs",)), max_size=8)
)
ANY_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | ANY_TEXT,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(ANY_TEXT, children, max_size=4)
    ),
    max_leaves=10,
)


@pytest.mark.parametrize(
    ("text", "stored"),
    [
        ("plain", "plain"),
        ("a\x00b", MARK + "a\\0b"),
        ("\x00", MARK + "\\0"),
        ("back\\slash\x00", MARK + "back\\\\slash\\0"),
        (MARK + "x", MARK + MARK + "x"),
        (MARK + "\\0", MARK + MARK + "\\\\0"),
        ("back\\slash", "back\\slash"),
    ],
)
def test_the_escaped_form(text, stored):
    assert escape_text(text) == stored
    assert unescape_text(stored) == text


def test_strings_inside_lists_and_dicts_are_escaped_top_level_strings_are_not():
    value = {"k\x00": ["a\x00", MARK + "m", "plain"], "plain": "x"}

    assert serialize_value(value) == {
        MARK + "k\\0": [MARK + "a\\0", MARK + MARK + "m", "plain"],
        "plain": "x",
    }
    # A column of any type but JSON cannot hold NUL, and its strings are stored as they are.
    assert serialize_value(MARK + "m") == MARK + "m"


@settings(max_examples=300)
@given(value=ANY_JSON)
def test_json_values_read_back_exactly(value):
    stored = serialize_json_value(value)

    assert "\x00" not in json.dumps(stored, ensure_ascii=False)
    assert deserialize_value(stored, JSON()) == value
    assert deserialize_value(stored, JSONB()) == value


@settings(max_examples=200)
@given(items=st.lists(ANY_TEXT, max_size=5))
def test_text_arrays_read_back_exactly(items):
    assert deserialize_value(serialize_value(items), ARRAY(Text())) == items


@settings(max_examples=100)
@given(text=ANY_TEXT.filter(lambda text: "\x00" not in text))
def test_text_columns_are_stored_and_read_as_they_are(text):
    assert serialize_value(text) == text
    assert deserialize_value(text, Text()) == text


@pytest.fixture
def Document(db):
    class Document(db.Model, Versioned):
        __tablename__ = "document"
        id = Column(Integer, primary_key=True)
        body = Column(JSON)
        title = Column(Text)

    db.create_all()
    return Document


def test_a_json_column_holding_nul_is_saved_and_reads_back(db, Document):
    body = {"text\x00key": "a\x00b", "items": ["\x00", MARK + "m"], "n": 1}
    document = Document(body=body, title=MARK + "title")
    db.session.add(document)
    db.session.commit()
    document.body = "bare\x00string"
    db.session.commit()

    first, second = document.versions()
    assert first.chrononaut_data["body"] == {
        MARK + "text\\0key": MARK + "a\\0b",
        "items": [MARK + "\\0", MARK + MARK + "m"],
        "n": 1,
    }
    assert first.chrononaut_data["title"] == MARK + "title"
    assert first.typed_data()["body"] == body
    assert first.typed_data()["title"] == MARK + "title"
    assert first.reify().body == body
    assert second.chrononaut_data["body"] == MARK + "bare\\0string"
    assert second.typed_data()["body"] == "bare\x00string"
    db.session.expire_all()
    assert db.session.get(Document, document.id).body == "bare\x00string"


def test_the_0_1_converter_stores_a_json_string_with_nul_in_the_same_escaped_form(db, Document):
    # A 0.1 history table of the model, holding a state whose body was a bare string.
    db.session.execute(
        text(
            "CREATE TABLE document_history (id integer, body json, title text, "
            "version integer, changed timestamptz, change_info jsonb)"
        )
    )
    db.session.execute(
        text(
            "INSERT INTO document_history VALUES "
            "(1, CAST(:body AS json), 't', 0, '2020-01-01T00:00:00+00', NULL)"
        ),
        {"body": json.dumps("bare\x00string")},
    )
    with suppress_versioning():
        db.session.add(Document(id=1, body={"n": 1}, title="t", version=1))
        db.session.commit()

    HistoryModelDataConverter(Document).convert_all(db.session)

    first, second = db.session.get(Document, 1).versions()
    assert first.chrononaut_data["body"] == MARK + "bare\\0string"
    assert first.typed_data()["body"] == "bare\x00string"
    assert second.typed_data()["body"] == {"n": 1}


def test_json_round_trip_through_the_database(db, Document):
    session = db.session

    @settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(body=ANY_JSON)
    def round_trip(body):
        document = Document(body=body)
        session.add(document)
        session.commit()
        session.expire_all()

        (snapshot,) = document.versions()
        assert snapshot.typed_data()["body"] == document.body == body

    round_trip()
