"""``chrononaut.unsafe.suppress_versioning``: changes without history, and deleting history."""

from __future__ import annotations

import contextvars
from contextlib import nullcontext
from typing import Any

import pytest
from sqlalchemy import func, select

from chrononaut import ChrononautException, VersionedSQLAlchemy
from chrononaut.unsafe import suppress_versioning
from tests.activity import activity_rows, rows_of

REFUSED = "History records cannot be deleted"


def activity_objects(db: VersionedSQLAlchemy, session: Any) -> list[Any]:
    """Every activity row as a mapped object, oldest first."""
    activity = db.metadata._activity_cls
    return list(session.query(activity).order_by(activity.id))


def add(session: Any, obj: Any) -> Any:
    session.add(obj)
    session.commit()
    return obj


def todo_with_history(session: Any, models: Any, versions: int = 3) -> Any:
    """A Todo with ``versions`` recorded versions (0 .. versions - 1)."""
    todo = add(session, models.Todo(title="v0"))
    for number in range(1, versions):
        todo.title = f"v{number}"
        session.commit()
    return todo


def count(session: Any, model: Any) -> int:
    return session.scalar(select(func.count()).select_from(model))


# -- suppressing history --------------------------------------------------------------------


def test_suppressed_inserts_updates_and_deletes_write_no_history(db, session, models):
    kept = add(session, models.Todo(title="kept"))
    doomed = add(session, models.Todo(title="doomed"))
    before = activity_rows(db)
    assert len(before) == 2

    with suppress_versioning():
        created = add(session, models.Todo(title="created quietly"))
        kept.title = "renamed quietly"
        kept.secret = "hidden change"
        session.commit()
        kept.title = "renamed twice"
        session.commit()
        session.delete(doomed)
        session.commit()

    assert activity_rows(db) == before
    assert created.version == 0
    assert kept.version == 0
    assert created.versions() == []
    assert session.scalar(select(models.Todo.title).where(models.Todo.id == kept.id)) == (
        "renamed twice"
    )
    assert count(session, models.Todo) == 2


def test_recording_resumes_with_the_next_version_after_the_block(db, session, models):
    todo = add(session, models.Todo(title="v0"))
    with suppress_versioning():
        created = add(session, models.Todo(title="created quietly"))
        todo.title = "quiet"
        session.commit()

    todo.title = "loud"
    created.title = "now recorded"
    session.commit()

    assert todo.version == 1
    assert [(snap.version, snap.title) for snap in todo.versions()] == [(0, "v0"), (1, "loud")]
    assert created.version == 1
    assert [(snap.version, snap.title) for snap in created.versions()] == [(1, "now recorded")]


def test_suppress_versioning_needs_an_app_context(app):
    def enter_block() -> None:
        with suppress_versioning():
            pass  # pragma: no cover - never reached

    # A fresh contextvars context has no Flask application context.
    with pytest.raises(ChrononautException, match="application context"):
        contextvars.Context().run(enter_block)


def test_suppress_versioning_leaves_no_state_behind_when_the_block_raises(db, session, models):
    todo = todo_with_history(session, models, versions=1)

    with (
        pytest.raises(RuntimeError, match="boom"),
        suppress_versioning(allow_deleting_history=True),
    ):
        todo.title = "quiet"
        session.commit()
        raise RuntimeError("boom")

    todo.title = "loud"
    session.commit()
    snapshots = todo.versions()
    assert [(snap.version, snap.title) for snap in snapshots] == [(0, "v0"), (1, "loud")]
    with pytest.raises(ChrononautException, match=REFUSED):
        session.delete(snapshots[0])


def test_nested_blocks_restore_the_outer_state(db, session, models):
    todo = todo_with_history(session, models, versions=2)
    snapshots = todo.versions()

    with suppress_versioning(allow_deleting_history=True):
        with suppress_versioning():
            todo.title = "quiet inside"
            session.commit()
            with pytest.raises(ChrononautException, match=REFUSED):
                session.delete(snapshots[0])
        # Back in the outer block: still suppressed, and deleting is allowed again.
        todo.title = "quiet outside"
        session.commit()
        session.delete(snapshots[0])
        session.commit()

    assert [row.version for row in rows_of(db, "todo", id=todo.id)] == [1]

    with suppress_versioning():
        with suppress_versioning(allow_deleting_history=True):
            pass
        with pytest.raises(ChrononautException, match=REFUSED):
            session.delete(snapshots[1])

    todo.title = "loud"
    session.commit()
    assert [(snap.version, snap.title) for snap in todo.versions()] == [
        (1, "v1"),
        (2, "loud"),
    ]


# -- deleting history -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "block", [nullcontext, suppress_versioning], ids=["outside a block", "without permission"]
)
def test_deleting_history_is_refused(db, session, models, block):
    todo = todo_with_history(session, models)
    before = activity_rows(db)

    with block():
        with pytest.raises(ChrononautException, match=REFUSED):
            session.delete(todo.versions()[0])
        with pytest.raises(ChrononautException, match=REFUSED):
            session.delete(activity_objects(db, session)[1])
        session.commit()

    assert activity_rows(db) == before


def test_deleting_history_with_permission_and_a_commit_in_the_block(db, session, models):
    todo = todo_with_history(session, models)
    other = todo_with_history(session, models, versions=2)

    with suppress_versioning(allow_deleting_history=True):
        session.delete(todo.versions()[0])
        version_1 = next(
            row
            for row in activity_objects(db, session)
            if row.key == {"id": todo.id} and row.version == 1
        )
        session.delete(version_1)
        session.commit()

    assert [row.version for row in rows_of(db, "todo", id=todo.id)] == [2]
    assert [snap.version for snap in todo.versions()] == [2]
    assert [row.version for row in rows_of(db, "todo", id=other.id)] == [0, 1]


@pytest.mark.parametrize("target", ["snapshot", "activity row"])
def test_deleting_history_committed_after_the_block_is_refused(db, session, models, target):
    todo = todo_with_history(session, models)
    before = activity_rows(db)

    with suppress_versioning(allow_deleting_history=True):
        if target == "snapshot":
            session.delete(todo.versions()[0])
        else:
            session.delete(activity_objects(db, session)[0])
    with pytest.raises(ChrononautException, match=REFUSED):
        session.commit()
    session.rollback()

    assert activity_rows(db) == before
    assert [snap.version for snap in todo.versions()] == [0, 1, 2]


def test_deleting_an_object_with_all_its_history(db, session, models):
    todo = todo_with_history(session, models)
    todo_id = todo.id
    other = todo_with_history(session, models, versions=2)

    # The recipe of the user guide.
    with suppress_versioning(allow_deleting_history=True):
        for version in todo.versions():
            session.delete(version)
        session.delete(todo)
        session.commit()

    assert rows_of(db, "todo", id=todo_id) == []
    assert session.get(models.Todo, todo_id) is None
    assert [row.version for row in rows_of(db, "todo", id=other.id)] == [0, 1]
    assert count(session, models.Todo) == 1
