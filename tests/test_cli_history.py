"""``flask chrononaut history`` and ``flask chrononaut activity``."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import pytest

from chrononaut.history.serialization import UTC
from tests.viewer_data import acting_as, todo_history


@pytest.fixture
def run(app, db):
    runner = app.test_cli_runner()

    def run(*args):
        # A wide terminal, so that rich does not wrap cells in the middle of a value.
        return runner.invoke(args=["chrononaut", *args], env={"COLUMNS": "200"})

    return run


def test_history_prints_each_version_and_its_changes(app, run, session, models):
    todo = todo_history(app, session, models)
    result = run("history", "Todo", str(todo.id))
    assert result.exit_code == 0, result.output
    out = result.output
    assert out.index("Version 0") < out.index("Version 1") < out.index("Version 3")
    assert "| ada@example.org | 10.0.0.1" in out
    assert "Version 1 |" in out and "grace@example.org | 10.0.0.2 | rationale: clearer title" in out
    assert "ticket: T-7" in out
    title_rows = [line for line in out.splitlines() if "│ title " in line]
    assert [[cell.strip() for cell in line.split("│")[2:4]] for line in title_rows] == [
        ["null", "Draft"],
        ["Draft", "Final"],
    ]
    assert "changed (hidden)" in out
    assert "hunter2" not in out and "correct horse" not in out
    assert "deleted" not in out


def test_history_of_a_composite_key_and_a_deleted_object(run, session, models):
    translation = models.Translation(locale="en", slug="intro", text="[bold]Hello[/bold]")
    session.add(translation)
    session.commit()
    session.delete(translation)
    session.commit()
    result = run("history", "translation", json.dumps({"locale": "en", "slug": "intro"}))
    assert result.exit_code == 0, result.output
    # Stored text is printed as it is, not read as rich markup.
    assert "[bold]Hello[/bold]" in result.output
    assert "(no tracked column changed)" in result.output
    assert result.output.rstrip().endswith("has been deleted.")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["Nope", "1"], "no versioned model named 'Nope'"),
        (["Todo", "abc"], "'abc' is not a valid id of Todo"),
        (["Translation", "en"], "Translation has a composite key"),
        (["Todo", "999"], "Todo 999 has no recorded history."),
    ],
)
def test_history_explains_bad_arguments(run, models, args, message):
    result = run("history", *args)
    assert result.exit_code != 0
    assert message in " ".join(result.output.split())


def test_activity_prints_the_feed_newest_first_with_filters(app, run, session, models):
    todo_history(app, session, models)
    with acting_as(app, "grace@example.org", "10.0.0.2"):
        session.add(models.Country(code="NO", name="Norway"))
        session.commit()

    result = run("activity")
    assert result.exit_code == 0, result.output
    rows = [line for line in result.output.splitlines() if "│ todo " in line or "│ country" in line]
    assert [row.split("│")[2].strip() for row in rows] == ["country"] + ["todo"] * 4
    assert "5 changes shown." in result.output
    assert "hidden columns changed" in result.output
    assert "hunter2" not in result.output

    result = run("activity", "--model", "Todo", "--user", "grace@example.org", "--limit", "1")
    rows = [line.split("│")[2:5] for line in result.output.splitlines() if "│ todo " in line]
    assert [[cell.strip() for cell in row] for row in rows] == [["todo", "1", "3"]]
    assert "1 change shown." in result.output

    later = (datetime.now(UTC) + timedelta(minutes=5)).isoformat()
    assert "0 changes shown." in run("activity", "--since", later).output
    assert "5 changes shown." in run("activity", "--until", later).output


def test_activity_refuses_a_time_that_is_not_iso(run, models):
    result = run("activity", "--since", "last tuesday")
    assert result.exit_code == 2
    assert "'last tuesday' is not an ISO 8601 date or time" in result.output
