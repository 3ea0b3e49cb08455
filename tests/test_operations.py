"""Each activity row records what happened (insert, update, delete) and the database
transaction that wrote it; tables made by older releases keep working without them."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select, text

from chrononaut.exceptions import ChrononautException
from chrononaut.history.activity import has_time_travel_columns, require_time_travel_columns
from chrononaut.history.lives import deleted_condition, operation_of
from chrononaut.unsafe import suppress_versioning


def _operations(db: Any, table_name: str = "todo") -> list[tuple[int, str | None, int | None]]:
    return [
        tuple(row)
        for row in db.session.execute(
            text(
                "SELECT version, operation, transaction_id FROM chrononaut_activity "
                "WHERE table_name = :table_name ORDER BY changed, id"
            ),
            {"table_name": table_name},
        )
    ]


def _make_it_a_table_without_operations(db: Any) -> None:
    """Give the activity table the columns of a release before 1.0, as the original
    had them, and let the engine see the change."""
    db.session.execute(text("ALTER TABLE chrononaut_activity DROP COLUMN operation"))
    db.session.execute(text("ALTER TABLE chrononaut_activity DROP COLUMN transaction_id"))
    db.session.commit()
    db.engine.dispose()


def test_insert_update_delete_record_their_operation(session, models, db):
    todo = models.Todo(title="a", text="x")
    session.add(todo)
    session.commit()
    todo.title = "b"
    session.commit()
    session.delete(todo)
    session.commit()

    rows = _operations(db)
    assert [(version, operation) for version, operation, _ in rows] == [
        (0, "insert"),
        (1, "update"),
        (2, "delete"),
    ]
    transaction_ids = [transaction_id for _, _, transaction_id in rows]
    assert all(isinstance(value, int) for value in transaction_ids)
    assert len(set(transaction_ids)) == 3
    assert transaction_ids == sorted(transaction_ids)


def test_every_row_of_one_commit_shares_its_transaction_id(session, models, db):
    first, second = models.Todo(title="a"), models.Todo(title="b")
    session.add_all([first, second])
    session.flush()
    first.title = "a2"
    session.flush()
    current = session.execute(text("SELECT pg_current_xact_id()::text::bigint")).scalar()
    session.commit()

    rows = _operations(db)
    assert [operation for _, operation, _ in rows] == ["insert", "insert", "update"]
    assert {transaction_id for _, _, transaction_id in rows} == {current}


def test_snapshots_expose_operation_and_transaction_id(session, models, db):
    todo = models.Todo(title="a")
    session.add(todo)
    session.commit()
    todo.title = "b"
    session.commit()

    first, second = todo.versions()
    assert (first.chrononaut_operation, second.chrononaut_operation) == ("insert", "update")
    stored = [transaction_id for _, _, transaction_id in _operations(db)]
    assert [first.chrononaut_transaction_id, second.chrononaut_transaction_id] == stored
    # The contract's meta keeps its four keys.
    assert set(first.chrononaut_meta) == {"table_name", "changed", "user_info", "extra_info"}


def test_a_key_used_again_in_one_flush_records_a_delete_then_an_insert(session, models, db):
    tag = models.Tag(name="old")
    session.add(tag)
    session.commit()
    tag_id = tag.id
    session.delete(tag)
    session.add(models.Tag(id=tag_id, name="new"))
    session.commit()

    assert [(v, op) for v, op, _ in _operations(db, "tag")] == [
        (0, "insert"),
        (1, "delete"),
        (0, "insert"),
    ]


def test_a_table_without_the_columns_keeps_recording_and_reading(session, models, db):
    todo = models.Todo(title="a")
    session.add(todo)
    session.commit()
    _make_it_a_table_without_operations(db)

    todo = session.get(models.Todo, todo.id)
    todo.title = "b"
    session.commit()
    session.delete(todo)
    session.commit()

    activity = db.activity_cls.__table__
    assert has_time_travel_columns(session, activity) is False
    rows = session.execute(
        text("SELECT version FROM chrononaut_activity ORDER BY changed, id")
    ).scalars()
    assert list(rows) == [0, 1, 2]
    snapshots = models.Todo.query.session.query(db.activity_cls).order_by("id").all()
    assert [row.version for row in snapshots] == [0, 1, 2]
    fresh = models.Todo(title="c")
    session.add(fresh)
    session.commit()
    (snapshot,) = fresh.versions()
    assert (snapshot.title, snapshot.chrononaut_operation) == ("c", None)
    with pytest.raises(ChrononautException, match=r"docs/migration\.rst"):
        require_time_travel_columns(session, activity)


def test_a_migrated_table_is_seen_after_the_engine_is_disposed(session, models, db):
    _make_it_a_table_without_operations(db)
    activity = db.activity_cls.__table__
    assert has_time_travel_columns(session, activity) is False
    session.execute(text("ALTER TABLE chrononaut_activity ADD COLUMN operation text"))
    session.execute(text("ALTER TABLE chrononaut_activity ADD COLUMN transaction_id bigint"))
    session.commit()
    db.engine.dispose()

    assert has_time_travel_columns(session, activity) is True
    require_time_travel_columns(session, activity)
    todo = models.Todo(title="a")
    session.add(todo)
    session.commit()
    assert [op for _, op, _ in _operations(db)] == ["insert"]


def _old_rows(db: Any) -> None:
    """Forget the recorded operations, as rows written by Chrononaut 0.5 have none."""
    with suppress_versioning(allow_deleting_history=True):
        db.session.execute(text("UPDATE chrononaut_activity SET operation = NULL"))
        db.session.commit()


def test_the_rule_reads_the_operation_of_rows_that_do_not_record_it(session, models, db):
    # A key with two lives, the second still live; a key deleted for good; a key that
    # lives on with updates.
    reused = models.Tag(name="first life")
    gone = models.Tag(name="gone")
    kept = models.Tag(name="kept")
    session.add_all([reused, gone, kept])
    session.commit()
    reused.name = "first life, edited"
    kept.name = "kept, edited"
    session.commit()
    reused_id, gone_id, kept_id = reused.id, gone.id, kept.id
    session.delete(reused)
    session.delete(gone)
    session.commit()
    session.add(models.Tag(id=reused_id, name="second life"))
    session.commit()
    recorded = _operations(db, "tag")
    _old_rows(db)

    activity = db.activity_cls.__table__
    tag_mapper = models.Tag.__mapper__
    rows = session.execute(
        select(activity.c.id, deleted_condition(activity, activity, tag_mapper))
        .where(activity.c.table_name == "tag")
        .order_by(activity.c.changed, activity.c.id)
    ).all()
    guessed_deletes = [is_delete for _, is_delete in rows]
    assert guessed_deletes == [operation == "delete" for _, operation, _ in recorded]

    by_key: dict[Any, list[Any]] = {}
    for key in (reused_id, gone_id, kept_id):
        by_key[key] = models.Tag(id=key).versions()
    expected = {
        reused_id: ["insert", "update", "delete", "insert"],
        gone_id: ["insert", "delete"],
        kept_id: ["insert", "update"],
    }
    for key, snapshots in by_key.items():
        live = session.get(models.Tag, key) is not None
        following = [*snapshots[1:], None]
        guessed = [operation_of(s, n, live) for s, n in zip(snapshots, following, strict=True)]
        assert guessed == expected[key]
