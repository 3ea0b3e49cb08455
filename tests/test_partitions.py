"""The partitioned layout of the activity table (``CHRONONAUT_ACTIVITY_PARTITIONS``),
``create_partitions``, ``flask chrononaut partitions`` and partition-drop retention.

Every test here runs in the monthly layout, whatever the suite's layout; those of a
plain table make their own app.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta

import pytest
from flask import Flask
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import event, inspect, select, text, update

from chrononaut import ChrononautException, Retention, VersionedSQLAlchemy, create_partitions
from chrononaut.history.partitions import INTERVALS, Interval, partition_ddl
from chrononaut.history.serialization import UTC
from chrononaut.maintenance.retention import PRUNE_TABLE_NAME, prune
from chrononaut.unsafe import suppress_versioning
from tests.models import define_models
from tests.viewer_data import cli_runner

MONTHLY = INTERVALS["monthly"]
TABLE = "chrononaut_activity"


@pytest.fixture
def app(app: Flask) -> Flask:
    app.config["CHRONONAUT_ACTIVITY_PARTITIONS"] = "monthly"
    return app


def month(offset: int) -> datetime:
    """The start of the month ``offset`` months from the current one."""
    start = MONTHLY.start(datetime.now(UTC))
    for _ in range(abs(offset)):
        start = MONTHLY.following(start) if offset > 0 else MONTHLY.start(start - timedelta(1))
    return start


def partition(offset: int) -> str:
    return f"{TABLE}_{MONTHLY.suffix(month(offset))}"


def partitions(session) -> list[str]:
    return session.scalars(
        text(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            f"WHERE i.inhparent = '{TABLE}'::regclass ORDER BY 1"
        )
    ).all()


def rows_by_partition(session) -> list[tuple[str, int, int, dict]]:
    """Every activity row: its partition, id, version and data."""
    return session.execute(
        text(f"SELECT tableoid::regclass::text, id, version, data FROM {TABLE} ORDER BY id")
    ).all()


def test_create_all_makes_the_partitioned_table(db, session, models):
    assert partitions(session) == sorted([partition(0), partition(1), f"{TABLE}_default"])
    strategy, key = session.execute(
        text(
            "SELECT partstrat, pg_get_partkeydef(partrelid) FROM pg_partitioned_table "
            f"WHERE partrelid = '{TABLE}'::regclass"
        )
    ).one()
    assert (strategy, key) == ("r", "RANGE (changed)")
    primary_key = session.scalar(
        text(
            "SELECT pg_get_constraintdef(oid) FROM pg_constraint "
            f"WHERE conrelid = '{TABLE}'::regclass AND contype = 'p'"
        )
    )
    assert primary_key == "PRIMARY KEY (id, changed)"
    # The same three indexes as the plain table, partitioned, with one per partition.
    indexes = session.execute(
        text(
            "SELECT c.relname, c.relkind FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
            f"WHERE i.indrelid = '{TABLE}'::regclass AND NOT i.indisprimary ORDER BY 1"
        )
    ).all()
    assert indexes == [
        ("ix_chrononaut_activity_table_name_key_changed", "I"),
        ("ix_chrononaut_activity_transaction_id", "I"),
        ("ix_chrononaut_activity_without_operation", "I"),
    ]
    attached = session.scalar(
        text(
            "SELECT count(*) FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhparent "
            "WHERE c.relname = 'ix_chrononaut_activity_table_name_key_changed'"
        )
    )
    assert attached == 3
    # The ORM identity stays `id`.
    assert [column.name for column in inspect(db.activity_cls).primary_key] == ["id"]


def test_reads_and_writes_work_unchanged(db, session, models):
    todo = models.Todo(title="one")
    session.add(todo)
    session.commit()
    todo.title = "two"
    session.commit()
    first, second = todo.versions()
    assert (first.title, second.title) == ("one", "two")
    assert todo.version_at(first.chrononaut_changed).title == "one"
    assert session.get(db.activity_cls, second.chrononaut_activity_id).data["title"] == "two"
    assert {row[0] for row in rows_by_partition(session)} == {partition(0)}


@pytest.mark.parametrize("value", ["Monthly", "hourly", "", 1, True])
def test_a_bad_setting_is_refused_at_init(database_url, value):
    app = Flask(__name__)
    app.config.update(
        SQLALCHEMY_DATABASE_URI=database_url.render_as_string(hide_password=False),
        CHRONONAUT_ACTIVITY_PARTITIONS=value,
    )
    with pytest.raises(ChrononautException) as raised:
        VersionedSQLAlchemy(app)
    assert str(raised.value) == (
        "CHRONONAUT_ACTIVITY_PARTITIONS must be one of 'daily', 'weekly', 'monthly', "
        f"'yearly', or None for the plain table, not {value!r}."
    )
    db = VersionedSQLAlchemy()
    with pytest.raises(ChrononautException):
        db.init_app(app)
    assert "sqlalchemy" not in app.extensions


def test_two_apps_of_one_extension_must_agree_on_the_layout(database_url):
    url = database_url.render_as_string(hide_password=False)
    db = VersionedSQLAlchemy()
    for value in ("monthly", "monthly", "daily"):
        app = Flask(__name__)
        app.config.update(SQLALCHEMY_DATABASE_URI=url, CHRONONAUT_ACTIVITY_PARTITIONS=value)
        if value == "daily":
            with pytest.raises(ChrononautException, match="already partitioned monthly"):
                db.init_app(app)
        else:
            db.init_app(app)


@given(moment=st.datetimes(min_value=datetime(1900, 1, 1), max_value=datetime(9998, 1, 1)))
@pytest.mark.parametrize("interval", INTERVALS.values(), ids=list(INTERVALS))
def test_each_moment_is_in_exactly_one_interval(interval: Interval, moment):
    moment = moment.replace(tzinfo=UTC)
    start = interval.start(moment)
    following = interval.following(start)
    assert start <= moment < following
    assert interval.start(following) == following
    assert interval.start(following - timedelta(microseconds=1)) == start
    # Names sort as the intervals do, and differ.
    assert interval.suffix(start) < interval.suffix(following)


def test_a_write_in_the_default_partition_moves_to_its_new_partition(db, session, models):
    session.execute(text(f"DROP TABLE {partition(0)}"))
    session.commit()
    todo = models.Todo(title="homeless")
    session.add(todo)
    session.commit()
    todo.title = "still homeless"
    session.commit()
    before = rows_by_partition(session)
    assert {row[0] for row in before} == {f"{TABLE}_default"}
    session.commit()  # ends the read's transaction, whose lock the move would wait for

    report = create_partitions(db, ahead=2)

    assert (report.created, report.moved) == ([partition(0), partition(2)], 2)
    after = rows_by_partition(session)
    assert after == [(partition(0), *row[1:]) for row in before]
    assert [s.title for s in todo.versions()] == ["homeless", "still homeless"]
    # The rows are read from their partition, and new ones land there.
    todo.title = "housed"
    session.commit()
    assert {row[0] for row in rows_by_partition(session)} == {partition(0)}
    assert create_partitions(db, ahead=2).created == []


def test_a_missing_default_partition_is_created(db, session, models):
    session.execute(text(f"DROP TABLE {TABLE}_default, {partition(1)}"))
    session.commit()
    report = create_partitions(db, ahead=1)
    assert (report.created, report.moved) == ([f"{TABLE}_default", partition(1)], 0)
    assert partitions(session) == sorted([partition(0), partition(1), f"{TABLE}_default"])


def test_the_partitions_command(app, db, session, models):
    run = cli_runner(app)
    result = run("partitions", "--ahead", "3")
    assert result.exit_code == 0, result.output
    assert result.output == (
        f"Created {partition(2)}.\nCreated {partition(3)}.\n"
        "0 rows moved from the default partition.\n"
    )
    assert partition(3) in partitions(session)
    result = run("partitions")
    assert (result.exit_code, result.output) == (
        0,
        "Every partition is there already: nothing created.\n",
    )
    result = run("partitions", "--ahead", "-1")
    assert result.exit_code == 2
    assert "-1 is not in the range 0<=x<=1000" in result.output


def test_ahead_must_be_an_integer_in_range(db, session, models):
    for ahead in (-1, 1001, 1.5, "2", None, True):
        with pytest.raises(ChrononautException, match="ahead must be an integer from 0 to 1000"):
            create_partitions(db, ahead=ahead)
    assert partitions(session) == sorted([partition(0), partition(1), f"{TABLE}_default"])


def test_a_partition_of_another_name_in_the_way_is_reported(db, session, models):
    start, end = month(2), month(3)
    session.execute(
        text(
            f"CREATE TABLE history_by_hand PARTITION OF {TABLE} "
            f"FOR VALUES FROM ('{start.isoformat()}') TO ('{end.isoformat()}')"
        )
    )
    session.commit()
    with pytest.raises(ChrononautException) as raised:
        create_partitions(db, ahead=3)
    assert str(raised.value) == (
        f"{partition(2)} would overlap a partition of another name: the table's partitions "
        "were not made by Chrononaut for CHRONONAUT_ACTIVITY_PARTITIONS = 'monthly'. "
        f"Nothing was changed for {partition(2)}."
    )
    assert partition(2) not in partitions(session)


@pytest.mark.parametrize("layout", ["plain table, no setting", "setting, plain table"])
def test_a_plain_table_is_left_alone(database_url, layout):
    url = database_url.render_as_string(hide_password=False)
    plain = Flask(__name__)
    plain.config.update(SQLALCHEMY_DATABASE_URI=url)
    with plain.app_context():
        plain_db = VersionedSQLAlchemy(plain)
        define_models(plain_db, "classic")
        plain_db.create_all()
        plain_db.engine.dispose()
    app = plain
    if layout == "setting, plain table":
        app = Flask(__name__)
        app.config.update(SQLALCHEMY_DATABASE_URI=url, CHRONONAUT_ACTIVITY_PARTITIONS="monthly")
        VersionedSQLAlchemy(app)
    with app.app_context():
        result = cli_runner(app)("partitions")
        db = app.extensions["chrononaut"]
        with db.engine.connect() as connection:
            tables = connection.scalars(
                text(
                    f"SELECT relname FROM pg_class WHERE relname LIKE '{TABLE}%' AND relkind = 'r'"
                )
            ).all()
        db.engine.dispose()
    assert result.exit_code == 1
    if layout == "setting, plain table":
        assert result.output == (
            "Error: chrononaut_activity is a plain table, not partitioned: nothing was "
            "created. Turn it into a partitioned one with the migration of "
            "docs/partitioning.rst first.\n"
        )
    else:
        assert result.output == (
            "Error: CHRONONAUT_ACTIVITY_PARTITIONS is not set: the app uses the plain "
            "chrononaut_activity table, which has no partitions to create.\n"
        )
    assert tables == [TABLE]


def past_partitions(db, session, *offsets: int) -> None:
    for offset in offsets:
        session.execute(text(partition_ddl(db.activity_cls.__table__, MONTHLY, month(offset))))
    session.commit()


@pytest.fixture
def dated(db, session, models):
    """A function that moves an object's rows, oldest first, to given moments."""
    activity = db.activity_cls

    def move(obj, moments):
        ids = [snapshot.chrononaut_activity_id for snapshot in obj.versions()]
        with suppress_versioning(allow_deleting_history=True):
            for row_id, moment in zip(ids, moments, strict=True):
                session.execute(
                    update(activity).where(activity.id == row_id).values(changed=moment)
                )
            session.commit()
        session.expire_all()

    return move


