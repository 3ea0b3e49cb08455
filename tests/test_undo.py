"""Undo: ``obj.revert_to()``, ``Model.undelete()`` and ``db.revert_transaction()``."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import String, Text, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, mapped_column

from chrononaut import Versioned, VersionedSession, append_change_info, rationale
from chrononaut.exceptions import ChrononautException, InvalidArgumentError
from chrononaut.history.lives import deleted_condition, operation_of
from chrononaut.history.snapshot import HistorySnapshot
from chrononaut.unsafe import suppress_versioning
from tests.models import Priority

EARLY = datetime(2024, 5, 1, 12, 30, tzinfo=timezone.utc)
LATE = datetime(2025, 1, 2, 3, 4, tzinfo=timezone.utc)


def _rows(db: Any, table_name: str) -> list[tuple[Any, ...]]:
    """``(key, version, operation, extra_info)`` of a table's rows, in history order."""
    return [
        tuple(row)
        for row in db.session.execute(
            text(
                "SELECT key, version, operation, extra_info FROM chrononaut_activity "
                "WHERE table_name = :table_name ORDER BY changed, id"
            ),
            {"table_name": table_name},
        )
    ]


def _table(db: Any, table_name: str) -> list[tuple[Any, ...]]:
    return [
        tuple(row) for row in db.session.execute(text(f"SELECT * FROM {table_name} ORDER BY 1"))
    ]


def _unchanged(session: Any) -> bool:
    return not (session.new or session.dirty or session.deleted)


def _todo_with_three_versions(session: Any, models: Any) -> Any:
    todo = models.Todo(title="first", text="a", done=False, priority=Priority.LOW, due_at=EARLY)
    session.add(todo)
    session.commit()
    todo.title, todo.priority, todo.due_at = "second", Priority.HIGH, LATE
    session.commit()
    todo.title, todo.done, todo.text = "third", True, None
    session.commit()
    return todo


# -- revert_to ---------------------------------------------------------------------------


def test_revert_to_a_version_sets_the_tracked_values_back_as_a_new_version(session, models, db):
    todo = _todo_with_three_versions(session, models)
    todo.secret, todo.starred = "kept secret", True
    session.commit()

    todo.revert_to(0)
    # Python values of the columns, before anything is flushed.
    assert (todo.title, todo.text, todo.done, todo.priority, todo.due_at) == (
        "first",
        "a",
        False,
        Priority.LOW,
        EARLY,
    )
    session.commit()

    session.expire_all()
    assert (todo.title, todo.text, todo.done, todo.priority, todo.due_at) == (
        "first",
        "a",
        False,
        Priority.LOW,
        EARLY,
    )
    # Hidden and untracked attributes keep their values.
    assert (todo.secret, todo.starred) == ("kept secret", True)
    assert todo.version == 4
    *_, (_, version, operation, extra_info) = _rows(db, "todo")
    assert (version, operation, extra_info) == (4, "update", {"reverted_to": 0})
    assert todo.versions()[-1].chrononaut_data == {
        **todo.versions()[0].chrononaut_data,
        "version": 4,
    }


def test_revert_to_a_snapshot_of_the_object(session, models, db):
    todo = _todo_with_three_versions(session, models)
    second = todo.versions()[1]

    todo.revert_to(second)
    session.commit()

    assert (todo.title, todo.priority, todo.due_at, todo.done) == (
        "second",
        Priority.HIGH,
        LATE,
        False,
    )
    assert todo.diff(second, todo.versions()[-1]) == {}
    assert _rows(db, "todo")[-1][3] == {"reverted_to": 1}


def test_the_callers_change_info_is_recorded_with_reverted_to(session, models, db):
    todo = _todo_with_three_versions(session, models)

    todo.revert_to(1)
    append_change_info(todo, ticket="T-42")
    with rationale("the third edit was a mistake"):
        session.commit()

    assert _rows(db, "todo")[-1][3] == {
        "rationale": "the third edit was a mistake",
        "ticket": "T-42",
        "reverted_to": 1,
    }
    # The note is recorded once: the next change does not carry it.
    todo.title = "later"
    session.commit()
    assert _rows(db, "todo")[-1][3] == {}


