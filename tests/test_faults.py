"""A flush that fails part of the way leaves neither data nor history behind."""

from __future__ import annotations

import pytest
from sqlalchemy import event, select, text
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm.exc import StaleDataError

from chrononaut import VersionedSession
from tests.activity import activity_rows, rows_of


@pytest.fixture
def committed(db, session, models):
    """Two committed todos with one version each, and a user."""
    todos = [models.Todo(title="a"), models.Todo(title="b")]
    session.add_all([*todos, models.User(name="u", email="u@example.com")])
    session.commit()
    return todos


def _state(db, models):
    """What the database holds, read on a connection of its own: todo titles and
    versions, and every activity row."""
    todo, activity = models.Todo.__table__, db.activity_cls.__table__
    with db.engine.connect() as connection:
        todos = connection.execute(
            select(todo.c.id, todo.c.title, todo.c.version).order_by(todo.c.id)
        ).all()
        rows = connection.execute(
            select(
                activity.c.table_name, activity.c.key, activity.c.version, activity.c.data
            ).order_by(activity.c.id)
        ).all()
    return todos, rows


def _change_everything(session, models, todos):
    """Insert, update and delete in one flush."""
    todos[0].title = "a2"
    session.delete(todos[1])
    session.add(models.Todo(title="new"))


def _assert_retry_records_one_version(db, session, models, todos, before):
    todos[0].title = "retried"
    session.commit()
    after = _state(db, models)
    assert after[1][: len(before[1])] == before[1]
    assert [row[2] for row in after[1][len(before[1]) :]] == [1]


def test_constraint_violation_halfway(db, session, models, committed):
    before = _state(db, models)
    _change_everything(session, models, committed)
    # The UPDATE and the DELETE of the todos run before the duplicate user INSERT fails.
    session.add(models.User(name="dup", email="u@example.com"))
    with pytest.raises(IntegrityError):
        session.commit()
    session.rollback()

    assert _state(db, models) == before
    _assert_retry_records_one_version(db, session, models, committed, before)


@pytest.mark.parametrize("where", ["after_update", "after_flush"])
def test_a_raising_listener(db, session, models, committed, where):
    def fail(*args):
        raise RuntimeError("listener failed")

    target = models.Todo if where == "after_update" else session()
    event.listen(target, where, fail)
    before = _state(db, models)
    _change_everything(session, models, committed)
    try:
        with pytest.raises(RuntimeError, match="listener failed"):
            session.commit()
    finally:
        event.remove(target, where, fail)
    session.rollback()

    assert _state(db, models) == before
    _assert_retry_records_one_version(db, session, models, committed, before)


def test_a_stale_object_halfway_rolls_back_the_others(db, session, models, committed):
    assert committed[1].version == 0  # loaded before the other writer commits
    other = VersionedSession(db)
    other.get(models.Todo, committed[1].id).title = "theirs"
    other.commit()
    other.close()
    before = _state(db, models)

    committed[0].title = "a2"
    session.flush()  # the first todo's UPDATE and snapshot are written
    committed[1].title = "b2"
    session.add(models.Todo(title="new"))
    with pytest.raises(StaleDataError):
        session.commit()
    session.rollback()

    assert _state(db, models) == before


def test_connection_killed_mid_transaction(db, session, models, committed):
    before = _state(db, models)
    _change_everything(session, models, committed)
    session.flush()
    pid = session.execute(text("SELECT pg_backend_pid()")).scalar_one()
    with db.engine.connect() as killer:
        assert killer.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid}).scalar()
    with pytest.raises(OperationalError):
        session.commit()
    session.rollback()

    assert _state(db, models) == before
    _assert_retry_records_one_version(db, session, models, committed, before)


def test_rolled_back_savepoint_drops_its_history(db, session, models, committed):
    committed[0].title = "outer"
    session.flush()
    with session.begin_nested() as savepoint:
        committed[0].title = "inner"
        session.delete(committed[1])
        session.add(models.Todo(title="inner new"))
        session.flush()
        savepoint.rollback()
    session.commit()

    todos, rows = _state(db, models)
    assert [(title, version) for _, title, version in todos] == [("outer", 1), ("b", 0)]
    assert [(row[0], row[2], row[3].get("title")) for row in rows if row[0] == "todo"] == [
        ("todo", 0, "a"),
        ("todo", 0, "b"),
        ("todo", 1, "outer"),
    ]
    # The version bumped inside the savepoint was rolled back with it.
    committed[0].title = "next"
    session.commit()
    todo_key = {"id": committed[0].id}
    assert [row.version for row in rows_of(db, "todo", **todo_key)] == [
        0,
        1,
        2,
    ]


def test_committed_savepoint_keeps_its_history(db, session, models, committed):
    with session.begin_nested():
        committed[0].title = "inner"
    session.commit()

    assert [row.data["title"] for row in activity_rows(db) if row.table_name == "todo"] == [
        "a",
        "b",
        "inner",
    ]
