"""Record locking: a second writer of the same row fails instead of losing a change."""

from __future__ import annotations

import enum
import re
import uuid

import pytest
from sqlalchemy import (
    CHAR,
    Column,
    Enum,
    Integer,
    String,
    Text,
    Uuid,
    event,
    insert,
    inspect,
    select,
)
from sqlalchemy.orm import Mapped, mapped_column
from sqlalchemy.orm.exc import StaleDataError

from chrononaut import ChrononautException, Versioned, VersionedSession
from chrononaut.exceptions import ConcurrentChangeError
from chrononaut.unsafe import suppress_versioning
from tests.activity import rows_of
from tests.models import MODEL_STYLES


@pytest.fixture
def other(db, models):
    """A second session: another writer, with a transaction of its own."""
    session = VersionedSession(db)
    yield session
    session.close()


def _stored_todo(session, models):
    """Commit a new todo through ``session`` and return it, as that session holds it."""
    todo = models.Todo(title="a")
    session.add(todo)
    session.commit()
    return todo


def _versions(db, table_name, **key):
    return [
        (row.version, row.data.get("title", row.data.get("name")))
        for row in rows_of(db, table_name, **key)
    ]


def test_the_error_is_a_chrononaut_and_a_stale_data_error(db, session, other, models):
    mine = _stored_todo(session, models)
    todo_id = mine.id
    other.get(models.Todo, todo_id).title = "theirs"
    other.commit()

    mine.title = "mine"
    with pytest.raises(ConcurrentChangeError, match="changed or deleted by another") as error:
        session.commit()
    session.rollback()
    assert isinstance(error.value, ChrononautException)
    assert isinstance(error.value, StaleDataError)
    assert f"Todo ({todo_id},)" in str(error.value)


@pytest.mark.parametrize("count", [1, 30])
def test_one_lock_statement_per_table_and_flush(db, session, models, count):
    todos = [models.Todo(title=str(n)) for n in range(count)]
    animals = [models.Dog(name="d"), models.Cat(name="c")]
    session.add_all(todos + animals)
    session.commit()
    for todo in todos:
        todo.title += "!"
    for animal in animals:
        animal.name = "changed"
    statements = []
    event.listen(db.engine, "before_cursor_execute", lambda *args: statements.append(args[2]))

    session.commit()

    locks = [statement for statement in statements if "FOR UPDATE" in statement]
    assert len(locks) == 2
    assert {lock.split("FROM", 1)[1].split()[0] for lock in locks} == {"todo", "animal"}


def test_second_concurrent_update_fails_and_records_nothing(db, session, other, models):
    mine = _stored_todo(session, models)
    theirs = other.get(models.Todo, mine.id)

    theirs.title = "theirs"
    other.commit()
    mine.title = "mine"
    with pytest.raises(StaleDataError):
        session.commit()
    session.rollback()

    assert _versions(db, "todo", id=mine.id) == [(0, "a"), (1, "theirs")]
    session.refresh(mine)
    assert (mine.title, mine.version) == ("theirs", 1)
    # After reloading, the change goes through as version 2.
    mine.title = "mine"
    session.commit()
    assert _versions(db, "todo", id=mine.id)[-1] == (2, "mine")


@pytest.mark.parametrize("first", ["update", "delete"])
def test_delete_after_a_concurrent_change_fails(db, session, other, models, first):
    mine = _stored_todo(session, models)
    todo_id = mine.id
    theirs = other.get(models.Todo, todo_id)

    if first == "update":
        theirs.title = "theirs"
    else:
        other.delete(theirs)
    other.commit()
    session.delete(mine)
    with pytest.raises(StaleDataError):
        session.commit()
    session.rollback()

    assert [row.version for row in rows_of(db, "todo", id=todo_id)] == [0, 1]


def test_update_after_a_concurrent_delete_fails(db, session, other, models):
    mine = _stored_todo(session, models)
    todo_id = mine.id
    other.delete(other.get(models.Todo, todo_id))
    other.commit()

    mine.title = "mine"
    with pytest.raises(StaleDataError):
        session.commit()
    session.rollback()

    assert [row.version for row in rows_of(db, "todo", id=todo_id)] == [0, 1]
    assert session.get(models.Todo, todo_id) is None


