"""Every common column type is snapshotted without errors and reads back exactly."""

from __future__ import annotations

import enum
import math
import uuid
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import (
    ARRAY,
    JSON,
    BigInteger,
    Boolean,
    Column,
    Date,
    DateTime,
    Enum,
    Float,
    Integer,
    Interval,
    LargeBinary,
    Numeric,
    Text,
    Time,
    UnicodeText,
    Uuid,
    select,
)
from sqlalchemy.dialects.postgresql import JSONB

from chrononaut import Versioned
from chrononaut.exceptions import ChrononautException
from chrononaut.history.serialization import deserialize_value
from chrononaut.models import HistorySnapshot


class Color(enum.Enum):
    RED = "r"
    GREEN = "g"


class Size(int, enum.Enum):
    SMALL = 1
    LARGE = 2


@pytest.fixture
def Sample(db):
    class Sample(db.Model, Versioned):
        __tablename__ = "sample"
        id = Column(Integer, primary_key=True)
        amount = Column(Numeric(14, 4))
        ratio = Column(Float)
        big = Column(BigInteger)
        flag = Column(Boolean)
        day = Column(Date)
        clock = Column(Time)
        clock_tz = Column(Time(timezone=True))
        span = Column(Interval)
        uid = Column(Uuid)
        uid_text = Column(Uuid(as_uuid=False))
        color = Column(Enum(Color))
        color_text = Column(Enum(Color, native_enum=False))
        size = Column(Enum(Size))
        label = Column(Enum("x", "y", name="label"))
        blob = Column(LargeBinary)
        tags = Column(ARRAY(Text))
        days = Column(ARRAY(Date))
        grid = Column(ARRAY(Integer, dimensions=2))
        doc = Column(JSON)
        docb = Column(JSONB)
        naive = Column(DateTime)
        aware = Column(DateTime(timezone=True))
        body = Column(UnicodeText)

    db.create_all()
    return Sample


# PostgreSQL text holds no NUL, and no lone surrogates can be encoded.
TEXT = st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00"), max_size=20)
OFFSETS = st.integers(-14 * 60, 14 * 60).map(lambda minutes: timezone(timedelta(minutes=minutes)))
JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**53), 2**53)
    | st.floats(-1e12, 1e12, allow_nan=False).map(lambda f: round(f, 6))
    | TEXT,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(TEXT, children, max_size=4),
    max_leaves=8,
)
DATETIMES = st.datetimes(datetime(1000, 1, 1), datetime(9000, 1, 1))

STRATEGIES = {
    "amount": st.decimals(-(10**9), 10**9, places=4, allow_nan=False),
    "ratio": st.floats(width=64),
    "big": st.integers(-(2**63), 2**63 - 1),
    "flag": st.booleans(),
    "day": st.dates(),
    "clock": st.times(),
    "clock_tz": st.times(timezones=OFFSETS),
    "span": st.timedeltas(timedelta(days=-99999), timedelta(days=99999)),
    "uid": st.uuids(),
    "uid_text": st.uuids().map(str),
    "color": st.sampled_from(Color),
    "color_text": st.sampled_from(Color),
    "size": st.sampled_from(Size),
    "label": st.sampled_from(["x", "y"]),
    "blob": st.binary(max_size=40),
    "tags": st.lists(TEXT, max_size=5),
    "days": st.lists(st.dates(), max_size=5),
    "grid": st.integers(1, 3).flatmap(
        lambda width: st.lists(st.lists(st.integers(-5, 5), min_size=width, max_size=width))
    ),
    "doc": JSON_VALUES,
    "docb": JSON_VALUES,
    "naive": DATETIMES,
    "aware": DATETIMES.flatmap(lambda dt: OFFSETS.map(lambda tz: dt.replace(tzinfo=tz))),
    "body": TEXT,
}


def _same(left, right):
    if isinstance(left, float) and math.isnan(left):
        return isinstance(right, float) and math.isnan(right)
    return type(left) is type(right) and left == right