def test_a_rolled_back_revert_leaves_no_note_for_the_next_change(session, models, db):
    todo = _todo_with_three_versions(session, models)
    todo.revert_to(0)
    session.flush()
    session.rollback()

    todo.text = "a later change"
    session.commit()

    assert todo.title == "third"
    assert _rows(db, "todo")[-1][1:] == (3, "update", {})


def test_revert_to_replaces_unflushed_changes_without_recording_them(session, models, db):
    todo = _todo_with_three_versions(session, models)

    todo.title = "never recorded"
    todo.revert_to(0)
    session.commit()

    assert todo.title == "first"
    assert [row[1] for row in _rows(db, "todo")] == [0, 1, 2, 3]
    assert "never recorded" not in {snapshot.title for snapshot in todo.versions()}


def test_revert_to_a_snapshot_built_by_hand_finds_its_row(session, models):
    todo = _todo_with_three_versions(session, models)
    first = todo.versions()[0]
    copy = HistorySnapshot(
        table_name=first.chrononaut_meta["table_name"],
        changed=first.chrononaut_changed,
        version=first.chrononaut_version,
        key=first.chrononaut_key,
        data=first.chrononaut_data,
        user_info=first.chrononaut_user_info,
        extra_info=first.chrononaut_extra_info,
    )

    todo.revert_to(copy)
    session.commit()

    assert (todo.title, todo.priority) == ("first", Priority.LOW)


def test_revert_to_the_current_state_changes_and_records_nothing(session, models, db):
    todo = _todo_with_three_versions(session, models)

    todo.revert_to(2)
    assert _unchanged(session)
    session.commit()
    todo.title = "next"
    session.commit()

    assert [(version, extra) for _, version, _, extra in _rows(db, "todo")] == [
        (0, {}),
        (1, {}),
        (2, {}),
        (3, {}),
    ]


def test_revert_to_the_state_recorded_by_a_delete_of_an_earlier_object(session, models, db):
    old = models.Tag(name="old")
    session.add(old)
    session.commit()
    old.name = "old, renamed"
    session.commit()
    tag_id = old.id
    session.delete(old)
    session.commit()
    new = models.Tag(id=tag_id, name="new")
    session.add(new)
    session.commit()
    delete_row = new.versions()[2]
    assert delete_row.chrononaut_operation == "delete"

    new.revert_to(delete_row)
    session.commit()

    assert (new.name, new.version) == ("old, renamed", 1)
    assert _rows(db, "tag")[-1][1:] == (1, "update", {"reverted_to": 2})


def test_a_version_number_counts_from_the_objects_own_creation(session, models):
    old = models.Tag(name="old 0")
    session.add(old)
    session.commit()
    for name in ("old 1", "old 2", "old 3"):
        old.name = name
        session.commit()
    tag_id = old.id
    session.delete(old)
    session.commit()
    new = models.Tag(id=tag_id, name="new 0")
    session.add(new)
    session.commit()

    with pytest.raises(InvalidArgumentError, match="has no version 3"):
        new.revert_to(3)
    assert new.name == "new 0"
    assert _unchanged(session)


@pytest.mark.parametrize("wanted", ["1", 1.0, True, None])
def test_revert_to_takes_a_snapshot_or_an_integer(session, models, db, wanted):
    todo = _todo_with_three_versions(session, models)
    rows = _rows(db, "todo")

    with pytest.raises(InvalidArgumentError, match="takes a HistorySnapshot"):
        todo.revert_to(wanted)

    assert _unchanged(session)
    assert todo.title == "third"
    session.commit()
    assert _rows(db, "todo") == rows


def test_revert_to_refuses_a_version_that_does_not_exist(session, models, db):
    todo = _todo_with_three_versions(session, models)

    for version in (3, -1):
        with pytest.raises(InvalidArgumentError, match=f"has no version {version}"):
            todo.revert_to(version)

    assert _unchanged(session)
    assert len(_rows(db, "todo")) == 3


def test_revert_to_refuses_a_snapshot_of_another_object_or_model(session, models, db):
    todo = _todo_with_three_versions(session, models)
    other = models.Todo(title="other")
    tag = models.Tag(id=todo.id, name="a tag with the same id")
    session.add_all([other, tag])
    session.commit()
    rows = _rows(db, "todo")

    for snapshot in (other.versions()[0], tag.versions()[0]):
        with pytest.raises(InvalidArgumentError, match="is not one of Todo"):
            todo.revert_to(snapshot)

    assert _unchanged(session)
    assert todo.title == "third"
    assert _rows(db, "todo") == rows