def test_untracked_change_is_checked_but_not_bumped(db, session, other, models):
    mine = _stored_todo(session, models)
    theirs = other.get(models.Todo, mine.id)

    theirs.title = "theirs"
    other.commit()
    mine.starred = True
    with pytest.raises(StaleDataError):
        session.commit()
    session.rollback()

    session.refresh(mine)
    mine.starred = True
    session.commit()
    assert (mine.starred, mine.version) == (True, 1)
    assert len(rows_of(db, "todo", id=mine.id)) == 2


def test_suppressed_versioning_still_checks(db, session, other, models):
    mine = _stored_todo(session, models)
    theirs = other.get(models.Todo, mine.id)
    theirs.title = "theirs"
    other.commit()

    mine.title = "mine"
    with suppress_versioning(), pytest.raises(StaleDataError):
        session.commit()
    session.rollback()
    assert session.get(models.Todo, mine.id).title == "theirs"


@pytest.mark.parametrize("model_name", ["Dog", "Cat"])
def test_inherited_models_are_checked(db, session, other, models, model_name):
    model = getattr(models, model_name)
    subclass_column = "breed" if model_name == "Dog" else "indoor"
    value = "collie" if model_name == "Dog" else True
    animal = model(name="a")
    session.add(animal)
    session.commit()
    mine = session.get(model, animal.id)
    theirs = other.get(model, animal.id)

    theirs.name = "theirs"
    other.commit()
    # Only a column of the subclass changes; the check is on the base table's version.
    setattr(mine, subclass_column, value)
    with pytest.raises(StaleDataError):
        session.commit()
    session.rollback()

    table_name = "dog" if model_name == "Dog" else "animal"
    assert [row.version for row in rows_of(db, table_name, id=animal.id)] == [0, 1]


def _legacy_todo(db, models, title="old"):
    """A row written before the mixin was added: its version is NULL."""
    with db.engine.begin() as connection:
        return connection.execute(
            insert(models.Todo.__table__)
            .values(title=title, version=None)
            .returning(models.Todo.__table__.c.id)
        ).scalar_one()


def test_null_version_row_is_updated_and_deleted(db, session, models):
    todo_id = _legacy_todo(db, models)
    todo = session.get(models.Todo, todo_id)
    assert todo.version is None

    todo.title = "new"
    session.commit()
    assert todo.version == 1
    session.delete(todo)
    session.commit()

    assert _versions(db, "todo", id=todo_id) == [(1, "new"), (2, "new")]


def test_null_version_untracked_change_is_written(db, session, models):
    todo_id = _legacy_todo(db, models)
    todo = session.get(models.Todo, todo_id)
    todo.starred = True
    session.commit()

    session.expire_all()
    todo = session.get(models.Todo, todo_id)
    assert (todo.starred, todo.version) == (True, None)
    assert rows_of(db, "todo") == []


@pytest.mark.parametrize("second", ["update", "delete"])
def test_null_version_row_second_writer_fails(db, session, other, models, second):
    todo_id = _legacy_todo(db, models)
    mine = session.get(models.Todo, todo_id)
    theirs = other.get(models.Todo, todo_id)

    theirs.title = "theirs"
    other.commit()
    if second == "update":
        mine.title = "mine"
    else:
        session.delete(mine)
    with pytest.raises(StaleDataError, match="changed or deleted by another transaction"):
        session.commit()
    session.rollback()

    assert _versions(db, "todo", id=todo_id) == [(1, "theirs")]


def test_a_version_id_col_of_the_models_own_is_kept(db):
    class Page(db.Model, Versioned):
        __tablename__ = "page"
        id = Column(Integer, primary_key=True)
        revision = Column(Integer, nullable=False)
        title = Column(String(40))
        __mapper_args__ = {"version_id_col": revision}

    db.create_all()
    page = Page(title="a")
    db.session.add(page)
    db.session.commit()
    page.title = "b"
    db.session.commit()

    assert inspect(Page).version_id_col is Page.__table__.c.revision
    assert (page.revision, page.version) == (2, 1)
    stored = db.session.execute(select(db.activity_cls.version)).scalars().all()
    assert sorted(stored) == [0, 1]


