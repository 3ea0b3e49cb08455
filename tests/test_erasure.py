"""``chrononaut.erase``: values removed from one object's history, the rest kept."""

from __future__ import annotations

import json
import re
import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import select, text

from chrononaut import acting_as, allow_erasure, erase, rationale
from chrononaut.exceptions import (
    ChrononautException,
    ErasedAttributeError,
    InvalidArgumentError,
    ProtectedHistoryError,
)
from chrononaut.history.snapshot import ERASED
from chrononaut.maintenance.erasure import ERASURE_TABLE_NAME
from chrononaut.unsafe import suppress_versioning
from tests.viewer_data import cli_runner, viewer_client

TITLES = ("Dossier Kowalczyk", "Dossier Kowalczyk", "Dossier Nakamura")
TEXTS = ("born 1961-04-12", "born 1962-04-12", "lives at 9 Elm Row")


def activity_text(session):
    """Every activity row, every column, as PostgreSQL writes it out."""
    return session.execute(
        text("SELECT coalesce(string_agg(a::text, ' '), '') FROM chrononaut_activity a")
    ).scalar()


def three_versions(session, models):
    todo = models.Todo(title=TITLES[0], text=TEXTS[0], secret="s3cret-pin")
    session.add(todo)
    session.commit()
    todo.text = TEXTS[1]
    session.commit()
    with rationale("moved"):
        todo.title, todo.text = TITLES[2], TEXTS[2]
        session.commit()
    return todo


def test_erased_values_leave_every_row_and_the_versions_stay(session, models):
    todo = three_versions(session, models)
    before = todo.versions()
    with acting_as("dpo@example.org"), allow_erasure():
        erasure = erase(models.Todo, todo.id, ["title"], reason="request 17")
    assert (erasure.columns, erasure.snapshots) == (("title",), 3)

    stored = activity_text(session)
    assert not any(title in stored for title in TITLES)
    assert all(value in stored for value in TEXTS)
    session.expire_all()
    after = todo.versions()
    assert [s.chrononaut_version for s in after] == [0, 1, 2]
    assert [(s.chrononaut_changed, dict(s.chrononaut_user_info)) for s in after] == [
        (s.chrononaut_changed, dict(s.chrononaut_user_info)) for s in before
    ]
    assert [s.text for s in after] == list(TEXTS)
    assert after[2].chrononaut_extra_info["rationale"] == "moved"
    for snapshot in after:
        with pytest.raises(ErasedAttributeError, match="'title' was erased"):
            _ = snapshot.title
    with pytest.raises(ErasedAttributeError):
        _ = todo.version_at(after[1].chrononaut_changed).title
    # The live row is the application's to change.
    assert todo.title == TITLES[2]


def test_diffs_show_erased_values_changed_where_they_were(session, models):
    todo = three_versions(session, models)
    with allow_erasure():
        erase(models.Todo, {"id": todo.id}, ["title", "text"], reason="request 18")
    session.expire_all()
    assert todo.diff_versions(0, 1) == {"text": (ERASED, ERASED)}
    assert todo.diff_versions(1, 2) == {"title": (ERASED, ERASED), "text": (ERASED, ERASED)}
    assert todo.diff(None, todo.versions()[0]) == {
        "id": (None, todo.id),
        "done": (None, False),
        "priority": (None, None),
        "due_at": (None, None),
        "title": (None, ERASED),
        "text": (None, ERASED),
    }
    first, _, last = todo.versions()
    assert first.diff(last) == {"title": (ERASED, ERASED), "text": (ERASED, ERASED)}
    assert repr(ERASED) == "ERASED" and str(ERASED) == "(erased)"


def test_values_recorded_after_an_erasure_never_equal_an_erased_one(session, models):
    todo = three_versions(session, models)
    with allow_erasure():
        erase(models.Todo, todo.id, ["title"], reason="first request")
    todo.title = TITLES[0]
    session.commit()
    with allow_erasure():
        second = erase(models.Todo, todo.id, ["title"], reason="second request")
    assert second.snapshots == 1
    session.expire_all()
    assert todo.diff_versions(2, 3) == {"title": (ERASED, ERASED)}
    assert TITLES[0] not in activity_text(session)