def test_revert_to_with_a_composite_key(session, models, db):
    translation = models.Translation(locale="de", slug="hello", text="Hallo")
    neighbour = models.Translation(locale="de", slug="bye", text="Tschüss")
    session.add_all([translation, neighbour])
    session.commit()
    translation.text = "Servus"
    session.commit()

    with pytest.raises(InvalidArgumentError, match="is not one of Translation"):
        translation.revert_to(neighbour.versions()[0])
    translation.revert_to(0)
    session.commit()

    assert translation.text == "Hallo"
    assert _rows(db, "translation")[-1] == (
        {"locale": "de", "slug": "hello"},
        2,
        "update",
        {"reverted_to": 0},
    )


def test_revert_to_with_inheritance(session, models, db):
    dog = models.Dog(name="Rex", breed="collie")
    cat = models.Cat(name="Tom", indoor=True)
    session.add_all([dog, cat])
    session.commit()
    dog.name, dog.breed = "Max", "poodle"
    cat.indoor = False
    session.commit()

    dog.revert_to(0)
    cat.revert_to(cat.versions()[0])
    session.commit()

    session.expire_all()
    assert (dog.name, dog.breed, dog.kind, dog.version) == ("Rex", "collie", "dog", 2)
    assert (cat.indoor, cat.kind, cat.version) == (True, "cat", 2)
    assert _rows(db, "dog")[-1][1:] == (2, "update", {"reverted_to": 0})


@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    titles=st.lists(st.text(max_size=20).filter(lambda t: "\x00" not in t), min_size=1, max_size=5),
    pick=st.integers(min_value=0),
)
def test_revert_to_any_version_brings_back_its_values(session, models, titles, pick):
    todo = models.Todo(title="start", done=False)
    session.add(todo)
    session.commit()
    for number, title in enumerate(titles):
        todo.title, todo.done = title, number % 2 == 0
        session.commit()
    target = todo.versions()[pick % (len(titles) + 1)]

    todo.revert_to(target.chrononaut_version)
    session.commit()

    assert (todo.title, todo.done) == (target.title, target.done)
    assert todo.diff(target, todo.versions()[-1]) == {}


# -- undelete ----------------------------------------------------------------------------


def test_undelete_brings_an_object_back_under_its_key(session, models, db):
    todo = _todo_with_three_versions(session, models)
    todo.secret, todo.starred = "a secret", True
    session.commit()
    todo_id = todo.id
    session.delete(todo)
    session.commit()

    restored = models.Todo.undelete(todo_id)
    assert restored in session.new
    with rationale("deleted by mistake"):
        session.commit()

    session.expire_all()
    again = session.get(models.Todo, todo_id)
    assert again is restored
    assert (again.title, again.text, again.done, again.priority, again.due_at) == (
        "third",
        None,
        True,
        Priority.HIGH,
        LATE,
    )
    # Never stored: the hidden column comes back empty, the untracked one as its default.
    assert (again.secret, again.starred) == (None, False)
    assert again.version == 5
    assert [row[1:3] for row in _rows(db, "todo")] == [
        (0, "insert"),
        (1, "update"),
        (2, "update"),
        (3, "update"),
        (4, "delete"),
        (5, "insert"),
    ]
    assert _rows(db, "todo")[-1][3] == {"rationale": "deleted by mistake", "undeleted": True}
    # Its history carries on: the versions before the delete are its own.
    again.revert_to(1)
    session.commit()
    assert again.title == "second"


def test_undelete_with_a_composite_key(session, models, db):
    session.add(models.Translation(locale="fr", slug="hello", text="Bonjour"))
    session.commit()
    session.delete(session.get(models.Translation, ("fr", "hello")))
    session.commit()

    with pytest.raises(InvalidArgumentError, match="composite primary key"):
        models.Translation.undelete("fr")
    with pytest.raises(InvalidArgumentError, match="has the attributes locale, slug"):
        models.Translation.undelete({"locale": "fr"})
    assert _unchanged(session)
    restored = models.Translation.undelete({"slug": "hello", "locale": "fr"})
    session.commit()

    assert (restored.locale, restored.slug, restored.text, restored.version) == (
        "fr",
        "hello",
        "Bonjour",
        2,
    )
    assert _rows(db, "translation")[-1] == (
        {"locale": "fr", "slug": "hello"},
        2,
        "insert",
        {"undeleted": True},
    )


