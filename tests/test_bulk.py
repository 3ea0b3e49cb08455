"""Bulk writes never bypass history silently: they are refused unless opted out of."""

from __future__ import annotations

import pytest
from sqlalchemy import delete, insert, select, update

from chrononaut.exceptions import UnrecordedWriteError
from chrononaut.unsafe import suppress_versioning
from tests.activity import activity_rows


@pytest.fixture
def todo(session, models):
    todo = models.Todo(title="a")
    session.add(todo)
    session.commit()
    return todo


def _statements(models, todo):
    table = models.Todo.__table__
    return {
        "orm update": lambda session: session.execute(
            update(models.Todo).where(models.Todo.id == todo.id).values(title="b")
        ),
        "orm delete": lambda session: session.execute(
            delete(models.Todo).where(models.Todo.id == todo.id)
        ),
        "orm insert": lambda session: session.execute(insert(models.Todo), [{"title": "b"}]),
        "core update": lambda session: session.execute(update(table).values(title="b")),
        "core delete": lambda session: session.execute(delete(table)),
        "core insert": lambda session: session.execute(insert(table).values(title="b")),
        "query update": lambda session: session.query(models.Todo).update({"title": "b"}),
        "query delete": lambda session: session.query(models.Todo).delete(),
        "bulk_insert_mappings": lambda session: session.bulk_insert_mappings(
            models.Todo, [{"title": "b"}]
        ),
        "bulk_update_mappings": lambda session: session.bulk_update_mappings(
            models.Todo, [{"id": todo.id, "title": "b", "version": 0}]
        ),
        "bulk_save_objects new": lambda session: session.bulk_save_objects(
            [models.Todo(title="b")]
        ),
        "bulk_save_objects changed": lambda session: session.bulk_save_objects(
            [_changed(session, todo)]
        ),
    }


def _changed(session, todo):
    # SQLAlchemy's bulk update needs the primary key loaded, which a commit expired.
    session.refresh(todo)
    todo.title = "b"
    return todo


WRITES = [
    "orm update",
    "orm delete",
    "orm insert",
    "core update",
    "core delete",
    "core insert",
    "query update",
    "query delete",
    "bulk_insert_mappings",
    "bulk_update_mappings",
    "bulk_save_objects new",
    "bulk_save_objects changed",
]


def _todos(session, models):
    session.expire_all()
    return session.execute(select(models.Todo.title).order_by(models.Todo.id)).scalars().all()


@pytest.mark.parametrize("write", WRITES)
def test_bulk_write_on_a_versioned_model_is_refused(db, session, models, todo, write):
    with pytest.raises(UnrecordedWriteError, match="suppress_versioning") as refused:
        _statements(models, todo)[write](session)

    assert "'todo'" in str(refused.value)
    session.rollback()
    assert _todos(session, models) == ["a"]
    assert len(activity_rows(db)) == 1
    # The session is still usable for changes that are recorded.
    todo.title = "c"
    session.commit()
    assert [row.version for row in activity_rows(db)] == [0, 1]


@pytest.mark.parametrize("write", WRITES)
def test_bulk_write_runs_without_history_when_suppressed(db, session, models, todo, write):
    with suppress_versioning():
        _statements(models, todo)[write](session)
        session.commit()

    titles = _todos(session, models)
    assert titles != ["a"]
    assert len(activity_rows(db)) == 1


@pytest.mark.parametrize("model_name", ["Dog", "Cat"])
def test_bulk_update_of_an_inherited_model_is_refused(db, session, models, model_name):
    model = getattr(models, model_name)
    session.add(model(name="a"))
    session.commit()

    with pytest.raises(UnrecordedWriteError):
        session.execute(update(model).values(name="b"))
    with pytest.raises(UnrecordedWriteError):
        session.query(model).delete()


def test_bulk_writes_on_unversioned_tables_are_allowed(db, session, models):
    session.execute(insert(models.Note), [{"body": "a"}, {"body": "b"}])
    session.execute(update(models.Note).values(body="c"))
    session.commit()

    assert session.execute(select(models.Note.body)).scalars().all() == ["c", "c"]
    assert activity_rows(db) == []
