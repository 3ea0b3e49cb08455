"""What a flush records: one activity row per insert, tracked change and delete."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest
from sqlalchemy import event
from sqlalchemy.exc import IntegrityError

from chrononaut import VersionedSession
from chrononaut.capture.recorder import ROWS_PER_STATEMENT
from chrononaut.exceptions import ConcurrentChangeError
from tests.activity import activity_rows, rows_of
from tests.models import Priority


@pytest.fixture
def statements(db):
    """Every SQL statement the default engine runs, as (statement, executemany) pairs."""
    seen = []

    def record(conn, cursor, statement, parameters, context, executemany):
        seen.append((statement, executemany))

    event.listen(db.engine, "before_cursor_execute", record)
    yield seen
    event.remove(db.engine, "before_cursor_execute", record)


def test_insert_records_version_zero_with_the_new_state(db, models):
    before = datetime.now(timezone.utc)
    todo = models.Todo(title="write tests", text="many", secret="s3cret", starred=True)
    db.session.add(todo)
    db.session.commit()
    (row,) = activity_rows(db)
    assert todo.version == 0
    assert row.table_name == "todo"
    assert row.version == 0
    assert row.key == {"id": todo.id}
    assert row.data == {
        "id": todo.id,
        "title": "write tests",
        "text": "many",
        "done": False,
        "priority": None,
        "due_at": None,
        "version": 0,
    }
    assert before <= row.changed <= datetime.now(timezone.utc)
    assert row.user_info == {"user_id": None, "remote_addr": None}
    assert row.extra_info == {"hidden_cols_changed": ["secret"]}


def test_insert_without_hidden_values_has_empty_extra_info(db, models):
    db.session.add(models.Todo(title="plain"))
    db.session.commit()
    assert activity_rows(db)[0].extra_info == {}


def test_tracked_update_bumps_version_and_records_new_state(db, models):
    todo = models.Todo(title="draft", priority=Priority.LOW)
    db.session.add(todo)
    db.session.commit()
    todo.title = "final"
    todo.priority = Priority.HIGH
    db.session.commit()
    assert todo.version == 1
    latest = activity_rows(db)[-1]
    assert latest.version == 1
    assert latest.data["title"] == "final"
    assert latest.data["priority"] == "Priority.HIGH"
    assert latest.data["version"] == 1


def test_untracked_only_change_records_nothing(db, models):
    todo = models.Todo(title="star me")
    db.session.add(todo)
    db.session.commit()
    todo.starred = True
    db.session.commit()
    assert todo.version == 0
    assert len(activity_rows(db)) == 1
    assert all("starred" not in row.data for row in activity_rows(db))


def test_setting_an_equal_value_records_nothing(db, models):
    todo = models.Todo(title="same")
    db.session.add(todo)
    db.session.commit()
    # Loaded first: for an expired attribute SQLAlchemy cannot tell and writes the value.
    assert todo.title == "same"
    todo.title = "same"
    db.session.commit()
    assert todo.version == 0
    assert len(activity_rows(db)) == 1


def test_hidden_change_records_a_version_without_the_value(db, models):
    user = models.User(name="ann", email="ann@example.com", password="first-pass")
    db.session.add(user)
    db.session.commit()
    user.password = "second-pass"
    db.session.commit()
    rows = rows_of(db, "appuser")
    assert [row.version for row in rows] == [0, 1]
    assert rows[1].extra_info == {"hidden_cols_changed": ["password"]}
    assert "password" not in rows[1].data
    stored = json.dumps([dict(row._mapping, changed=None) for row in activity_rows(db)])
    assert "first-pass" not in stored
    assert "second-pass" not in stored


def test_delete_records_a_final_snapshot(db, models):
    todo = models.Todo(title="doomed")
    db.session.add(todo)
    db.session.commit()
    todo_id = todo.id
    db.session.delete(todo)  # every attribute is expired after the commit
    db.session.commit()
    rows = activity_rows(db)
    assert [row.version for row in rows] == [0, 1]
    assert rows[1].key == {"id": todo_id}
    assert rows[1].data["title"] == "doomed"
    assert rows[1].data["version"] == 1


def test_each_flush_in_a_transaction_records_its_own_version(db, models):
    todo = models.Todo(title="one")
    db.session.add(todo)
    db.session.flush()
    todo.title = "two"
    db.session.flush()
    todo.title = "three"
    db.session.commit()
    assert [(row.version, row.data["title"]) for row in activity_rows(db)] == [
        (0, "one"),
        (1, "two"),
        (2, "three"),
    ]


def test_foreign_key_set_through_many_to_one_records_a_version(db, models):
    first, second = models.Author(name="first"), models.Author(name="second")
    book = models.Book(title="book", author=first)
    db.session.add_all([first, second, book])
    db.session.commit()
    book.author = second
    db.session.commit()
    assert book.version == 1
    assert rows_of(db, "book")[-1].data["author_id"] == second.id
    assert [row.version for row in rows_of(db, "author")] == [0, 0]


def test_foreign_key_set_through_one_to_many_collection_records_a_version(db, models):
    # Shelf.items has no backref: the item's shelf_id changes only during the flush.
    shelf = models.Shelf()
    item = models.Item(name="lamp")
    db.session.add_all([shelf, item])
    db.session.commit()
    shelf.items.append(item)
    db.session.commit()
    assert item.version == 1
    assert rows_of(db, "item")[-1].data["shelf_id"] == shelf.id


def test_orphan_delete_records_a_delete_snapshot(db, models):
    item = models.Item(name="vase")
    shelf = models.Shelf(items=[item])
    db.session.add(shelf)
    db.session.commit()
    shelf.items.remove(item)
    db.session.commit()
    rows = rows_of(db, "item")
    assert [row.version for row in rows] == [0, 1]
    assert rows[-1].data["name"] == "vase"
    assert db.session.get(models.Item, rows[0].key["id"]) is None


def test_cascaded_delete_records_every_child(db, models):
    shelf = models.Shelf(items=[models.Item(name="a"), models.Item(name="b")])
    db.session.add(shelf)
    db.session.commit()
    db.session.delete(shelf)
    db.session.commit()
    assert sorted(row.version for row in rows_of(db, "item")) == [0, 0, 1, 1]
    assert [row.version for row in rows_of(db, "shelf")] == [0, 1]


def test_many_to_many_change_records_nothing(db, models):
    book, tag = models.Book(title="tagged"), models.Tag(name="sci-fi")
    db.session.add_all([book, tag])
    db.session.commit()
    book.tags.append(tag)
    db.session.commit()
    assert (book.version, tag.version) == (0, 0)
    assert len(activity_rows(db)) == 2


def test_joined_inheritance_records_under_the_subclass_table(db, models):
    dog = models.Dog(name="rex", breed="collie")
    db.session.add(dog)
    db.session.commit()
    dog.name = "max"  # a column of the parent table
    db.session.commit()
    rows = activity_rows(db)
    assert [row.table_name for row in rows] == ["dog", "dog"]
    assert rows[-1].data == {
        "id": dog.id,
        "kind": "dog",
        "name": "max",
        "breed": "collie",
        "version": 1,
    }
    assert [snapshot.name for snapshot in dog.versions()] == ["rex", "max"]


def test_single_table_inheritance_records_under_the_shared_table(db, models):
    cat = models.Cat(name="tom", indoor=True)
    db.session.add(cat)
    db.session.commit()
    cat.indoor = False
    db.session.commit()
    rows = activity_rows(db)
    assert [row.table_name for row in rows] == ["animal", "animal"]
    assert rows[-1].data["indoor"] is False
    assert [snapshot.indoor for snapshot in cat.versions()] == [True, False]


def test_composite_primary_key(db, models):
    greeting = models.Translation(locale="nl", slug="hello", text="hallo")
    other = models.Translation(locale="de", slug="hello", text="hallo")
    db.session.add_all([greeting, other])
    db.session.commit()
    greeting.text = "hoi"
    db.session.commit()
    assert rows_of(db, "translation")[-1].key == {"locale": "nl", "slug": "hello"}
    assert [snapshot.text for snapshot in greeting.versions()] == ["hallo", "hoi"]
    assert [snapshot.text for snapshot in other.versions()] == ["hallo"]


def test_text_primary_key_not_named_id(db, models):
    country = models.Country(code="NL", name="Holland")
    db.session.add(country)
    db.session.commit()
    country.name = "Netherlands"
    db.session.commit()
    assert rows_of(db, "country")[-1].key == {"code": "NL"}
    assert [snapshot.name for snapshot in country.versions()] == ["Holland", "Netherlands"]


def test_attribute_names_that_differ_from_column_names(db, models):
    gadget = models.Gadget(display_name="widget")
    db.session.add(gadget)
    db.session.commit()
    (row,) = activity_rows(db)
    assert row.key == {"gadget_id": gadget.gadget_id}
    assert row.data == {"gadget_id": gadget.gadget_id, "display_name": "widget", "version": 0}
    assert gadget.versions()[0].display_name == "widget"


def test_a_failed_flush_leaves_neither_data_nor_history(db, models):
    db.session.add(models.User(name="a", email="taken@example.com"))
    db.session.commit()
    todo = models.Todo(title="kept")
    db.session.add(todo)
    db.session.commit()
    todo.title = "lost"
    db.session.add(models.User(name="b", email="taken@example.com"))
    with pytest.raises(IntegrityError):
        db.session.commit()
    db.session.rollback()
    assert todo.title == "kept"
    assert todo.version == 0
    assert [row.data["title"] for row in rows_of(db, "todo")] == ["kept"]
    assert len(rows_of(db, "appuser")) == 1


def test_a_raising_change_info_function_rolls_back_the_flush(app, db, models):
    def broken():
        raise RuntimeError("change info unavailable")

    app.config["CHRONONAUT_EXTRA_CHANGE_INFO_FUNC"] = broken
    db.session.add(models.Todo(title="never"))
    with pytest.raises(RuntimeError, match="change info unavailable"):
        db.session.commit()
    db.session.rollback()
    app.config["CHRONONAUT_EXTRA_CHANGE_INFO_FUNC"] = None
    assert db.session.query(models.Todo).count() == 0
    assert activity_rows(db) == []


def test_a_rolled_back_savepoint_drops_its_history(db, models):
    kept = models.Todo(title="kept")
    db.session.add(kept)
    savepoint = db.session.begin_nested()
    db.session.add(models.Todo(title="dropped"))
    db.session.flush()
    savepoint.rollback()
    db.session.commit()
    assert [row.data["title"] for row in activity_rows(db)] == ["kept"]


@pytest.mark.parametrize("count", [1, 40])
def test_one_activity_insert_per_flush_and_no_select(db, models, statements, count):
    todos = [models.Todo(title=f"todo {n}") for n in range(count)]
    db.session.add_all(todos)
    db.session.commit()
    for todo in todos:
        todo.title += " changed"
    statements.clear()
    db.session.commit()
    activity = [statement for statement, _ in statements if "chrononaut_activity" in statement]
    assert len(activity) == 1
    assert activity[0].lstrip().upper().startswith("INSERT")
    assert len(activity_rows(db)) == 2 * count


def test_a_large_flush_writes_its_history_in_pages(db, models, statements):
    count = ROWS_PER_STATEMENT * 2 + 1
    db.session.add_all([models.Todo(title=f"todo {n}") for n in range(count)])
    db.session.commit()
    activity = [statement for statement, _ in statements if "chrononaut_activity" in statement]
    assert len(activity) == 3
    rows = activity_rows(db)
    assert sorted(row.data["title"] for row in rows) == sorted(f"todo {n}" for n in range(count))
    assert len({row.changed for row in rows}) == 1


def test_all_rows_of_one_flush_share_its_timestamp(db, models):
    db.session.add_all([models.Todo(title="a"), models.Todo(title="b"), models.Author(name="c")])
    db.session.commit()
    assert len({row.changed for row in activity_rows(db)}) == 1


# -- a delete and an insert of one key in one flush -------------------------------------


def _replaced_country(db, models):
    """Country NL at version 1, then deleted and added anew (same key) in one flush;
    return the new object and the moments before and after that flush."""
    old = models.Country(code="NL", name="Holland")
    db.session.add(old)
    db.session.commit()
    old.name = "Nederland"
    db.session.commit()
    before = datetime.now(timezone.utc)
    db.session.delete(old)
    new = models.Country(code="NL", name="Netherlands")
    db.session.add(new)
    db.session.commit()
    return new, before, datetime.now(timezone.utc)


def test_replacing_an_object_in_one_flush_records_a_delete_and_an_insert(db, models):
    # SQLAlchemy turns the pair into one UPDATE of the row ("row switch").
    new, before, after = _replaced_country(db, models)

    rows = rows_of(db, "country")
    assert [(row.version, row.data) for row in rows] == [
        (0, {"code": "NL", "name": "Holland", "version": 0}),
        (1, {"code": "NL", "name": "Nederland", "version": 1}),
        (2, {"code": "NL", "name": "Nederland", "version": 2}),  # the delete
        (0, {"code": "NL", "name": "Netherlands", "version": 0}),  # the insert
    ]
    assert rows[2].id < rows[3].id
    assert rows[2].changed == rows[3].changed
    db.session.expire_all()
    assert (new.name, new.version) == ("Netherlands", 0)
    assert new.version_at(before).name == "Nederland"
    assert new.version_at(after).name == "Netherlands"
    assert new.version_at(rows[3].changed).version == 0

    new.name = "The Netherlands"
    db.session.commit()
    assert [row.version for row in rows_of(db, "country")] == [0, 1, 2, 0, 1]


def test_replacing_a_row_another_transaction_changed_fails(db, models):
    old = models.Country(code="NL", name="Holland")
    db.session.add(old)
    db.session.commit()
    assert old.version == 0
    other = VersionedSession(db)
    other.get(models.Country, "NL").name = "theirs"
    other.commit()
    other.close()

    db.session.delete(old)
    db.session.add(models.Country(code="NL", name="Netherlands"))
    with pytest.raises(ConcurrentChangeError):
        db.session.commit()
    db.session.rollback()

    assert [(row.version, row.data["name"]) for row in rows_of(db, "country")] == [
        (0, "Holland"),
        (1, "theirs"),
    ]


def test_a_replacing_object_is_recorded_as_the_row_it_leaves(db, models):
    # Attributes the new object does not set keep the old row's values in SQLAlchemy's
    # UPDATE: the snapshot records the row as it is.
    old = models.Todo(title="old", text="kept", done=True, secret="s")
    db.session.add(old)
    db.session.commit()
    todo_id = old.id
    db.session.delete(old)
    db.session.add(models.Todo(id=todo_id, title="new"))
    db.session.commit()
    db.session.expunge_all()

    live = db.session.get(models.Todo, todo_id)
    *_, deleted, inserted = rows_of(db, "todo")
    assert deleted.data == {
        "id": todo_id,
        "title": "old",
        "text": "kept",
        "done": True,
        "priority": None,
        "due_at": None,
        "version": 1,
    }
    assert inserted.data == {
        "id": todo_id,
        "title": "new",
        "text": live.text,
        "done": live.done,
        "priority": None,
        "due_at": None,
        "version": 0,
    }
    assert (live.title, live.version) == ("new", 0)
