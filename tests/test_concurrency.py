"""Eight processes change the same rows at once; history stays complete and exact."""

from __future__ import annotations

import multiprocessing
import random
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import insert, select
from sqlalchemy.orm.exc import StaleDataError

from chrononaut import VersionedSQLAlchemy
from tests.activity import activity_rows
from tests.models import define_models

WORKERS = 8
OPERATIONS = 200  # per worker
RETRIES = 5
#: The rows everyone fights over: half were written before the mixin (NULL version).
SHARED = 6
#: Seconds the workers may take to start (each imports the project in a new process).
START_TIMEOUT = 60


@dataclass
class WorkerLog:
    """What one worker committed, and the changes it rolled back."""

    inserted: dict[int, str] = field(default_factory=dict)  # id -> title
    updated: list[tuple[int, str]] = field(default_factory=list)  # (id, new title)
    deleted: list[int] = field(default_factory=list)
    rolled_back: list[str] = field(default_factory=list)  # titles never committed
    conflicts: int = 0


def _work(database_url: str, worker: int, ids: list[int], start: Any) -> WorkerLog:
    """Run random inserts, updates and deletes on the shared rows; retry on conflict.

    :param start: a barrier that every worker passes once it is ready, so that all of
        them write at the same time and not one after the other as they come up.
    """
    app = Flask(f"worker{worker}")
    app.config["SQLALCHEMY_DATABASE_URI"] = database_url
    db = VersionedSQLAlchemy(app)
    rng = random.Random(worker)
    log = WorkerLog()
    with app.app_context():
        Todo = define_models(db, "classic").Todo
        session = db.session
        start.wait(timeout=START_TIMEOUT)
        for number in range(OPERATIONS):
            operation = rng.choices(["update", "insert", "delete"], weights=[80, 10, 10])[0]
            if operation == "insert":
                todo = Todo(title=f"w{worker}-{number}", done=rng.random() < 0.5)
                session.add(todo)
                session.commit()
                log.inserted[todo.id] = todo.title
                ids.append(todo.id)
                continue
            todo_id = rng.choice(ids)
            for attempt in range(RETRIES):
                todo = session.get(Todo, todo_id)
                if todo is None:
                    break  # deleted by someone else: nothing left to change
                title = f"w{worker}-{number}-{attempt}"
                if operation == "update":
                    todo.title, todo.done = title, not todo.done
                else:
                    session.delete(todo)
                try:
                    session.commit()
                except StaleDataError:
                    session.rollback()
                    log.conflicts += 1
                    if operation == "update":
                        log.rolled_back.append(title)
                    continue
                if operation == "update":
                    log.updated.append((todo_id, title))
                else:
                    log.deleted.append(todo_id)
                break
        session.remove()
        for engine in db.engines.values():
            engine.dispose()
    return log


@pytest.mark.slow
def test_concurrent_writers_keep_history_complete_and_exact(db, database_url):
    Todo = define_models(db, "classic").Todo
    db.create_all()
    seeded = [Todo(title=f"seed{number}") for number in range(SHARED // 2)]
    db.session.add_all(seeded)
    db.session.commit()
    with db.engine.begin() as connection:
        legacy = connection.execute(
            insert(Todo.__table__)
            .values([{"title": f"legacy{n}", "version": None} for n in range(SHARED // 2)])
            .returning(Todo.__table__.c.id)
        ).scalars()
        shared = [todo.id for todo in seeded] + list(legacy)
    legacy_ids = set(shared[SHARED // 2 :])

    url = database_url.render_as_string(hide_password=False)
    context = multiprocessing.get_context("spawn")
    with context.Manager() as manager, context.Pool(WORKERS) as pool:
        start = manager.Barrier(WORKERS)
        logs = pool.starmap_async(
            _work, [(url, worker, list(shared), start) for worker in range(WORKERS)]
        ).get(timeout=START_TIMEOUT + 50)

    rows = [row for row in activity_rows(db) if row.table_name == "todo"]
    live = {todo.id: todo for todo in db.session.execute(select(Todo)).scalars()}
    history = defaultdict(list)
    for row in rows:
        history[row.key["id"]].append(row)

    inserted = {todo_id: title for log in logs for todo_id, title in log.inserted.items()}
    updated = [change for log in logs for change in log.updated]
    deleted = Counter(todo_id for log in logs for todo_id in log.deleted)
    rolled_back = {title for log in logs for title in log.rolled_back}
    assert sum(log.conflicts for log in logs) > 0, "the workers never collided"

    # Every committed change has exactly one row; nothing else has one.
    assert len(rows) == len(seeded) + len(inserted) + len(updated) + sum(deleted.values())
    assert set(deleted.values()) <= {1}
    titles = Counter(row.data["title"] for row in rows if row.version > 0)
    for todo_id, title in updated:
        assert titles[title] == 1 or (todo_id in deleted and titles[title] == 2)
        assert next(row.key["id"] for row in rows if row.data["title"] == title) == todo_id
    for todo_id, title in inserted.items():
        assert (history[todo_id][0].version, history[todo_id][0].data["title"]) == (0, title)
    # A rolled-back change left no trace, in history or in the data.
    stored_titles = {row.data["title"] for row in rows} | {todo.title for todo in live.values()}
    assert not rolled_back & stored_titles

    for todo_id in set(shared) | set(inserted):
        versions = [row.version for row in history[todo_id]]
        first = 1 if todo_id in legacy_ids else 0
        assert versions == list(range(first, first + len(versions))), todo_id
        if todo_id in deleted:
            assert todo_id not in live
            # The delete's snapshot repeats the last state with the next version (a
            # legacy row deleted before any change has no earlier snapshot).
            *earlier, gone = history[todo_id]
            if earlier:
                assert {**earlier[-1].data, "version": gone.version} == gone.data
        else:
            todo = live[todo_id]
            newest = history[todo_id][-1].data if history[todo_id] else None
            if newest is None:
                # A legacy row nobody committed a change to.
                assert todo.version is None or todo.version == 0
                continue
            assert newest == {
                "id": todo.id,
                "title": todo.title,
                "text": todo.text,
                "done": todo.done,
                "priority": None,
                "due_at": None,
                "version": todo.version,
            }