def todo_with_versions(session, models, count):
    todo = models.Todo(title="v0")
    session.add(todo)
    session.commit()
    for number in range(1, count):
        todo.title = f"v{number}"
        session.commit()
    return todo


def test_expired_partitions_are_dropped_whole(db, session, models, dated):
    past_partitions(db, session, -6, -5, -4)
    models.Todo.__chrononaut_retention__ = Retention(days=60)
    old = todo_with_versions(session, models, 3)
    kept = todo_with_versions(session, models, 3)
    # `old` changed twice six months ago and once five months ago; `kept` four months
    # ago (its state at the cutoff), then this month.
    dated(old, [month(-6) + timedelta(days=1), month(-6) + timedelta(days=2), month(-5)])
    dated(kept, [month(-5) + timedelta(days=3), month(-4) + timedelta(days=1), month(0)])
    probes = [month(-4) + timedelta(days=2), datetime.now(UTC) - timedelta(days=60)]
    expected = {
        todo.id: [todo.version_at(moment).title for moment in probes] for todo in (old, kept)
    }

    session.commit()  # a transaction that read the table would hold the drop up
    dry = prune(db, dry_run=True)
    assert (dry.partitions, dry.rows) == ([partition(-6)], 3)

    report = prune(db)

    # Month -6 holds only rows the rule lets go: dropped whole. Month -5 holds the
    # state of `old` at the cutoff: pruned row by row (the row of `kept`).
    assert report.partitions == [partition(-6)]
    assert report.rows == 3
    assert partition(-6) not in partitions(session)
    assert partition(-5) in partitions(session)
    session.expire_all()
    assert [s.title for s in old.versions()] == ["v2"]
    assert [s.title for s in kept.versions()] == ["v1", "v2"]
    for todo in (old, kept):
        assert [todo.version_at(moment).title for moment in probes] == expected[todo.id]
    record = session.scalars(
        select(db.activity_cls).where(db.activity_cls.table_name == PRUNE_TABLE_NAME)
    ).one()
    assert record.data["partitions"] == [partition(-6)]
    assert record.data["models"]["Todo"]["rows"] == 3


