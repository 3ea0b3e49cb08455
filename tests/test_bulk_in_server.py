"""Recorded statements whose snapshots the server builds (chrononaut/capture/bulk_sql.py)
write the same history, byte for byte, as the snapshots built in Python, in fewer
statements."""

from __future__ import annotations

import enum
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import (
    ARRAY,
    BigInteger,
    Boolean,
    Column,
    Date,
    DateTime,
    Enum,
    Float,
    Integer,
    LargeBinary,
    Numeric,
    String,
    Text,
    Time,
    Uuid,
    delete,
    event,
    func,
    insert,
    text,
    update,
)

from chrononaut import Versioned
from chrononaut.capture.bulk_sql import built_in_server
from tests.activity import activity_rows


class Color(enum.Enum):
    RED = "red"
    GREEN = "green"


#: The columns of both models; ``Twin`` adds a float, which SQL cannot write as Python
#: does, so that its rows take the snapshots built in Python.
def _columns() -> dict[str, Any]:
    return {
        "id": Column(Integer, primary_key=True),
        "amount": Column(Numeric(14, 4)),
        "big": Column(BigInteger),
        "flag": Column(Boolean),
        "day": Column(Date),
        "clock": Column(Time),
        "uid": Column(Uuid),
        "color": Column(Enum(Color)),
        "color_text": Column(Enum(Color, native_enum=False)),
        "label": Column(Enum("x", "y", name="label")),
        "blob": Column(LargeBinary),
        "grid": Column(ARRAY(Integer)),
        "naive": Column(DateTime),
        "aware": Column(DateTime(timezone=True)),
        "title": Column(String(40)),
        "body": Column(Text),
        "secret": Column(Text),
        "seen": Column(Integer),
    }


@pytest.fixture
def pair(db):
    """``Sample``, recorded in the server, and ``Twin``, recorded in Python."""
    roles = {"__chrononaut_hidden__": ["secret"], "__chrononaut_untracked__": ["seen"]}
    Sample = type(
        "Sample", (db.Model, Versioned), {"__tablename__": "sample", **roles, **_columns()}
    )
    Twin = type(
        "Twin",
        (db.Model, Versioned),
        {"__tablename__": "twin", **roles, **_columns(), "ratio": Column(Float)},
    )
    db.create_all()
    assert built_in_server(sa.inspect(Sample))
    assert not built_in_server(sa.inspect(Twin))
    return Sample, Twin


# Text columns hold any character but NUL; the escape mark included, which only JSON
# values escape.
TEXT = st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00"), max_size=20)
MOMENTS = st.datetimes(datetime(1000, 1, 1), datetime(9000, 1, 1))
ROWS = st.fixed_dictionaries(
    {
        "amount": st.decimals(-(10**9), 10**9, places=4, allow_nan=False),
        "big": st.integers(-(2**63), 2**63 - 1),
        "flag": st.booleans(),
        "day": st.dates(),
        "clock": st.times(),
        "uid": st.uuids(),
        "color": st.sampled_from(Color),
        "color_text": st.sampled_from(Color),
        "label": st.sampled_from(["x", "y"]),
        "blob": st.binary(max_size=40),
        "grid": st.lists(st.integers(-(2**31), 2**31 - 1), max_size=4),
        "naive": MOMENTS,
        "aware": MOMENTS.flatmap(
            lambda moment: st.integers(-14 * 60, 14 * 60).map(
                lambda minutes: moment.replace(tzinfo=timezone(timedelta(minutes=minutes)))
            )
        ),
        "title": TEXT,
        "body": TEXT,
        "secret": TEXT,
        "seen": st.integers(0, 9),
    }
).flatmap(
    # Any column may be NULL.
    lambda row: st.fixed_dictionaries(
        {name: st.just(value) | st.none() for name, value in row.items()}
    )
)


def _stored(session, table_name: str, row_id: int) -> list[tuple[Any, ...]]:
    """The history of one row as the database stores it: the JSON as text, the float
    column of ``Twin`` (always NULL) and the id left out."""
    return session.execute(
        text(
            "SELECT operation, version, key::text, (data - 'ratio')::text, "
            "user_info::text, extra_info::text FROM chrononaut_activity "
            "WHERE table_name = :table_name AND key = jsonb_build_object('id', :id) "
            "ORDER BY id"
        ),
        {"table_name": table_name, "id": row_id},
    ).all()


