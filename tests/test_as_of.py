"""Dated reads of whole models: ``Model.as_of(at)``, ``Model.changed_between()`` and
:func:`~chrononaut.history.dated.stored_value`."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from sqlalchemy import literal, select
from sqlalchemy.dialects.postgresql import JSONB

from chrononaut.history.activity import activity_class_for
from chrononaut.history.dated import stored_value
from chrononaut.history.serialization import deserialize_value
from tests.test_types import STRATEGIES, Color, Sample, Size, _same  # noqa: F401  (a fixture)


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_stored_values_read_back_as_their_column_types(db, Sample, name):  # noqa: F811
    session = db.session
    activity = activity_class_for(Sample).__table__
    column_type = Sample.__table__.c[name].type

    @settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(value=STRATEGIES[name])
    def read_back(value):
        sample = Sample(**{name: value})
        session.add(sample)
        session.commit()

        (snapshot,) = sample.versions()
        typed = session.execute(
            select(stored_value(activity.c.data[name], column_type)).where(
                activity.c.id == snapshot.chrononaut_activity_id
            )
        ).scalar_one()
        assert _same(typed, snapshot.typed_data()[name])

    read_back()


@pytest.mark.parametrize(
    ("name", "stored", "expected"),
    [
        ("amount", 1.5, Decimal("1.5")),
        ("color", "r", Color.RED),
        ("size", 2, Size.LARGE),
        ("aware", "2024-05-01T12:30:00", datetime(2024, 5, 1, 12, 30, tzinfo=timezone.utc)),
        ("aware", "2024-05-01T14:30:00+02:00", datetime(2024, 5, 1, 12, 30, tzinfo=timezone.utc)),
        ("naive", "2024-05-01T14:30:00+02:00", datetime(2024, 5, 1, 12, 30)),
        ("naive", "2024-05-01T12:30:00", datetime(2024, 5, 1, 12, 30)),
        ("ratio", "inf", float("inf")),
        ("span", "-1 day, 23:00:00", timedelta(hours=-1)),
        ("tags", ["\ufdd0a\\\\b"], ["a\\b"]),
        ("doc", {"\ufdd0k": "\ufdd0a\\0"}, {"k": "a\x00"}),
        ("amount", None, None),
    ],
)
def test_other_writers_forms_read_back(db, Sample, name, stored, expected):  # noqa: F811
    """Forms older releases or other writers stored read as deserialize_value reads them."""
    column_type = Sample.__table__.c[name].type
    typed = db.session.execute(
        select(stored_value(literal(stored, JSONB), column_type))
    ).scalar_one()
    assert typed == expected
    assert deserialize_value(stored, column_type) == expected