def test_a_partition_with_a_row_of_a_model_without_a_rule_is_kept(db, session, models, dated):
    past_partitions(db, session, -6)
    models.Todo.__chrononaut_retention__ = Retention(days=60)
    todo = todo_with_versions(session, models, 2)
    user = models.User(name="kept")
    session.add(user)
    session.commit()
    dated(todo, [month(-6), month(-6) + timedelta(days=1)])
    dated(user, [month(-6)])
    session.commit()
    report = prune(db)
    assert report.partitions == []
    assert report.rows == 1
    assert partition(-6) in partitions(session)
    # The rows of both, then the prune's record.
    assert [row[0] for row in rows_by_partition(session)] == [
        partition(-6),
        partition(-6),
        partition(0),
    ]


def test_a_partition_is_pruned_row_by_row_while_a_transaction_reads_the_table(
    db, session, models, dated
):
    past_partitions(db, session, -6)
    models.Todo.__chrononaut_retention__ = Retention(days=60)
    todo = todo_with_versions(session, models, 3)
    dated(todo, [month(-6), month(-6) + timedelta(days=1), month(-4)])
    assert [s.title for s in todo.versions()] == ["v0", "v1", "v2"]  # left open

    report = prune(db)

    # Detaching would have waited for the open transaction: it gave up, and the rows
    # were deleted one by one.
    assert (report.partitions, report.rows) == ([], 2)
    session.commit()
    assert partition(-6) in partitions(session)
    assert [s.title for s in todo.versions()] == ["v2"]