def test_undelete_with_inheritance_makes_the_subclass_that_was_deleted(session, models, db):
    dog = models.Dog(name="Rex", breed="collie")
    cat = models.Cat(name="Tom", indoor=True)
    animal = models.Animal(name="Generic")
    session.add_all([dog, cat, animal])
    session.commit()
    ids = dog.id, cat.id, animal.id
    for obj in (dog, cat, animal):
        session.delete(obj)
    session.commit()

    with pytest.raises(InvalidArgumentError, match="was a Animal, not a Cat"):
        models.Cat.undelete(ids[2])
    dog_back = models.Animal.undelete(ids[0])
    cat_back = models.Animal.undelete(ids[1])
    animal_back = models.Animal.undelete(ids[2])
    session.commit()

    session.expire_all()
    assert type(session.get(models.Animal, ids[0])) is models.Dog
    assert (dog_back.name, dog_back.breed, dog_back.version) == ("Rex", "collie", 2)
    assert type(cat_back) is models.Cat
    assert (cat_back.indoor, cat_back.kind) == (True, "cat")
    assert type(animal_back) is models.Animal
    assert _rows(db, "dog")[-1][1:] == (2, "insert", {"undeleted": True})


def test_undo_with_attribute_names_that_differ_from_column_names(session, models, db):
    gadget = models.Gadget(display_name="Widget")
    country = models.Country(code="NZ", name="New Zealand")
    session.add_all([gadget, country])
    session.commit()
    gadget.display_name = "Gizmo"
    session.commit()
    gadget.revert_to(0)
    session.delete(country)
    session.commit()

    restored = models.Country.undelete("NZ")
    session.commit()

    assert gadget.display_name == "Widget"
    assert _rows(db, "gadget")[-1][1:] == (2, "update", {"reverted_to": 0})
    assert (restored.code, restored.name, restored.version) == ("NZ", "New Zealand", 2)
    assert _rows(db, "country")[-1] == ({"code": "NZ"}, 2, "insert", {"undeleted": True})


def test_undelete_refuses_a_live_key_a_key_never_recorded_and_a_bad_key(session, models, db):
    todo = models.Todo(title="live")
    session.add(todo)
    session.commit()

    with pytest.raises(InvalidArgumentError, match="exists: undelete brings back deleted"):
        models.Todo.undelete(todo.id)
    with pytest.raises(InvalidArgumentError, match="was ever recorded"):
        models.Todo.undelete(todo.id + 1)
    with pytest.raises(InvalidArgumentError, match="has the attributes id"):
        models.Todo.undelete({"title": "live"})
    with pytest.raises(InvalidArgumentError, match="no None"):
        models.Todo.undelete(None)

    assert _unchanged(session)
    assert len(_rows(db, "todo")) == 1


def test_undelete_refuses_an_object_deleted_without_history(session, models, db):
    todo = models.Todo(title="gone quietly")
    session.add(todo)
    session.commit()
    todo_id = todo.id
    with suppress_versioning():
        session.delete(todo)
        session.commit()

    with pytest.raises(InvalidArgumentError, match="is an insert, not a delete"):
        models.Todo.undelete(todo_id)

    assert _unchanged(session)
    assert _table(db, "todo") == []


def test_undelete_of_a_hidden_not_null_column_without_default_fails_cleanly(db, models):
    class Account(db.Model, Versioned):
        __tablename__ = "account"
        __chrononaut_hidden__ = ["password_hash"]
        id: Mapped[int] = mapped_column(primary_key=True)
        name: Mapped[str] = mapped_column(String(40))
        password_hash: Mapped[str] = mapped_column(Text)

    db.create_all()
    session = db.session
    account = Account(name="ann", password_hash="x1")
    session.add(account)
    session.commit()
    account_id = account.id
    session.delete(account)
    session.commit()

    with pytest.raises(ChrononautException, match="password_hash may not be NULL"):
        Account.undelete(account_id)

    assert _unchanged(session)
    session.commit()
    assert _table(db, "account") == []
    assert [row[2] for row in _rows(db, "account")] == ["insert", "delete"]


