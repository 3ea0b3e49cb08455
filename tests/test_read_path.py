"""The history reads: one statement each, served by the activity table's index."""

from __future__ import annotations

import importlib.util
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from alembic.operations import Operations
from alembic.runtime.migration import MigrationContext
from sqlalchemy import event, inspect, text

from chrononaut.models import HistorySnapshot

NEW_INDEX = "ix_chrononaut_activity_table_name_key_changed"
OLD_INDEX = "ix_chrononaut_activity_key_table_name"


def _make_it_an_old_table(db) -> None:
    """Give the activity table the indexes of a release before 0.6."""
    db.session.execute(text(f"CREATE INDEX {OLD_INDEX} ON chrononaut_activity (key, table_name)"))
    db.session.execute(text(f"DROP INDEX {NEW_INDEX}"))


@pytest.fixture
def plain_layout(app):
    """Pin the plain layout of the activity table, whatever the suite's: the tests that
    ask for it read its indexes by name, or give it the indexes of 0.5, which only a
    plain table can have (the partitioned layout came later)."""
    app.config["CHRONONAUT_ACTIVITY_PARTITIONS"] = None


@pytest.fixture
def statements(db):
    """Every statement the default engine runs, with its parameters."""
    seen: list[tuple[str, Any]] = []

    def record(conn, cursor, statement, parameters, context, executemany):
        seen.append((statement, parameters))

    event.listen(db.engine, "before_cursor_execute", record)
    yield seen
    event.remove(db.engine, "before_cursor_execute", record)


def _todo_with_versions(db, models, count: int) -> Any:
    todo = models.Todo(title="v0")
    db.session.add(todo)
    db.session.commit()
    for number in range(1, count):
        todo.title = f"v{number}"
        db.session.commit()
    return todo


def _fill_history(db, rows: int) -> None:
    """Add ``rows`` snapshots of other objects in SQL, enough for the planner to prefer
    an index over reading the table."""
    db.session.execute(
        text(
            """
            INSERT INTO chrononaut_activity (table_name, changed, version, key, data)
            SELECT 'todo', now() - interval '1 day' + g * interval '1 ms', g % 6,
                   jsonb_build_object('id', 1000000 + g / 6),
                   jsonb_build_object('title', 'filler', 'version', g % 6)
            FROM generate_series(0, :rows - 1) AS g
            """
        ),
        {"rows": rows},
    )
    db.session.execute(text("ANALYZE chrononaut_activity"))
    db.session.commit()


READS = {
    "versions": lambda todo, at: todo.versions(),
    "version_at": lambda todo, at: todo.version_at(at),
    "previous_version": lambda todo, at: todo.previous_version(),
    "diff from a snapshot to the newest": lambda todo, at: todo.diff(todo.version_at(at)),
    "diff_versions": lambda todo, at: todo.diff_versions(1),
}
#: Statements each read runs, whatever the length of the history.
STATEMENTS_PER_READ = {
    "versions": 1,
    "version_at": 1,
    "previous_version": 1,
    "diff from a snapshot to the newest": 2,
    "diff_versions": 2,
}


@pytest.mark.parametrize("read", list(READS))
def test_each_read_runs_a_fixed_number_of_statements(db, models, statements, read):
    short = _todo_with_versions(db, models, 3)
    long = _todo_with_versions(db, models, 40)
    at = datetime.now(timezone.utc)
    counts = []
    for todo in (short, long):
        todo.title  # noqa: B018 - load the row first, so that only the read is counted
        statements.clear()
        READS[read](todo, at)
        counts.append(len(statements))
    assert counts == [STATEMENTS_PER_READ[read]] * 2


def _plan(db, statement: str, parameters: Any) -> str:
    """The text of the plan PostgreSQL picks for one statement the session ran."""
    connection = db.session.connection().connection.dbapi_connection
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN " + statement, parameters)
        return "\n".join(line for (line,) in cursor.fetchall())


def _read_plans(db, todo, statements, at) -> dict[str, str]:
    plans = {}
    todo.title  # noqa: B018 - load the row first, so that only the read is seen
    for name in ("versions", "version_at", "previous_version"):
        statements.clear()
        READS[name](todo, at)
        ((statement, parameters),) = statements
        plans[name] = _plan(db, statement, parameters)
    return plans


def test_reads_walk_the_table_name_key_changed_index(plain_layout, db, models, statements):
    todo = _todo_with_versions(db, models, 30)
    at = datetime.now(timezone.utc)
    _fill_history(db, 30_000)
    plans = _read_plans(db, todo, statements, at)
    # The index is in (table_name, key, changed, id) order: versions() and version_at()
    # read their rows in index order and need no sort; version_at() stops at one row.
    for name in ("versions", "version_at"):
        assert NEW_INDEX in plans[name], plans[name]
        assert "Sort" not in plans[name], plans[name]
    assert "Index Scan Backward" in plans["version_at"]
    assert "Seq Scan" not in plans["previous_version"], plans["previous_version"]


def test_a_database_with_only_the_original_index_reads_the_same_history(
    plain_layout, db, models, statements
):
    todo = _todo_with_versions(db, models, 6)
    at = todo.versions()[3].chrononaut_meta["changed"]
    expected = (todo.versions(), todo.version_at(at), todo.previous_version())
    _make_it_an_old_table(db)
    _fill_history(db, 30_000)

    assert (todo.versions(), todo.version_at(at), todo.previous_version()) == expected
    assert all(isinstance(snapshot, HistorySnapshot) for snapshot in expected[0])
    plans = _read_plans(db, todo, statements, at)
    for name, plan in plans.items():
        assert OLD_INDEX in plan, (name, plan)


def _documented_migration() -> Any:
    path = Path(__file__).parent.parent / "docs" / "snippets" / "add_history_read_index.py"
    spec = importlib.util.spec_from_file_location("add_history_read_index", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _index_names(db) -> set[str]:
    return {index["name"] for index in inspect(db.engine).get_indexes("chrononaut_activity")}


def test_the_documented_alembic_migration_swaps_the_index_of_an_old_database(
    plain_layout, db, models
):
    todo = _todo_with_versions(db, models, 3)
    expected = todo.versions()
    _make_it_an_old_table(db)
    db.session.commit()
    migration = _documented_migration()

    indexes = []
    for step in (migration.upgrade, migration.upgrade, migration.downgrade, migration.upgrade):
        with (
            db.engine.connect() as connection,
            Operations.context(MigrationContext.configure(connection)),
        ):
            step()
        indexes.append(_index_names(db) & {NEW_INDEX, OLD_INDEX})

    # Upgrading twice is harmless, and a downgrade brings the old table back.
    assert indexes == [{NEW_INDEX}, {NEW_INDEX}, {OLD_INDEX}, {NEW_INDEX}]
    assert todo.versions() == expected