def test_erasing_every_value_by_default(session, models):
    todo = three_versions(session, models)
    # A value stored before the column was hidden is erased as well.
    with suppress_versioning(allow_deleting_history=True):
        session.execute(
            text('UPDATE chrononaut_activity SET data = data || \'{"secret": "old-pin"}\'')
        )
        session.commit()
    with allow_erasure():
        erasure = erase(models.Todo, todo.id, reason="everything")
    assert erasure.columns == ("done", "due_at", "priority", "secret", "text", "title")
    stored = activity_text(session)
    assert not any(value in stored for value in (*TITLES, *TEXTS, "old-pin"))
    session.expire_all()
    assert [dict(s.chrononaut_data) for s in todo.versions()] == [
        {"id": todo.id, "version": 0},
        {"id": todo.id, "version": 1},
        {"id": todo.id, "version": 2},
    ]
    assert dict(todo.versions()[0].chrononaut_key) == {"id": todo.id}


def test_the_erasure_is_recorded_and_no_erasure_reaches_the_record(db, session, models):
    todo = three_versions(session, models)
    with acting_as("dpo@example.org", ticket="GDPR-4"), allow_erasure():
        erase(models.Todo, todo.id, ["title"], reason="request 19")
        erase(models.Todo, todo.id, ["text"], reason="request 20")
    activity = db.activity_cls
    records = session.scalars(
        select(activity).where(activity.table_name == ERASURE_TABLE_NAME).order_by(activity.id)
    ).all()
    assert [
        (r.version, r.key, r.data, r.user_info["user_id"], r.extra_info, r.operation)
        for r in records
    ] == [
        (
            0,
            {"table_name": "todo", "key": {"id": todo.id}},
            {"columns": ["title"], "snapshots": 3, "version": 0},
            "dpo@example.org",
            {"ticket": "GDPR-4", "reason": "request 19"},
            "insert",
        ),
        (
            1,
            {"table_name": "todo", "key": {"id": todo.id}},
            {"columns": ["text"], "snapshots": 3, "version": 1},
            "dpo@example.org",
            {"ticket": "GDPR-4", "reason": "request 20"},
            "update",
        ),
    ]
    # The guard still refuses anyone else.
    with pytest.raises(ProtectedHistoryError):
        session.delete(records[0])
        session.flush()
    session.rollback()


def test_erasure_runs_only_inside_allow_erasure(session, models):
    todo = three_versions(session, models)
    before = activity_text(session)
    with pytest.raises(ChrononautException, match=r"inside `with chrononaut.allow_erasure\(\):`"):
        erase(models.Todo, todo.id, ["title"], reason="no block")
    with allow_erasure():
        pass
    with pytest.raises(ChrononautException, match="allow_erasure"):
        erase(models.Todo, todo.id, ["title"], reason="block closed")
    assert activity_text(session) == before


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"columns": ["id"]}, "'id' is not a column attribute of Todo"),
        ({"columns": ["version"]}, "'version' is not a column attribute"),
        ({"columns": ["nope"]}, "'nope' is not a column attribute"),
        ({"columns": "title"}, "non-empty list"),
        ({"columns": []}, "non-empty list"),
        ({"reason": "  "}, "needs a reason"),
        ({"key": {"todo_id": 1}}, "names the attributes id"),
    ],
)
def test_bad_arguments_are_refused_and_nothing_changes(session, models, arguments, message):
    todo = three_versions(session, models)
    before = activity_text(session)
    call = {"key": todo.id, "columns": None, "reason": "why", **arguments}
    with allow_erasure(), pytest.raises(InvalidArgumentError, match=message):
        erase(models.Todo, call["key"], call["columns"], reason=call["reason"])
    assert activity_text(session) == before