def test_rows_the_flush_finds_to_change_are_locked_too(db, session, other, models):
    """A foreign key set from the other side of a relationship, and an orphan delete,
    are only known once the flush runs."""
    shelf = models.Shelf()
    moved, orphan = models.Item(name="moved"), models.Item(name="orphan")
    shelf.items.append(orphan)
    session.add_all([shelf, moved])
    session.commit()
    target = session.get(models.Shelf, shelf.id)
    mine_moved, mine_orphan = (
        session.get(models.Item, moved.id),
        session.get(models.Item, orphan.id),
    )
    assert target.items == [mine_orphan]
    for item_id in (moved.id, orphan.id):
        other.get(models.Item, item_id).name = "theirs"
    other.commit()

    target.items.append(mine_moved)
    with pytest.raises(ConcurrentChangeError, match=re.escape(f"Item ({moved.id},)")):
        session.commit()
    session.rollback()
    target = session.get(models.Shelf, shelf.id)
    mine_orphan = target.items[0]
    other.get(models.Item, orphan.id).name = "theirs again"
    other.commit()

    target.items.remove(mine_orphan)
    with pytest.raises(ConcurrentChangeError, match=re.escape(f"Item ({orphan.id},)")):
        session.commit()
    session.rollback()
    assert [row.version for row in rows_of(db, "item")] == [0, 0, 1, 1, 2]


@pytest.mark.parametrize("model_name", ["Translation", "Country"])
def test_composite_and_text_keys_are_checked(db, session, other, models, model_name):
    model = getattr(models, model_name)
    if model_name == "Translation":
        key, change = ("en", "hello"), {"text": "Hi"}
        session.add_all([model(locale="en", slug="hello"), model(locale="en", slug="bye")])
    else:
        key, change = "NL", {"name": "Nederland"}
        session.add_all([model(code="NL"), model(code="BE")])
    session.commit()
    mine = session.get(model, key)
    theirs = other.get(model, key)
    for name, value in change.items():
        setattr(theirs, name, value + " (theirs)")
        setattr(mine, name, value)
    other.commit()

    with pytest.raises(ConcurrentChangeError):
        session.commit()
    session.rollback()
    assert [row.version for row in rows_of(db, model.__tablename__)] == [0, 0, 1]


# -- merging detached objects -----------------------------------------------------------


def _detached_todo(session, models):
    """A todo committed by ``session``, loaded, then detached with version 0."""
    todo = _stored_todo(session, models)
    assert (todo.title, todo.version) == ("a", 0)  # loads it before it is detached
    session.expunge(todo)
    return todo


def test_merging_a_stale_detached_object_fails(db, session, other, models):
    mine = _detached_todo(session, models)
    other.get(models.Todo, mine.id).title = "theirs"
    other.commit()

    mine.title = "mine"
    merged = session.merge(mine)
    with pytest.raises(ConcurrentChangeError, match=re.escape(f"Todo ({mine.id},)")):
        session.commit()
    session.rollback()

    assert _versions(db, "todo", id=mine.id) == [(0, "a"), (1, "theirs")]
    assert (merged.title, merged.version) == ("theirs", 1)


def test_merging_a_current_detached_object_records_its_change(db, session, models):
    mine = _detached_todo(session, models)

    mine.title = "mine"
    merged = session.merge(mine)
    session.commit()

    assert _versions(db, "todo", id=mine.id) == [(0, "a"), (1, "mine")]
    assert merged.version == 1


def test_merging_an_object_without_a_version_changes_the_newest(db, session, other, models):
    # As with SQLAlchemy's version_id_col: leave the version unset to merge onto
    # whatever version is stored.
    todo_id = _stored_todo(session, models).id
    session.expunge_all()
    other.get(models.Todo, todo_id).title = "theirs"
    other.commit()

    merged = session.merge(models.Todo(id=todo_id, title="mine"))
    session.commit()

    assert _versions(db, "todo", id=todo_id) == [(0, "a"), (1, "theirs"), (2, "mine")]
    assert merged.version == 2


def test_merging_a_transient_object_inserts_it(db, session, models):
    merged = session.merge(models.Todo(id=41, title="new"))
    session.commit()

    assert _versions(db, "todo", id=41) == [(0, "new")]
    assert merged.version == 0


# -- keys as the database returns them --------------------------------------------------