def test_undelete_after_a_delete_recorded_without_its_operation(session, models, db):
    # A delete recorded by Chrononaut 0.5, undone after the upgrade: the rule of
    # history/lives must still read the old row as the delete it was.
    tag = models.Tag(name="old")
    session.add(tag)
    session.commit()
    tag_id = tag.id
    session.delete(tag)
    session.commit()
    with suppress_versioning(allow_deleting_history=True):
        session.execute(text("UPDATE chrononaut_activity SET operation = NULL"))
        session.commit()

    restored = models.Tag.undelete(tag_id)
    session.commit()

    snapshots = restored.versions()
    following = [*snapshots[1:], None]
    assert [operation_of(s, n, True) for s, n in zip(snapshots, following, strict=True)] == [
        "insert",
        "delete",
        "insert",
    ]
    activity = db.activity_cls.__table__
    deletes = session.execute(
        select(deleted_condition(activity, activity, models.Tag.__mapper__))
        .where(activity.c.table_name == "tag")
        .order_by(activity.c.changed, activity.c.id)
    ).scalars()
    assert list(deletes) == [False, True, False]


def test_undelete_needs_the_time_travel_columns(session, models, db):
    tag = models.Tag(name="old")
    session.add(tag)
    session.commit()
    tag_id = tag.id
    session.delete(tag)
    session.commit()
    session.execute(text("ALTER TABLE chrononaut_activity DROP COLUMN operation"))
    session.execute(text("ALTER TABLE chrononaut_activity DROP COLUMN transaction_id"))
    session.commit()
    db.engine.dispose()

    with pytest.raises(ChrononautException, match=r"docs/migration\.rst"):
        models.Tag.undelete(tag_id)
    assert _unchanged(session)


# -- revert_transaction ------------------------------------------------------------------


def _transaction_of(obj: Any) -> int:
    transaction_id: int = obj.versions()[-1].chrononaut_transaction_id
    return transaction_id


def _everything(db: Any) -> tuple[Any, ...]:
    """The data of every table the transaction tests use, and the whole history."""
    history = db.session.execute(
        text("SELECT table_name, key, version, data FROM chrononaut_activity ORDER BY id")
    ).all()
    tables = (
        "todo",
        "tag",
        "author",
        "book",
        "shelf",
        "item",
        "animal",
        "dog",
        "translation",
        "appuser",
    )
    return (*(_table(db, name) for name in tables), [tuple(row) for row in history])


def _two_models_changed_in_one_transaction(session: Any, models: Any) -> tuple[Any, ...]:
    """Commit a Todo and three Tags, then one transaction that inserts, updates and
    deletes objects of both models; return the objects and the transaction's id."""
    kept = models.Todo(title="kept", priority=Priority.LOW, secret="s1")
    renamed = models.Tag(name="renamed")
    removed = models.Tag(name="removed")
    session.add_all([kept, renamed, removed])
    session.commit()

    kept.title, kept.priority, kept.secret = "edited", Priority.HIGH, "s2"
    added_todo = models.Todo(title="added")
    added_tag = models.Tag(name="added")
    renamed.name = "renamed, once"
    session.add_all([added_todo, added_tag])
    session.flush()
    renamed.name = "renamed, twice"
    session.delete(removed)
    session.commit()
    return kept, renamed, removed.id, added_todo, added_tag, _transaction_of(kept)