def test_an_object_without_history_or_a_model_that_is_not_versioned(session, models):
    with allow_erasure():
        with pytest.raises(ChrononautException, match=r'Todo \{"id": 404\} has no recorded'):
            erase(models.Todo, 404, reason="typo")
        with pytest.raises(InvalidArgumentError, match="not a versioned model"):
            erase(models.Note, 1, reason="typo")


def test_a_composite_key(session, models):
    translation = models.Translation(locale="pl", slug="bio", text="Zofia Wrona, 1970")
    session.add(translation)
    session.commit()
    with allow_erasure():
        with pytest.raises(InvalidArgumentError, match="composite key"):
            erase(models.Translation, "pl", reason="why")
        erasure = erase(models.Translation, {"locale": "pl", "slug": "bio"}, ["text"], reason="why")
    assert erasure.snapshots == 1
    assert "Zofia" not in activity_text(session)


def test_no_page_and_no_command_shows_an_erased_value(app, db, session, models):
    todo = three_versions(session, models)
    with allow_erasure():
        erase(models.Todo, todo.id, ["title", "text"], reason="request 21")
    client = viewer_client(app)
    pages = [
        client.get(f"/history/objects/Todo?key={todo.id}"),
        client.get("/history/activity"),
        client.get("/history/activity?page=2"),
    ]
    assert [page.status_code for page in pages] == [200, 200, 200]
    run = cli_runner(app)
    outputs = [
        run("history", "Todo", str(todo.id), *options)
        for options in ((), ("--format", "json"), ("--format", "csv"))
    ] + [run("activity", *options) for options in ((), ("--format", "json"), ("--format", "csv"))]
    assert [result.exit_code for result in outputs] == [0] * 6
    shown = [page.get_data(as_text=True) for page in pages] + [r.output for r in outputs]
    for values in (TITLES, TEXTS):
        assert not any(value in output for value in values for output in shown)
    object_page, history_table, history_json = shown[0], shown[3], shown[4]
    assert "(erased)" in object_page and "(erased)" in history_table
    versions = json.loads(history_json)["versions"]
    assert versions[1]["changes"] == {"text": {"before": "(erased)", "after": "(erased)"}}
    assert [(v["state"]["title"], v["state"]["text"]) for v in versions] == [
        ("(erased)", "(erased)")
    ] * 3
    states = re.findall(r'<table class="state">(.*?)</table>', object_page, re.DOTALL)
    assert len(states) == 3
    assert all(re.search(r"title.*?\(erased\)", state, re.DOTALL) for state in states)


