"""Stored values as people read them: the missing mark, enum names and the parts of an
edited text that changed."""

from __future__ import annotations

import enum
from itertools import pairwise

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chrononaut.interfaces.display import MISSING, as_text, inline_diff, readable_value
from tests.models import Priority


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (None, "—"),
        ("", ""),
        ("null", "null"),
        ("a\x1bb\nc", r"a\x1bb\nc"),
        (0, "0"),
        (False, "false"),
        ({"a": [1, None]}, '{"a": [1, null]}'),
    ],
)
def test_as_text_prints_missing_values_as_one_mark(value, shown):
    assert MISSING == "—"
    assert as_text(value) == shown


def test_enum_values_read_as_member_names(db, models):
    todo = models.Todo
    assert readable_value(todo, "priority", "Priority.HIGH") == "HIGH"
    # What no member stores, what another column holds, and unknown models: as stored.
    assert readable_value(todo, "priority", "Priority.MEDIUM") == "Priority.MEDIUM"
    assert readable_value(todo, "priority", "HIGH") == "HIGH"
    assert readable_value(todo, "priority", None) is None
    assert readable_value(todo, "title", "Priority.HIGH") == "Priority.HIGH"
    assert readable_value(todo, "no_such_column", "Priority.HIGH") == "Priority.HIGH"
    assert readable_value(None, "priority", "Priority.HIGH") == "Priority.HIGH"
    assert {member.name for member in Priority} == {"LOW", "HIGH"}


def test_str_and_int_enums_are_read_as_they_were_stored(db):
    from sqlalchemy import Enum

    class Size(str, enum.Enum):
        S = "small"

    class Level(enum.IntEnum):
        ONE = 1

    class Gauge(db.Model):
        __tablename__ = "gauge"
        id = db.Column(db.Integer, primary_key=True)
        size = db.Column(Enum(Size))
        level = db.Column(Enum(Level))

    # History stores str(member), whatever Python's version makes of it.
    assert readable_value(Gauge, "size", str(Size.S)) == "S"
    assert readable_value(Gauge, "level", str(Level.ONE)) == "ONE"


def test_an_edited_text_is_marked_where_it_changed():
    diff = inline_diff("Revenue grew 4%.", "Revenue grew 6%, driven by the new plans.")
    assert diff is not None
    assert diff.before == (("Revenue grew ", False), ("4%.", True))
    assert diff.after == (("Revenue grew ", False), ("6%, driven by the new plans.", True))


def test_lines_added_and_removed_are_marked_whole():
    diff = inline_diff("one\ntwo\nthree\n", "one\nthree\nfour\n")
    assert diff is not None
    assert diff.before == (("one\n", False), ("two\n", True), ("three\n", False))
    assert diff.after == (("one\nthree\n", False), ("four\n", True))


@pytest.mark.parametrize(
    ("old", "new"), [("Draft", "Final"), ("", "x"), ("a", None), (1, 2), ("x y", "z")]
)
def test_values_replaced_as_a_whole_are_not_marked(old, new):
    assert inline_diff(old, new) is None


@given(old=st.text(), new=st.text())
def test_the_parts_make_up_both_texts_and_the_unchanged_ones_agree(old, new):
    diff = inline_diff(old, new)
    if diff is None:
        return
    assert "".join(text for text, _ in diff.before) == old
    assert "".join(text for text, _ in diff.after) == new
    kept_before = "".join(text for text, changed in diff.before if not changed)
    kept_after = "".join(text for text, changed in diff.after if not changed)
    assert kept_before == kept_after
    assert kept_before.strip()
    # Neighbouring parts always differ in being changed or not.
    for parts in (diff.before, diff.after):
        assert all(first[1] != second[1] for first, second in pairwise(parts))
        assert all(text for text, _ in parts)


def test_a_large_rewritten_block_is_marked_whole_rather_than_word_by_word():
    old_words = " ".join(f"old{number}" for number in range(600))
    new_words = " ".join(f"new{number}" for number in range(600)) + " old1"
    diff = inline_diff("Title\n" + old_words, "Title\n" + new_words)
    assert diff is not None
    assert diff.before == (("Title\n", False), (old_words, True))
    assert diff.after == (("Title\n", False), (new_words, True))