def test_revert_transaction_undoes_inserts_updates_and_deletes_of_two_models(session, models, db):
    kept, renamed, removed_id, added_todo, added_tag, undone = (
        _two_models_changed_in_one_transaction(session, models)
    )
    added_ids = added_todo.id, added_tag.id

    with rationale("bad import"):
        result = db.revert_transaction(undone)
    session.commit()

    assert result.transaction_id == undone
    assert set(result.reverted) == {kept, renamed}
    assert set(result.deleted) == {added_todo, added_tag}
    (brought_back,) = result.undeleted
    session.expire_all()
    assert (kept.title, kept.priority, kept.version) == ("kept", Priority.LOW, 2)
    assert kept.secret == "s2"  # hidden: never stored, so it cannot be set back
    assert (renamed.name, renamed.version) == ("renamed", 3)
    assert session.get(models.Tag, removed_id) is brought_back
    assert (brought_back.name, brought_back.version) == ("removed", 2)
    assert session.get(models.Todo, added_ids[0]) is None
    assert session.get(models.Tag, added_ids[1]) is None

    revert_rows = session.execute(
        text(
            "SELECT table_name, key, version, operation, extra_info, transaction_id "
            "FROM chrononaut_activity WHERE extra_info ? 'reverted_transaction' "
            "ORDER BY table_name, key"
        )
    ).all()
    because = {"rationale": "bad import", "reverted_transaction": undone}
    assert [tuple(row[:5]) for row in revert_rows] == [
        ("tag", {"id": renamed.id}, 3, "update", {**because, "reverted_to": 0}),
        ("tag", {"id": removed_id}, 2, "insert", {**because, "undeleted": True}),
        ("tag", {"id": added_ids[1]}, 1, "delete", because),
        ("todo", {"id": kept.id}, 2, "update", {**because, "reverted_to": 0}),
        ("todo", {"id": added_ids[0]}, 1, "delete", because),
    ]
    # One new transaction, not the one undone.
    assert len({row[5] for row in revert_rows}) == 1
    assert revert_rows[0][5] != undone


def test_revert_transaction_sets_foreign_keys_back_before_deleting(session, models, db):
    first_author = models.Author(name="first")
    moved = models.Book(title="moved", author=first_author)
    removed = models.Book(title="removed", author=first_author)
    session.add_all([moved, removed])
    session.commit()
    new_author = models.Author(name="new")
    moved.author = new_author
    session.delete(removed)
    session.commit()
    removed_id, new_author_id = removed.id, new_author.id

    db.revert_transaction(_transaction_of(moved))
    session.commit()

    session.expire_all()
    assert moved.author is first_author
    assert session.get(models.Author, new_author_id) is None
    restored = session.get(models.Book, removed_id)
    assert (restored.title, restored.author) == ("removed", first_author)
    assert sorted(book.title for book in first_author.books) == ["moved", "removed"]


def test_revert_transaction_with_inheritance_and_composite_keys(session, models, db):
    dog = models.Dog(name="Rex", breed="collie")
    cat = models.Cat(name="Tom", indoor=True)
    hello = models.Translation(locale="it", slug="hello", text="Ciao")
    bye = models.Translation(locale="it", slug="bye", text="Arrivederci")
    session.add_all([dog, cat, hello, bye])
    session.commit()
    dog.breed = "poodle"
    hello.text = "Salve"
    session.delete(cat)
    session.delete(bye)
    session.commit()
    cat_id = cat.id

    result = db.revert_transaction(_transaction_of(dog))
    session.commit()

    session.expire_all()
    assert dog.breed == "collie"
    assert hello.text == "Ciao"
    cat_back = session.get(models.Animal, cat_id)
    assert type(cat_back) is models.Cat
    assert (cat_back.name, cat_back.indoor) == ("Tom", True)
    assert session.get(models.Translation, ("it", "bye")).text == "Arrivederci"
    assert {type(obj) for obj in result.undeleted} == {models.Cat, models.Translation}


def test_revert_transaction_of_an_object_inserted_and_deleted_in_it_changes_nothing(
    session, models, db
):
    tag = models.Tag(name="kept")
    session.add(tag)
    session.commit()
    brief = models.Tag(name="brief")
    session.add(brief)
    session.flush()
    session.delete(brief)
    tag.name = "changed"
    session.commit()

    result = db.revert_transaction(_transaction_of(tag))
    session.commit()

    assert (result.reverted, result.undeleted, result.deleted) == ((tag,), (), ())
    assert [row[1] for row in _table(db, "tag")] == ["kept"]


def test_revert_transaction_is_refused_after_a_later_change_of_one_object(session, models, db):
    _, renamed, *_, undone = _two_models_changed_in_one_transaction(session, models)
    renamed.name = "renamed again, later"
    session.commit()
    before = _everything(db)

    with pytest.raises(ChrononautException, match=r"tag id=\d+ was changed after it"):
        db.revert_transaction(undone)

    assert _unchanged(session)
    session.commit()
    assert _everything(db) == before


