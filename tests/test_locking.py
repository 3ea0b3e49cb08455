"""Record locking: a second writer of the same row fails instead of losing a change."""

from __future__ import annotations

import pytest
from sqlalchemy import Column, Integer, String, insert, inspect, select
from sqlalchemy.orm.exc import StaleDataError

from chrononaut import Versioned, VersionedSession
from chrononaut.unsafe import suppress_versioning
from tests.activity import rows_of


@pytest.fixture
def other(db, models):
    """A second session: another writer, with a transaction of its own."""
    session = VersionedSession(db)
    yield session
    session.close()


def _versions(db, table_name, **key):
    return [
        (row.version, row.data.get("title", row.data.get("name")))
        for row in rows_of(db, table_name, **key)
    ]


def test_version_is_the_mappers_version_counter(models):
    for model in (models.Todo, models.Animal, models.Dog, models.Cat):
        mapper = inspect(model)
        assert mapper.version_id_col is not None
        assert mapper.get_property_by_column(mapper.version_id_col).key == "version"
        assert mapper.version_id_generator is False
    # The model's own mapper arguments are kept.
    assert inspect(models.Animal).polymorphic_on is not None
    assert inspect(models.Dog).polymorphic_identity == "dog"


def test_second_concurrent_update_fails_and_records_nothing(db, session, other, models):
    todo = models.Todo(title="a")
    session.add(todo)
    session.commit()
    mine = session.get(models.Todo, todo.id)
    theirs = other.get(models.Todo, todo.id)

    theirs.title = "theirs"
    other.commit()
    mine.title = "mine"
    with pytest.raises(StaleDataError):
        session.commit()
    session.rollback()

    assert _versions(db, "todo", id=todo.id) == [(0, "a"), (1, "theirs")]
    session.refresh(mine)
    assert (mine.title, mine.version) == ("theirs", 1)
    # After reloading, the change goes through as version 2.
    mine.title = "mine"
    session.commit()
    assert _versions(db, "todo", id=todo.id)[-1] == (2, "mine")


@pytest.mark.parametrize("first", ["update", "delete"])
def test_delete_after_a_concurrent_change_fails(db, session, other, models, first):
    todo = models.Todo(title="a")
    session.add(todo)
    session.commit()
    todo_id = todo.id
    mine = session.get(models.Todo, todo_id)
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
    todo = models.Todo(title="a")
    session.add(todo)
    session.commit()
    todo_id = todo.id
    mine = session.get(models.Todo, todo_id)
    other.delete(other.get(models.Todo, todo_id))
    other.commit()

    mine.title = "mine"
    with pytest.raises(StaleDataError):
        session.commit()
    session.rollback()

    assert [row.version for row in rows_of(db, "todo", id=todo_id)] == [0, 1]
    assert session.get(models.Todo, todo_id) is None


def test_untracked_change_is_checked_but_not_bumped(db, session, other, models):
    todo = models.Todo(title="a")
    session.add(todo)
    session.commit()
    mine = session.get(models.Todo, todo.id)
    theirs = other.get(models.Todo, todo.id)

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
    assert len(rows_of(db, "todo", id=todo.id)) == 2


def test_suppressed_versioning_still_checks(db, session, other, models):
    todo = models.Todo(title="a")
    session.add(todo)
    session.commit()
    mine = session.get(models.Todo, todo.id)
    theirs = other.get(models.Todo, todo.id)
    theirs.title = "theirs"
    other.commit()

    mine.title = "mine"
    with suppress_versioning(), pytest.raises(StaleDataError):
        session.commit()
    session.rollback()
    assert session.get(models.Todo, todo.id).title == "theirs"


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
    assert (todo.starred, todo.version) == (True, 0)
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