def explained(db, read) -> list[str]:
    """The plans PostgreSQL carried out for the statements ``read()`` sends that read
    the activity table, each as text (EXPLAIN ANALYZE, without costs or times)."""
    sent = []

    def keep(conn, cursor, statement, parameters, context, executemany):
        if TABLE in statement and "to_regclass" not in statement:
            sent.append((statement, parameters))

    event.listen(db.engine, "before_cursor_execute", keep)
    try:
        read()
    finally:
        event.remove(db.engine, "before_cursor_execute", keep)
    plans = []
    with db.engine.connect() as connection:
        cursor = connection.connection.cursor()
        # The tables are tiny, so reading them whole would be cheapest: the question is
        # what the planner does when it may not, as with a long history.
        cursor.execute("SET enable_seqscan = off")
        for statement, parameters in sent:
            cursor.execute(
                "EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF) " + statement, parameters
            )
            plans.append("\n".join(line for (line,) in cursor.fetchall()))
    return plans


def test_dated_reads_read_only_the_partitions_they_need(db, session, models, dated):
    past_partitions(db, session, -3, -2, -1)
    todos = [todo_with_versions(session, models, 2) for _ in range(3)]
    for todo in todos:
        dated(todo, [month(-3) + timedelta(days=1), month(-2) + timedelta(days=1)])
    session.execute(text(f"ANALYZE {TABLE}"))
    session.commit()
    at = month(-2) + timedelta(days=2)

    (version_at,) = explained(db, lambda: todos[0].version_at(at))
    (as_of,) = explained(db, lambda: session.execute(select(models.Todo.as_of(at))).all())

    # Partitions after `at` are pruned when the plan is made...
    later = [partition(-1), partition(0), partition(1)]
    assert all(name not in version_at for name in later)
    assert f"Index Scan Backward using {partition(-2)}_table_name_key_changed_id_idx" in (
        version_at
    )
    newest, lookup = as_of.split("Subquery Scan on chrononaut_state")
    # The gathering of deletes written without an operation (an InitPlan) runs only
    # if the read meets such a row, and this one meets none.
    unrecorded, newest = newest.split("Subquery Scan on chrononaut_ordered")
    init_plan = unrecorded.split("InitPlan", 1)[1]
    assert "(never executed)" in init_plan and "(actual" not in init_plan
    assert all(name not in newest for name in later)
    # ... and each object's row is then read from its one partition, by its key.
    lookups = re.findall(
        r"Index Scan using (\w+)_pkey on \w+ \w+ \((never executed|actual)", lookup
    )
    assert {name for name, run in lookups if run == "actual"} == {partition(-2)}
    assert "Seq Scan" not in lookup.replace("(never executed)", "")


def test_the_prune_command_names_the_partitions_dropped(app, db, session, models, dated):
    past_partitions(db, session, -6)
    models.Todo.__chrononaut_retention__ = Retention(days=60)
    todo = todo_with_versions(session, models, 3)
    dated(todo, [month(-6), month(-6) + timedelta(days=1), month(-4)])
    session.commit()
    run = cli_runner(app)
    dry = run("prune", "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert f"Partitions would be dropped whole: {partition(-6)}.\n" in dry.output
    assert "Dry run: 2 rows would be removed." in dry.output
    done = run("prune")
    assert done.exit_code == 0, done.output
    assert f"Partitions dropped whole: {partition(-6)}.\n" in done.output
    assert "2 rows removed; the run is recorded in the activity table." in done.output
    assert partition(-6) not in partitions(session)