def test_revert_transaction_is_refused_after_a_later_delete_of_one_object(session, models, db):
    *_, added_todo, _, undone = _two_models_changed_in_one_transaction(session, models)
    session.delete(added_todo)
    session.commit()
    before = _everything(db)

    with pytest.raises(ChrononautException, match="was changed after it"):
        db.revert_transaction(undone)

    assert _unchanged(session)
    session.commit()
    assert _everything(db) == before


def test_revert_transaction_is_refused_when_an_inserted_object_got_children(session, models, db):
    shelf = models.Shelf()
    session.add(shelf)
    session.commit()
    undone = _transaction_of(shelf)
    item = models.Item(name="put there later")
    shelf.items.append(item)
    session.commit()
    before = _everything(db)

    with pytest.raises(ChrononautException, match=r"Item id=\d+ refers to it through 'items'"):
        db.revert_transaction(undone)

    assert _unchanged(session)
    session.commit()
    assert _everything(db) == before


def test_revert_transaction_refuses_what_is_not_a_recorded_transaction(session, models, db):
    todo = models.Todo(title="a")
    session.add(todo)
    session.commit()
    recorded = _transaction_of(todo)

    with pytest.raises(InvalidArgumentError, match="No change was recorded"):
        db.revert_transaction(recorded + 1000)
    for wrong in ("1", 1.5, True, None):
        with pytest.raises(InvalidArgumentError, match="takes a transaction id"):
            db.revert_transaction(wrong)
    todo.title = "b"
    session.flush()
    with pytest.raises(InvalidArgumentError, match="the session's own, still open"):
        db.revert_transaction(_transaction_of(todo))
    session.rollback()

    assert todo.title == "a"
    assert [row[1] for row in _rows(db, "todo")] == [0]


def test_revert_transaction_needs_the_time_travel_columns(session, models, db):
    todo = models.Todo(title="a")
    session.add(todo)
    session.commit()
    undone = _transaction_of(todo)
    session.execute(text("ALTER TABLE chrononaut_activity DROP COLUMN operation"))
    session.execute(text("ALTER TABLE chrononaut_activity DROP COLUMN transaction_id"))
    session.commit()
    db.engine.dispose()

    with pytest.raises(ChrononautException, match=r"docs/migration\.rst"):
        db.revert_transaction(undone)
    assert _unchanged(session)
    assert _table(db, "todo")[0][1] == "a"


def test_a_failed_revert_leaves_the_session_as_it_was(session, models, db):
    user = models.User(name="ann", email="ann@example.com")
    friend = models.User(name="bob", email="bob@example.com")
    session.add_all([user, friend])
    session.commit()
    friend.name = "Bob"
    session.delete(user)
    session.commit()
    undone = _transaction_of(friend)
    # Another user took the address since: the undeleted user cannot have it back.
    session.add(models.User(name="ann again", email="ann@example.com"))
    session.commit()
    before = _everything(db)

    with pytest.raises(IntegrityError):
        db.revert_transaction(undone)

    assert _unchanged(session)
    assert friend.name == "Bob"
    session.commit()
    assert _everything(db) == before
    # The undo's notes did not stay behind on the objects it had changed.
    friend.name = "Robert"
    session.commit()
    assert _rows(db, "appuser")[-1][1:] == (2, "update", {})


def test_a_rolled_back_revert_transaction_leaves_no_notes(session, models, db):
    kept, renamed, removed_id, added_todo, _, undone = _two_models_changed_in_one_transaction(
        session, models
    )
    db.revert_transaction(undone)
    session.rollback()

    kept.text, renamed.name, added_todo.text = "later", "later", "later"
    session.commit()

    assert session.get(models.Tag, removed_id) is None
    assert [row[3] for row in _rows(db, "todo")[-2:]] == [{}, {}]
    assert _rows(db, "tag")[-1][3] == {}


def test_strict_tracking_needs_a_reason_around_the_call(session, models, db, app):
    _, renamed, *_, undone = _two_models_changed_in_one_transaction(session, models)
    app.config["CHRONONAUT_REQUIRE_EXTRA_CHANGE_INFO"] = True
    before = _everything(db)

    with pytest.raises(ChrononautException, match="Strict tracking is enabled"):
        db.revert_transaction(undone)
    assert _unchanged(session)
    session.commit()
    assert _everything(db) == before

    with rationale("undo the import"):
        db.revert_transaction(undone)
    session.commit()
    assert renamed.name == "renamed"
    assert _rows(db, "tag")[-1][3]["rationale"] == "undo the import"