def test_server_snapshots_are_the_python_snapshots_byte_for_byte(db, session, pair):
    Sample, Twin = pair
    ids = iter(range(1, 10**6))

    @settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(first=ROWS, second=ROWS)
    def same_history(first, second):
        row_id = next(ids)
        for model in (Sample, Twin):
            session.execute(insert(model), [{"id": row_id, **first}])
            session.execute(update(model).where(model.id == row_id).values(**second))
            session.execute(delete(model).where(model.id == row_id))
        session.commit()
        assert _stored(session, "sample", row_id) == _stored(session, "twin", row_id)

    same_history()


def _statements(db):
    """The SQL statements the engine runs from now on."""
    seen: list[str] = []

    def note(connection, cursor, statement, parameters, context, executemany):
        seen.append(statement)

    event.listen(db.engine, "before_cursor_execute", note)
    return seen


def test_an_update_or_delete_of_rows_no_object_holds_is_one_statement(db, session, pair):
    Sample, _ = pair
    session.execute(insert(Sample), [{"id": n, "title": "a"} for n in range(1, 6)])
    session.commit()
    statements = _statements(db)

    updated = session.execute(update(Sample).where(Sample.id > 1).values(title="b"))
    deleted = session.execute(delete(Sample).where(Sample.id > 3))

    assert (updated.rowcount, deleted.rowcount) == (4, 2)
    assert len(statements) == 2
    assert all(statement.startswith("WITH chrononaut_written AS") for statement in statements)
    session.commit()
    assert [(row.operation, row.version) for row in activity_rows(db)[5:]] == [
        *[("update", 1)] * 4,
        *[("delete", 2)] * 2,
    ]


def test_an_insert_sends_the_keys_back_not_the_snapshots(db, session, pair):
    Sample, _ = pair
    statements = _statements(db)
    session.execute(insert(Sample), [{"id": n, "title": "a"} for n in range(1, 6)])
    session.commit()

    history = [statement for statement in statements if "chrononaut_activity" in statement]
    assert len(history) == 1
    assert "unnest" in history[0]
    assert [(row.key, row.version) for row in activity_rows(db)] == [
        ({"id": n}, 0) for n in range(1, 6)
    ]


def test_criteria_evaluate_cannot_read_fail_as_without_history(db, session, pair, models):
    Sample, _ = pair
    # No object is loaded: the statement could run as one; it fails as a plain one does.
    for statement in (
        update(Sample).where(func.lower(Sample.title) == "a").values(title="b"),
        update(models.Note).where(func.lower(models.Note.body) == "a").values(body="b"),
    ):
        with pytest.raises(sa.exc.InvalidRequestError, match="Could not evaluate current criteria"):
            session.execute(statement.execution_options(synchronize_session="evaluate"))
    session.rollback()
    assert activity_rows(db) == []


@pytest.mark.parametrize("synchronize", ["auto", "evaluate", "fetch", False])
def test_a_delete_leaves_loaded_objects_as_without_history(db, session, pair, models, synchronize):
    Sample, _ = pair
    session.execute(insert(Sample), [{"id": 1, "title": "a"}, {"id": 2, "title": "b"}])
    session.execute(insert(models.Note), [{"id": 1, "body": "a"}, {"id": 2, "body": "b"}])
    session.commit()
    states = {}
    for model in (Sample, models.Note):
        loaded = session.get(model, 1)
        session.execute(
            delete(model).where(model.id == 1).execution_options(synchronize_session=synchronize)
        )
        states[model] = (loaded in session, sa.inspect(loaded).deleted)

    assert states[Sample] == states[models.Note]
    session.commit()
    assert [(row.key, row.operation, row.version) for row in activity_rows(db)[2:]] == [
        ({"id": 1}, "delete", 1)
    ]


def test_an_activity_table_without_time_travel_columns_gets_rows_from_python(db, session, pair):
    Sample, _ = pair
    session.execute(text("ALTER TABLE chrononaut_activity DROP COLUMN operation"))
    session.execute(text("ALTER TABLE chrononaut_activity DROP COLUMN transaction_id"))
    session.commit()
    db.engine.dispose()  # the layout is read once per pool

    session.execute(insert(Sample), [{"id": 1, "title": "a"}, {"id": 2, "title": "b"}])
    session.execute(update(Sample).where(Sample.id == 1).values(title="c"))
    session.execute(delete(Sample).where(Sample.id == 2))
    session.commit()

    stored = session.execute(
        text("SELECT key, version, data ->> 'title' FROM chrononaut_activity ORDER BY id")
    )
    assert [tuple(row) for row in stored] == [
        ({"id": 1}, 0, "a"),
        ({"id": 2}, 0, "b"),
        ({"id": 1}, 1, "c"),
        ({"id": 2}, 1, "b"),
    ]