@pytest.mark.parametrize("column", sorted(STRATEGIES))
def test_round_trip_through_the_typed_read_path(db, Sample, column):
    session = db.session

    @settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(value=STRATEGIES[column])
    def round_trip(value):
        sample = Sample(**{column: value})
        session.add(sample)
        session.commit()

        (snapshot,) = sample.versions()
        typed = snapshot.typed_data()[column]
        # What the column itself gives back, read from the database.
        stored = session.execute(
            select(getattr(Sample, column)).where(Sample.id == sample.id)
        ).scalar_one()
        assert _same(typed, stored)
        assert _same(typed, value)
        assert _same(getattr(snapshot.reify(), column), stored)

    round_trip()


def test_stored_format(db, Sample):
    sample = Sample(
        amount=Decimal("12.50"),
        ratio=float("nan"),
        big=2**62,
        day=date(2024, 5, 1),
        clock=time(12, 30, 1),
        span=timedelta(days=1, hours=2),
        uid=uuid.UUID(int=1),
        color=Color.RED,
        color_text=Color.GREEN,
        size=Size.LARGE,
        blob=b"\x00\xffab",
        tags=["a", "b"],
        doc={"a": [1, None]},
        naive=datetime(2024, 5, 1, 12, 30),
        body="ünïcødé ✓",
    )
    db.session.add(sample)
    db.session.commit()

    (snapshot,) = sample.versions()
    data = dict(snapshot.chrononaut_data)
    # The formats the original release wrote ...
    assert data["amount"] == "12.50"
    assert data["big"] == 2**62
    assert data["day"] == "2024-05-01"
    assert data["clock"] == "12:30:01"
    assert data["span"] == "1 day, 2:00:00"
    assert data["uid"] == "00000000-0000-0000-0000-000000000001"
    assert data["color"] == "Color.RED"
    assert data["color_text"] == "Color.GREEN"
    assert data["size"] == str(Size.LARGE)
    assert data["naive"] == "2024-05-01T12:30:00+00:00"
    assert data["body"] == "ünïcødé ✓"
    # ... and what JSON could not hold or str() lost.
    assert data["ratio"] == "nan"
    assert data["blob"] == "AP9hYg=="
    assert data["tags"] == ["a", "b"]
    assert data["doc"] == {"a": [1, None]}

    sample.ratio = float("-inf")
    db.session.commit()
    assert sample.versions()[-1].chrononaut_data["ratio"] == "-inf"
    assert sample.versions()[-1].typed_data()["ratio"] == float("-inf")


def test_reify_gives_a_transient_model_instance(db, session, models):
    todo = models.Todo(title="a", secret="s", starred=True)
    session.add(todo)
    session.commit()
    todo.title = "b"
    session.commit()

    first = todo.versions()[0].reify()

    assert type(first) is models.Todo
    assert (first.id, first.title, first.version) == (todo.id, "a", 0)
    assert first.secret is None and first.starred is None
    assert first not in session
    session.commit()
    assert session.get(models.Todo, todo.id).title == "b"


def test_values_of_old_releases_read_back(Sample):
    columns = Sample.__table__.c
    assert deserialize_value("b'\\x00ab'", columns.blob.type) == b"\x00ab"
    assert deserialize_value("['a', 'b']", columns.tags.type) == ["a", "b"]
    assert deserialize_value(1.5, columns.amount.type) == Decimal("1.5")
    assert deserialize_value("r", columns.color.type) is Color.RED
    assert deserialize_value("2024-05-01T12:30:00", columns.aware.type) == datetime(
        2024, 5, 1, 12, 30, tzinfo=timezone.utc
    )


def test_a_snapshot_without_its_model_cannot_be_typed():
    snapshot = HistorySnapshot(
        table_name="t", changed=datetime.now(timezone.utc), version=0, key={}, data={}
    )
    with pytest.raises(ChrononautException, match="does not know its model"):
        snapshot.typed_data()


@pytest.mark.parametrize(
    ("stored", "column_type"),
    [("1 fortnight", Interval()), ("not base64!", LargeBinary()), ("Color.BLUE", Enum(Color))],
)
def test_values_a_column_cannot_hold_are_refused(stored, column_type):
    with pytest.raises(ValueError):
        deserialize_value(stored, column_type)