def test_revert_transaction_refuses_an_object_whose_earlier_state_was_not_recorded(
    session, models, db
):
    todo = models.Todo(title="inserted without history")
    with suppress_versioning():
        session.add(todo)
        session.commit()
    todo.title = "changed"
    session.commit()
    before = _everything(db)

    with pytest.raises(ChrononautException, match="earlier state was never recorded"):
        db.revert_transaction(_transaction_of(todo))

    assert _unchanged(session)
    session.commit()
    assert _everything(db) == before


def test_revert_transaction_refuses_an_object_deleted_without_history_since(session, models, db):
    todo = models.Todo(title="first")
    session.add(todo)
    session.commit()
    todo.title = "changed"
    session.commit()
    undone = _transaction_of(todo)
    with suppress_versioning():
        session.delete(todo)
        session.commit()
    before = _everything(db)

    with pytest.raises(ChrononautException, match="deleted without history"):
        db.revert_transaction(undone)

    assert _unchanged(session)
    session.commit()
    assert _everything(db) == before


def test_revert_transaction_refuses_a_table_no_model_maps(session, models, db):
    tag = models.Tag(name="a")
    session.add(tag)
    session.commit()
    undone = _transaction_of(tag)
    with suppress_versioning(allow_deleting_history=True):
        session.execute(text("UPDATE chrononaut_activity SET table_name = 'dropped_table'"))
        session.commit()

    with pytest.raises(ChrononautException, match="changed the table dropped_table"):
        db.revert_transaction(undone)
    assert _unchanged(session)


# -- undelete racing another writer of the same key ----------------------------------------


def _deleted_todo(session: Any, models: Any) -> int:
    todo = models.Todo(title="gone")
    session.add(todo)
    session.commit()
    todo_id: int = todo.id
    session.delete(todo)
    session.commit()
    return todo_id


def test_an_insert_committed_before_an_undelete_makes_the_undelete_fail_whole(session, models, db):
    todo_id = _deleted_todo(session, models)
    models.Todo.undelete(todo_id)
    with VersionedSession(db) as other:
        other.add(models.Todo(id=todo_id, title="theirs"))
        other.commit()

    with pytest.raises(IntegrityError):
        session.commit()
    session.rollback()

    # The undelete left nothing: the other writer's object and its insert are all there is.
    assert [(row[1], row[2], row[3]) for row in _rows(db, "todo")] == [
        (0, "insert", {}),
        (1, "delete", {}),
        (0, "insert", {}),
    ]
    assert session.get(models.Todo, todo_id).title == "theirs"


def test_an_insert_racing_a_flushed_undelete_waits_and_fails_after_its_commit(
    app, session, models, db
):
    todo_id = _deleted_todo(session, models)
    models.Todo.undelete(todo_id)
    session.flush()
    other = VersionedSession(db)
    other_pid = other.execute(text("SELECT pg_backend_pid()")).scalar()

    def insert_the_same_key() -> None:
        other.add(models.Todo(id=todo_id, title="theirs"))
        other.commit()

    executor = ThreadPoolExecutor(1)
    racing = executor.submit(_in_app_context, app, insert_the_same_key)
    executor.shutdown(wait=False)
    _wait_until_blocked(db, other_pid)
    session.commit()

    with pytest.raises(IntegrityError):
        racing.result(timeout=60)
    other.rollback()
    other.close()
    assert [(row[1], row[2], row[3]) for row in _rows(db, "todo")] == [
        (0, "insert", {}),
        (1, "delete", {}),
        (2, "insert", {"undeleted": True}),
    ]
    assert session.get(models.Todo, todo_id).title == "gone"


def _in_app_context(app: Any, work: Any) -> Any:
    with app.app_context():
        return work()


def _wait_until_blocked(db: Any, pid: int) -> None:
    """Return once the backend ``pid`` waits for a lock another one holds."""
    query = text("SELECT cardinality(pg_blocking_pids(:pid)) > 0")
    deadline = time.monotonic() + 60
    with db.engine.connect() as connection:
        while not connection.execute(query, {"pid": pid}).scalar():
            connection.rollback()
            assert time.monotonic() < deadline, "the other session never waited for a lock"