def _char_keyed(db, style):
    """A versioned model whose primary key is a CHAR(4), which PostgreSQL pads."""
    if style == "classic":

        class Code(db.Model, Versioned):
            __tablename__ = "code"
            code = Column(CHAR(4), primary_key=True)
            name = Column(String(40))

    else:

        class Code(db.Model, Versioned):  # type: ignore[no-redef]
            __tablename__ = "code"
            code: Mapped[str] = mapped_column(CHAR(4), primary_key=True)
            name: Mapped[str | None] = mapped_column(String(40))

    db.create_all()
    return Code


@pytest.mark.parametrize("style", MODEL_STYLES)
def test_a_char_primary_key_is_compared_and_stored_as_the_database_pads_it(db, style):
    model = _char_keyed(db, style)
    session, other = db.session, VersionedSession(db)
    mine = model(code="ab", name="a")
    session.add(mine)
    session.commit()
    mine.name = "b"
    session.commit()
    theirs = other.get(model, "ab")
    theirs.name = "c"
    other.commit()

    assert theirs.code == "ab  "
    assert [(row.key, row.version, row.data["name"]) for row in rows_of(db, "code")] == [
        ({"code": "ab  "}, 0, "a"),
        ({"code": "ab  "}, 1, "b"),
        ({"code": "ab  "}, 2, "c"),
    ]
    assert [snapshot.name for snapshot in mine.versions()] == ["a", "b", "c"]
    assert [snapshot.name for snapshot in theirs.versions()] == ["a", "b", "c"]
    # A stale write is still caught.
    mine.name = "d"
    theirs.name = "e"
    other.commit()
    with pytest.raises(ConcurrentChangeError):
        session.commit()
    session.rollback()
    other.close()
    assert [row.version for row in rows_of(db, "code")] == [0, 1, 2, 3]


class Shade(enum.Enum):
    RED = "red"
    GREEN = "green"
    BLUE = "blue"
    GREY = "grey"


#: Primary key types the lock statement's array of keys is cast to, with three keys each.
KEY_TYPES = {
    "enum": (Enum(Shade, name="shade"), [Shade.RED, Shade.GREEN, Shade.BLUE]),
    "uuid": (Uuid(), [uuid.UUID(int=n) for n in (1, 2, 3)]),
    "text": (Text(), ["a", "b b", "c'"]),
    "char": (CHAR(3), ["a", "bb", "ccc"]),
}


@pytest.mark.parametrize("key_type", list(KEY_TYPES))
def test_rows_are_locked_by_a_key_of_any_type_with_one_statement_text(db, key_type):
    column_type, keys = KEY_TYPES[key_type]

    class Paint(db.Model, Versioned):
        __tablename__ = "paint"
        key = Column(column_type, primary_key=True)
        name = Column(String(40))

    db.create_all()
    session, other = db.session, VersionedSession(db)
    session.add_all([Paint(key=key, name="new") for key in keys])
    session.commit()
    locks = []
    event.listen(
        db.engine,
        "before_cursor_execute",
        lambda *args: locks.append(args[2]) if "FOR UPDATE" in args[2] else None,
    )
    for count in (1, 3):
        for paint in session.scalars(select(Paint).where(Paint.key.in_(keys[:count]))):
            paint.name = f"changed {count}"
        session.commit()
    # The same text for one row and for three: a driver can prepare it once.
    assert len(locks) == 2
    assert locks[0] == locks[1]
    assert sorted(paint.name for paint in session.scalars(select(Paint))) == [
        "changed 3",
        "changed 3",
        "changed 3",
    ]

    mine = list(session.scalars(select(Paint)))
    theirs = other.get(Paint, keys[1])
    theirs.name = "theirs"
    other.commit()
    for paint in mine:
        paint.name = "mine"
    stale = f"Paint {inspect(theirs).identity}"
    with pytest.raises(ConcurrentChangeError, match=re.escape(stale)) as error:
        session.commit()
    session.rollback()
    other.close()
    assert str(error.value).count("Paint") == 1
    # Three inserts, one change of one row, one of three, and theirs: nothing of mine.
    assert [row.data["name"] for row in rows_of(db, "paint")][-2:] == ["changed 3", "theirs"]
    assert len(rows_of(db, "paint")) == 8