def test_the_erase_command(app, db, session, models):
    todo = three_versions(session, models)
    run = cli_runner(app)
    result = run(
        "erase", "Todo", str(todo.id), "--column", "title", "--reason", "request 22",
        "--yes", "--actor", "dpo",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert result.output == (
        f"Erased title from 3 snapshots of Todo {todo.id}; the erasure is recorded.\n"
    )
    assert not any(title in activity_text(session) for title in TITLES)
    record = session.execute(
        text("SELECT user_info, extra_info FROM chrononaut_activity WHERE table_name = :t"),
        {"t": ERASURE_TABLE_NAME},
    ).one()
    assert (record.user_info["user_id"], record.extra_info) == ("dpo", {"reason": "request 22"})


def test_the_erase_command_asks_first_and_checks_its_input(app, db, session, models):
    todo = three_versions(session, models)
    before = activity_text(session)
    runner = app.test_cli_runner()
    declined = runner.invoke(
        args=["chrononaut", "erase", "Todo", str(todo.id), "--reason", "r"], input="n\n"
    )
    assert declined.exit_code == 1 and "Aborted" in declined.output
    run = cli_runner(app)
    bad_key = run("erase", "Todo", "x", "--reason", "r", "--yes")
    assert bad_key.exit_code == 2 and "'x' is not a valid id of Todo" in bad_key.output
    bad_column = run("erase", "Todo", str(todo.id), "--column", "id", "--reason", "r", "--yes")
    assert bad_column.exit_code == 1 and "'id' is not a column attribute" in bad_column.output
    no_reason = run("erase", "Todo", str(todo.id), "--yes")
    assert no_reason.exit_code == 2 and "Missing option '--reason'" in no_reason.output
    assert activity_text(session) == before


def test_erasure_holds_for_any_values(app, db, session, models):
    @settings(max_examples=25, deadline=None)
    @given(
        values=st.lists(
            st.text(
                st.characters(exclude_characters="\x00", exclude_categories=["Cs"]),
                min_size=1,
                max_size=20,
            ),
            min_size=1,
            max_size=4,
        )
    )
    def erased_everywhere(values):
        titles = ["\u03be" + value for value in values]
        titles = [t for i, t in enumerate(titles) if i == 0 or t != titles[i - 1]]
        todo = models.Todo(title=titles[0])
        session.add(todo)
        session.commit()
        for title in titles[1:]:
            todo.title = title
            session.commit()
        with allow_erasure():
            erase(models.Todo, todo.id, ["title"], reason="any")
        session.expire_all()
        stored = session.execute(
            text("SELECT string_agg(a::text, ' ') FROM chrononaut_activity a WHERE key = :k"),
            {"k": json.dumps({"id": todo.id})},
        ).scalar()
        assert not any(json.dumps(title, ensure_ascii=False)[1:-1] in stored for title in titles)
        versions = todo.versions()
        assert len(versions) == len(titles)
        for older in versions:
            for newer in versions:
                differ = titles[older.chrononaut_version] != titles[newer.chrononaut_version]
                assert older.diff(newer).get("title") == ((ERASED, ERASED) if differ else None)

    erased_everywhere()


def test_a_change_recorded_during_an_erasure_keeps_the_live_value(app, db, session, models):
    todo = three_versions(session, models)
    todo_id = todo.id
    flushed, erased = threading.Event(), threading.Event()
    outcome = {}

    def writer():
        # Its transaction records a version and stays open over the erasure.
        with app.app_context():
            try:
                mine = db.session.get(models.Todo, todo_id)
                mine.text = "written meanwhile"
                db.session.flush()
                flushed.set()
                assert erased.wait(timeout=60)
                db.session.commit()
                outcome["write"] = "committed"
            except BaseException as error:
                outcome["write"] = error
                flushed.set()
            finally:
                db.session.remove()

    thread = threading.Thread(target=writer)
    thread.start()
    assert flushed.wait(timeout=60)
    try:
        with allow_erasure():
            erasure = erase(models.Todo, todo_id, ["title"], reason="during a write")
    finally:
        erased.set()
        thread.join(timeout=60)
    assert not thread.is_alive() and outcome["write"] == "committed"
    assert erasure.snapshots == 3
    session.expire_all()
    newest = todo.versions()[-1]
    # The erasure saw the rows committed before it; the new one holds the live row's title.
    assert (newest.chrononaut_version, newest.title, newest.text) == (
        3,
        TITLES[2],
        "written meanwhile",
    )


def test_an_activity_table_without_operations(db, session, models):
    todo = three_versions(session, models)
    session.execute(text("ALTER TABLE chrononaut_activity DROP COLUMN operation"))
    session.execute(text("ALTER TABLE chrononaut_activity DROP COLUMN transaction_id"))
    session.commit()
    db.engine.dispose()
    with allow_erasure():
        assert erase(models.Todo, todo.id, ["title"], reason="old table").snapshots == 3
    assert not any(title in activity_text(session) for title in TITLES)
    record = session.execute(
        text("SELECT version, data FROM chrononaut_activity WHERE table_name = :t"),
        {"t": ERASURE_TABLE_NAME},
    ).one()
    assert (record.version, record.data["columns"]) == (0, ["title"])
