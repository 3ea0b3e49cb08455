"""The history queries of the ``Versioned`` mixin: versions, version_at, diffs."""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta, timezone

import pytest

from chrononaut import ChrononautException
from chrononaut.models import HistorySnapshot
from tests.models import Priority

UTC = timezone.utc
ONE_MICROSECOND = timedelta(microseconds=1)
NOT_A_SNAPSHOT = "`from_model` needs to be a history snapshot."
NOT_AN_INTEGER = "The diff_versions method takes integer as its argument."
NOT_A_DATETIME = "The diff_timestamps method takes datetime as its argument."


def _now() -> datetime:
    return datetime.now(UTC)


def _naive_utc(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(tzinfo=None)


def _changed(snapshot: HistorySnapshot) -> datetime:
    return snapshot.chrononaut_meta["changed"]


def _todo_with_titles(session, models, *titles, **values):
    """Commit a Todo once per title (the first creates it); return it."""
    todo = models.Todo(title=titles[0], **values)
    session.add(todo)
    session.commit()
    for title in titles[1:]:
        todo.title = title
        session.commit()
    return todo


def _todo_a_b_c_with_moments(session, models):
    """Commit a Todo titled "a", then "b", then "c"; return it with the moments taken
    before its creation, after its creation and after the first update."""
    before_creation = _now()
    todo = _todo_with_titles(session, models, "a")
    after_creation = _now()
    todo.title = "b"
    session.commit()
    after_update = _now()
    todo.title = "c"
    session.commit()
    return todo, before_creation, after_creation, after_update


# -- versions() -----------------------------------------------------------------------


def test_versions_are_the_objects_own_snapshots_oldest_first(session, models):
    todo = models.Todo(title="a")
    other = models.Todo(title="other")
    session.add_all([todo, other])
    session.commit()
    todo.title = "b"
    other.title = "other 2"
    session.commit()
    todo.title = "c"
    session.commit()

    snapshots = todo.versions()

    assert all(isinstance(snapshot, HistorySnapshot) for snapshot in snapshots)
    assert [snapshot.version for snapshot in snapshots] == [0, 1, 2]
    assert [snapshot.title for snapshot in snapshots] == ["a", "b", "c"]
    changed = [_changed(snapshot) for snapshot in snapshots]
    assert changed == sorted(changed)
    assert len(set(changed)) == 3
    assert [snapshot.title for snapshot in other.versions()] == ["other", "other 2"]


def test_versions_follow_changed_then_id_not_the_order_rows_were_written(db, session, models):
    # Rows another program appended later may be dated earlier, or share a time: the
    # order is `changed`, then `id`, whatever order the rows are stored in.
    todo = _todo_with_titles(session, models, "a", "b")
    first, second = todo.versions()
    activity = db.activity_cls
    for title, changed in (("tie", _changed(second)), ("older", _changed(first) - timedelta(1))):
        session.add(
            activity(
                table_name="todo",
                changed=changed,
                version=9,
                key={"id": todo.id},
                data={"id": todo.id, "title": title, "version": 9},
            )
        )
        session.commit()
    expected = ["older", "a", "b", "tie"]

    assert [snapshot.title for snapshot in todo.versions()] == expected
    assert [row.data["title"] for row in todo.versions(return_query=True)] == expected
    assert [snapshot.title for snapshot in todo.versions(before=_changed(second))] == expected
    assert [snapshot.title for snapshot in todo.versions(after=_changed(first))] == expected[1:]
    assert [
        row.data["title"] for row in todo.versions(after=_changed(first), return_query=True)
    ] == expected[1:]
    unordered = [snapshot.title for snapshot in todo.versions(ordered=False)]
    assert sorted(unordered) == sorted(expected)
    assert todo.version_at(_changed(second)).title == "tie"


def test_versions_bounds_are_inclusive_on_changed(session, models):
    todo = _todo_with_titles(session, models, "a", "b", "c")
    first, second, third = (_changed(snapshot) for snapshot in todo.versions())

    def titles(**bounds):
        return [snapshot.title for snapshot in todo.versions(**bounds)]

    assert titles(before=second) == ["a", "b"]
    assert titles(after=second) == ["b", "c"]
    assert titles(after=second, before=second) == ["b"]
    assert titles(after=first, before=third) == ["a", "b", "c"]
    assert titles(before=first - ONE_MICROSECOND) == []
    assert titles(after=third + ONE_MICROSECOND) == []
    assert titles(after=first + ONE_MICROSECOND, before=third - ONE_MICROSECOND) == ["b"]


def test_versions_bounds_between_commits(session, models):
    todo, before_creation, after_creation, after_update = _todo_a_b_c_with_moments(session, models)

    def titles(**bounds):
        return [snapshot.title for snapshot in todo.versions(**bounds)]

    assert titles(before=before_creation) == []
    assert titles(before=after_creation) == ["a"]
    assert titles(after=after_creation) == ["b", "c"]
    assert titles(after=after_creation, before=after_update) == ["b"]
    assert titles(after=_now()) == []


def test_versions_takes_naive_bounds_as_utc(tokyo_session, models):
    todo = _todo_with_titles(tokyo_session, models, "a", "b", "c")
    second = _changed(todo.versions()[1])

    before = [snapshot.title for snapshot in todo.versions(before=_naive_utc(second))]
    after = [snapshot.title for snapshot in todo.versions(after=_naive_utc(second))]

    assert before == ["a", "b"]
    assert after == ["b", "c"]


def test_versions_unordered_returns_the_same_snapshots(session, models):
    todo = _todo_with_titles(session, models, "a", "b", "c")

    unordered = todo.versions(ordered=False)

    assert sorted(unordered, key=lambda snapshot: snapshot.version) == todo.versions()


def test_versions_return_query_gives_activity_rows(db, session, models):
    activity = db.metadata._activity_cls
    todo = _todo_with_titles(session, models, "a", "b", "c")
    session.add(models.Todo(title="other"))
    session.commit()
    second = _changed(todo.versions()[1])

    query = todo.versions(return_query=True)

    assert query.count() == 3
    assert query.filter(activity.version >= 1).count() == 2
    rows = query.all()
    assert all(isinstance(row, activity) for row in rows)
    assert [row.data["title"] for row in rows] == ["a", "b", "c"]
    before = todo.versions(before=second, return_query=True)
    assert [row.data["title"] for row in before] == ["a", "b"]
    unordered = todo.versions(after=second, ordered=False, return_query=True)
    assert sorted(row.data["title"] for row in unordered) == ["b", "c"]


# -- version_at() ---------------------------------------------------------------------


def test_version_at(session, models):
    before_creation = _now()
    todo = _todo_with_titles(session, models, "a", "b")
    first, second = todo.versions()

    assert todo.version_at(before_creation) is None
    assert todo.version_at(_changed(first) - ONE_MICROSECOND) is None
    assert todo.version_at(_changed(first)) == first
    assert todo.version_at(_changed(second) - ONE_MICROSECOND) == first
    assert todo.version_at(_changed(second)) == second
    assert todo.version_at(_now()) == second


def test_version_at_return_snapshot_gives_the_stored_data(session, models):
    before_creation = _now()
    todo = _todo_with_titles(session, models, "a", "b", secret="s")
    first = todo.versions()[0]

    data = todo.version_at(_now(), return_snapshot=True)

    assert type(data) is dict
    assert data == {
        "id": todo.id,
        "title": "b",
        "text": None,
        "done": False,
        "priority": None,
        "due_at": None,
        "version": 1,
    }
    assert todo.version_at(_changed(first), True)["title"] == "a"
    assert todo.version_at(before_creation, return_snapshot=True) is None
    data["title"] = "changed"  # a copy: the snapshot is untouched
    assert todo.version_at(_now()).title == "b"


def test_version_at_between_commits(session, models):
    todo = _todo_with_titles(session, models, "a")
    after_creation = _now()
    todo.title = "b"
    session.commit()

    assert todo.version_at(after_creation).title == "a"
    assert todo.version_at(_now()).title == "b"


def test_version_at_takes_naive_time_as_utc(tokyo_session, models):
    todo = _todo_with_titles(tokyo_session, models, "a", "b")
    first, second = todo.versions()

    assert todo.version_at(_naive_utc(_changed(second))) == second
    assert todo.version_at(_naive_utc(_changed(second)) - ONE_MICROSECOND) == first
    assert todo.version_at(_naive_utc(_changed(first)) - ONE_MICROSECOND) is None


# -- previous_version() ---------------------------------------------------------------


def test_previous_version(session, models):
    todo = _todo_with_titles(session, models, "a")
    assert todo.previous_version() is None

    todo.title = "b"
    session.commit()
    assert todo.previous_version() == todo.versions()[0]

    todo.title = "c"
    session.commit()
    previous = todo.previous_version()
    assert (previous.version, previous.title) == (1, "b")

    todo.starred = True  # untracked: no new version
    session.commit()
    assert todo.previous_version().version == 1

    todo.secret = "s"  # hidden: a new version
    session.commit()
    previous = todo.previous_version()
    assert (previous.version, previous.title) == (2, "c")


# -- has_changed_since() --------------------------------------------------------------


def test_has_changed_since_is_false_without_later_changes(session, models):
    todo = _todo_with_titles(session, models, "a", "b")
    since = _now()
    assert todo.has_changed_since(since) is False

    todo.starred = True  # untracked changes make no version
    session.commit()
    assert todo.has_changed_since(since) is False


def test_has_changed_since_sees_a_tracked_change(session, models):
    todo = _todo_with_titles(session, models, "a")
    since = _now()
    todo.title = "b"
    session.commit()

    assert todo.has_changed_since(since) is True
    assert todo.has_changed_since(_now()) is False


def test_has_changed_since_sees_a_hidden_only_change(session, models):
    # A documented choice: a change of a hidden column alone counts as a change.
    todo = _todo_with_titles(session, models, "a", secret="old")
    since = _now()
    todo.secret = "new"
    session.commit()

    assert todo.has_changed_since(since) is True


def test_has_changed_since_sees_a_creation(session, models):
    since = _now()
    todo = _todo_with_titles(session, models, "a")

    assert todo.has_changed_since(since) is True


# -- diff() ---------------------------------------------------------------------------


def test_diff_between_two_snapshots(session, models):
    todo = _todo_with_titles(session, models, "a", "b")
    todo.text = "details"
    todo.done = True
    session.commit()
    first, second, third = todo.versions()

    assert todo.diff(first, second) == {"title": ("a", "b")}
    assert todo.diff(second, third) == {"text": (None, "details"), "done": (False, True)}
    assert todo.diff(first, first) == {}


def test_diff_to_defaults_to_the_newest_snapshot(session, models):
    todo = _todo_with_titles(session, models, "a", "b", "c")
    first, second, _ = todo.versions()

    assert todo.diff(first) == {"title": ("a", "c")}
    assert todo.diff(second) == {"title": ("b", "c")}


def test_diff_from_none_makes_everything_new(session, models):
    due_at = datetime(2024, 5, 1, 12, 30, tzinfo=UTC)
    todo = _todo_with_titles(
        session,
        models,
        "a",
        text="t",
        done=True,
        priority=Priority.HIGH,
        due_at=due_at,
        starred=True,
        secret="s",
    )

    assert todo.diff(None) == {
        "id": (None, todo.id),
        "title": (None, "a"),
        "text": (None, "t"),
        "done": (None, True),
        "priority": (None, "Priority.HIGH"),
        "due_at": (None, "2024-05-01T12:30:00+00:00"),
    }


def test_diff_include_hidden_adds_the_current_value(session, models):
    todo = _todo_with_titles(session, models, "a", secret="s0")
    todo.secret = "s1"
    session.commit()
    todo.title = "b"
    session.commit()
    first, second, third = todo.versions()

    assert todo.diff(first) == {"title": ("a", "b")}
    assert todo.diff(first, include_hidden=True) == {"title": ("a", "b"), "secret": (None, "s1")}
    assert todo.diff(first, second, include_hidden=True) == {"secret": (None, "s1")}
    # The hidden change is not between the second and third snapshots.
    assert todo.diff(second, include_hidden=True) == {"title": ("a", "b")}
    assert todo.diff(second, third, include_hidden=True) == {"title": ("a", "b")}

    todo.secret = "s2"
    session.commit()
    assert todo.diff(first, second, include_hidden=True) == {"secret": (None, "s2")}


def test_diff_never_shows_hidden_columns_or_version_otherwise(session, models):
    user = models.User(name="ann", email="ann@example.com", password="p0")
    session.add(user)
    session.commit()
    user.password = "p1"
    session.commit()
    user.name = "anne"
    user.password = "p2"
    session.commit()
    snapshots = user.versions()

    assert [snapshot.version for snapshot in snapshots] == [0, 1, 2]
    assert user.diff(snapshots[0]) == {"name": ("ann", "anne")}
    assert user.diff(snapshots[0], snapshots[1]) == {}
    assert "password" not in user.diff(None)
    assert "version" not in user.diff(None)
    assert user.diff(snapshots[0], include_hidden=True) == {
        "name": ("ann", "anne"),
        "password": (None, "p2"),
    }


@pytest.mark.parametrize("kind", ["model", "dict", "int", "str"])
def test_diff_rejects_what_is_not_a_snapshot(session, models, kind):
    todo = _todo_with_titles(session, models, "a", "b")
    from_model = {"model": todo, "dict": {"title": "a"}, "int": 0, "str": "0"}[kind]

    with pytest.raises(ChrononautException, match=f"^{re.escape(NOT_A_SNAPSHOT)}$"):
        todo.diff(from_model)


# -- diff_versions() ------------------------------------------------------------------


def test_diff_versions(session, models):
    todo = _todo_with_titles(session, models, "a", "b", "c", secret="s0")
    todo.secret = "s1"
    session.commit()

    assert todo.diff_versions(0, 1) == {"title": ("a", "b")}
    assert todo.diff_versions(1, 2) == {"title": ("b", "c")}
    assert todo.diff_versions(0) == {"title": ("a", "c")}
    assert todo.diff_versions(2) == {}
    assert todo.diff_versions(2, include_hidden=True) == {"secret": (None, "s1")}


@pytest.mark.parametrize(
    ("from_version", "to_version"),
    [("0", None), (0.0, None), (None, None), (True, None), (0, "1"), (0, 1.0), (0, True)],
)
def test_diff_versions_takes_integers_only(session, models, from_version, to_version):
    todo = _todo_with_titles(session, models, "a", "b")

    with pytest.raises(ChrononautException, match=f"^{re.escape(NOT_AN_INTEGER)}$"):
        todo.diff_versions(from_version, to_version)


# -- diff_timestamps() ----------------------------------------------------------------


def test_diff_timestamps(session, models):
    todo, before_creation, after_creation, after_update = _todo_a_b_c_with_moments(session, models)

    assert todo.diff_timestamps(after_creation, after_update) == {"title": ("a", "b")}
    assert todo.diff_timestamps(after_creation) == {"title": ("a", "c")}
    assert todo.diff_timestamps(after_update) == {"title": ("b", "c")}
    assert todo.diff_timestamps(_now()) == {}
    assert todo.diff_timestamps(before_creation)["title"] == (None, "c")


def test_diff_timestamps_takes_naive_times_as_utc(tokyo_session, models):
    todo = _todo_with_titles(tokyo_session, models, "a", "b", "c")
    first, second, _ = (_naive_utc(_changed(snapshot)) for snapshot in todo.versions())

    assert todo.diff_timestamps(first, second) == {"title": ("a", "b")}
    assert todo.diff_timestamps(second) == {"title": ("b", "c")}


def test_diff_timestamps_include_hidden(session, models):
    todo = _todo_with_titles(session, models, "a", secret="s0")
    since = _now()
    todo.secret = "s1"
    session.commit()

    assert todo.diff_timestamps(since) == {}
    assert todo.diff_timestamps(since, include_hidden=True) == {"secret": (None, "s1")}


@pytest.mark.parametrize(
    ("from_timestamp", "to_timestamp"),
    [
        ("2024-01-01T00:00:00+00:00", None),
        (date(2024, 1, 1), None),
        (0, None),
        (None, None),
        (datetime(2024, 1, 1, tzinfo=UTC), date(2024, 1, 2)),
        (datetime(2024, 1, 1, tzinfo=UTC), "2024-01-02"),
    ],
)
def test_diff_timestamps_takes_datetimes_only(session, models, from_timestamp, to_timestamp):
    todo = _todo_with_titles(session, models, "a", "b")

    with pytest.raises(ChrononautException, match=f"^{re.escape(NOT_A_DATETIME)}$"):
        todo.diff_timestamps(from_timestamp, to_timestamp)


def test_diff_timestamps_must_be_chronological(session, models):
    todo = _todo_with_titles(session, models, "a", "b")
    later = _now()

    with pytest.raises(ChrononautException, match=f"^{re.escape('Diffs must be chronological.')}"):
        todo.diff_timestamps(later, later - timedelta(seconds=1))


# -- history of other mappings --------------------------------------------------------


def test_joined_table_inheritance(session, models):
    dog = models.Dog(name="rex", breed="lab")
    session.add(dog)
    session.commit()
    dog.breed = "beagle"
    session.commit()
    dog.name = "max"  # a column of the base table
    session.commit()
    dog_id = dog.id
    session.expunge_all()

    loaded = session.get(models.Animal, dog_id)
    snapshots = loaded.versions()

    assert isinstance(loaded, models.Dog)
    assert [snapshot.version for snapshot in snapshots] == [0, 1, 2]
    assert [(snapshot.name, snapshot.breed) for snapshot in snapshots] == [
        ("rex", "lab"),
        ("rex", "beagle"),
        ("max", "beagle"),
    ]
    assert snapshots[0].kind == "dog"
    assert snapshots[0].chrononaut_key == {"id": dog_id}
    assert snapshots[0].chrononaut_meta["table_name"] == "dog"
    assert loaded.diff_versions(0) == {"breed": ("lab", "beagle"), "name": ("rex", "max")}


def test_single_table_inheritance(session, models):
    cat = models.Cat(name="tom", indoor=True)
    animal = models.Animal(name="generic")
    session.add_all([cat, animal])
    session.commit()
    cat.indoor = False
    session.commit()

    snapshots = cat.versions()

    assert [(snapshot.version, snapshot.indoor) for snapshot in snapshots] == [
        (0, True),
        (1, False),
    ]
    assert snapshots[0].kind == "cat"
    assert snapshots[0].name == "tom"
    assert snapshots[0].chrononaut_meta["table_name"] == "animal"
    assert [snapshot.name for snapshot in animal.versions()] == ["generic"]


def test_composite_primary_key(session, models):
    english = models.Translation(locale="en", slug="hello", text="Hello")
    german = models.Translation(locale="de", slug="hello", text="Hallo")
    session.add_all([english, german])
    session.commit()
    english.text = "Hi"
    session.commit()

    snapshots = english.versions()

    assert [snapshot.text for snapshot in snapshots] == ["Hello", "Hi"]
    assert snapshots[0].chrononaut_key == {"locale": "en", "slug": "hello"}
    assert (snapshots[0].locale, snapshots[0].slug) == ("en", "hello")
    assert [snapshot.text for snapshot in german.versions()] == ["Hallo"]
    assert english.diff_versions(0) == {"text": ("Hello", "Hi")}


def test_text_primary_key(session, models):
    netherlands = models.Country(code="NL", name="Holland")
    belgium = models.Country(code="BE", name="Belgium")
    session.add_all([netherlands, belgium])
    session.commit()
    netherlands.name = "Netherlands"
    session.commit()

    snapshots = netherlands.versions()

    assert [snapshot.name for snapshot in snapshots] == ["Holland", "Netherlands"]
    assert snapshots[0].chrononaut_key == {"code": "NL"}
    assert snapshots[1].code == "NL"
    assert [snapshot.name for snapshot in belgium.versions()] == ["Belgium"]


def test_attribute_names_differing_from_column_names(session, models):
    gadget = models.Gadget(display_name="Widget")
    session.add(gadget)
    session.commit()
    gadget.display_name = "Gizmo"
    session.commit()

    snapshots = gadget.versions()

    assert [snapshot.display_name for snapshot in snapshots] == ["Widget", "Gizmo"]
    assert snapshots[0].chrononaut_key == {"gadget_id": gadget.gadget_id}
    assert snapshots[0].chrononaut_data == {
        "gadget_id": gadget.gadget_id,
        "display_name": "Widget",
        "version": 0,
    }
    assert snapshots[0].gadget_id == gadget.gadget_id
    with pytest.raises(AttributeError):
        snapshots[0].DisplayName  # noqa: B018
    assert gadget.diff_versions(0, 1) == {"display_name": ("Widget", "Gizmo")}
    assert gadget.version_at(_now()) == snapshots[1]
