"""``flask chrononaut history`` and ``activity`` with ``--format json`` and ``--format csv``:
the documented schema, exactly."""

from __future__ import annotations

import csv
import io
import json
import re

import pytest

from chrononaut import rationale
from tests.models import Priority
from tests.viewer_data import OPERATIONS, acting_as, cli_runner, todo_history, two_lives

ISO_UTC = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}\+00:00")
# Stored text meant to steer a terminal: ESC, CSI, BEL, a bidirectional override, a
# line separator and a newline.
TRICKS = "\x1b[2J\x9b8m\x07\u202eevil\u2028x\ny"


@pytest.fixture
def run(app, db):
    return cli_runner(app)


def without_times(document):
    """``document`` with every ``changed`` time, checked to be ISO 8601 in UTC, as "T"."""
    if isinstance(document, list):
        return [without_times(item) for item in document]
    if isinstance(document, dict):
        if "changed" in document:
            assert ISO_UTC.fullmatch(document["changed"]), document["changed"]
            document = {**document, "changed": "T"}
        return {name: without_times(value) for name, value in document.items()}
    return document


def parsed_json(result):
    assert result.exit_code == 0, result.output
    return without_times(json.loads(result.output))


def parsed_csv(result):
    assert result.exit_code == 0, result.output
    rows = list(csv.reader(io.StringIO(result.output)))
    return rows[0], [[ISO_UTC.sub("T", cell) for cell in row] for row in rows[1:]]


def who(version, kind, user, address, **extra):
    return {
        "version": version,
        "kind": kind,
        "changed": "T",
        "user_id": user,
        "remote_addr": address,
        "extra_info": extra,
    }


ADA = ("ada@example.org", "10.0.0.1")
GRACE = ("grace@example.org", "10.0.0.2")


def test_history_as_json(app, run, session, models):
    todo = todo_history(app, session, models)
    state = {"done": False, "due_at": None, "id": todo.id, "priority": None, "text": "first"}
    assert parsed_json(run("history", "Todo", str(todo.id), "--format", "json")) == {
        "model": "Todo",
        "table": "todo",
        "key": {"id": todo.id},
        "deleted": False,
        "versions": [
            {
                **who(0, "created", *ADA),
                "changes": {
                    column: {"before": None, "after": value}
                    for column, value in {**state, "title": "Draft"}.items()
                },
                "hidden_changed": ["secret"],
                "state": {**state, "title": "Draft"},
            },
            {
                **who(1, "changed", *GRACE, rationale="clearer title"),
                "changes": {"title": {"before": "Draft", "after": "Final"}},
                "hidden_changed": [],
                "state": {**state, "title": "Final"},
            },
            {
                **who(2, "changed", *ADA),
                "changes": {},
                "hidden_changed": ["secret"],
                "state": {**state, "title": "Final"},
            },
            {
                **who(3, "changed", *GRACE, ticket="T-7"),
                "changes": {"done": {"before": False, "after": True}},
                "hidden_changed": [],
                "state": {**state, "title": "Final", "done": True},
            },
        ],
    }


NOBODY = (None, None)


@pytest.mark.parametrize("operations", OPERATIONS)
def test_both_lives_of_a_key_used_again_as_json(run, session, models, operations):
    two_lives(session, models, operations)
    first, renamed = {"code": "NO", "name": "Norway"}, {"code": "NO", "name": "Norge"}
    second = {"code": "NO", "name": "Noreg"}
    assert parsed_json(run("history", "Country", "NO", "--format", "json")) == {
        "model": "Country",
        "table": "country",
        "key": {"code": "NO"},
        "deleted": False,
        "versions": [
            {
                **who(0, "created", *NOBODY),
                "changes": {
                    name: {"before": None, "after": value} for name, value in first.items()
                },
                "hidden_changed": [],
                "state": first,
            },
            {
                **who(1, "changed", *NOBODY),
                "changes": {"name": {"before": "Norway", "after": "Norge"}},
                "hidden_changed": [],
                "state": renamed,
            },
            {**who(2, "deleted", *NOBODY), "changes": {}, "hidden_changed": [], "state": renamed},
            {
                **who(0, "created", *NOBODY),
                "changes": {
                    name: {"before": None, "after": value} for name, value in second.items()
                },
                "hidden_changed": [],
                "state": second,
            },
        ],
    }
    session.delete(session.get(models.Country, "NO"))
    session.commit()
    document = parsed_json(run("history", "Country", "NO", "--format", "json"))
    assert document["deleted"] is True
    assert [version["kind"] for version in document["versions"]][-2:] == ["created", "deleted"]
    changes = parsed_json(run("activity", "--format", "json", "--kind", "deleted"))["changes"]
    assert [(change["version"], change["kind"], change["columns"]) for change in changes] == [
        (1, "deleted", []),
        (2, "deleted", []),
    ]


@pytest.mark.parametrize("operations", OPERATIONS)
def test_both_lives_of_a_key_used_again_as_csv(run, session, models, operations):
    two_lives(session, models, operations)
    _, rows = parsed_csv(run("history", "Country", "NO", "--format", "csv"))
    assert rows == [
        ["0", "created", "T", "—", "—", "", "code", "—", "NO"],
        ["0", "created", "T", "—", "—", "", "name", "—", "Norway"],
        ["1", "changed", "T", "—", "—", "", "name", "Norway", "Norge"],
        ["2", "deleted", "T", "—", "—", "", "", "", ""],
        ["0", "created", "T", "—", "—", "", "code", "—", "NO"],
        ["0", "created", "T", "—", "—", "", "name", "—", "Noreg"],
    ]
    _, rows = parsed_csv(run("activity", "--format", "csv"))
    assert [row[1:6] for row in rows] == [
        ["created", "Country", "NO", "0", "code, name"],
        ["deleted", "Country", "NO", "2", ""],
        ["changed", "Country", "NO", "1", "name"],
        ["created", "Country", "NO", "0", "code, name"],
    ]


def test_activity_as_json(app, run, session, models):
    todo = todo_history(app, session, models)
    key = {"id": todo.id}
    assert parsed_json(run("activity", "--format", "json", "--model", "Todo")) == {
        "changes": [
            {"model": "Todo", "table": "todo", "key": key, **change}
            for change in [
                {**who(3, "changed", *GRACE, ticket="T-7"), "columns": ["done"],
                 "hidden_changed": []},
                {**who(2, "changed", *ADA), "columns": [], "hidden_changed": ["secret"]},
                {**who(1, "changed", *GRACE, rationale="clearer title"), "columns": ["title"],
                 "hidden_changed": []},
                {**who(0, "created", *ADA), "columns": ["done", "id", "text", "title"],
                 "hidden_changed": ["secret"]},
            ]
        ]
    }  # fmt: skip


def test_history_as_csv(app, run, session, models):
    todo = todo_history(app, session, models)
    header, rows = parsed_csv(run("history", "Todo", str(todo.id), "--format", "csv"))
    assert header == [
        "version",
        "kind",
        "changed",
        "user_id",
        "remote_addr",
        "change_info",
        "column",
        "before",
        "after",
    ]
    first = ["0", "created", "T", *ADA, ""]
    assert rows == [
        [*first, "done", "—", "false"],
        [*first, "due_at", "—", "—"],
        [*first, "id", "—", str(todo.id)],
        [*first, "priority", "—", "—"],
        [*first, "text", "—", "first"],
        [*first, "title", "—", "Draft"],
        [*first, "secret", "", "changed (hidden)"],
        ["1", "changed", "T", *GRACE, "rationale: clearer title", "title", "Draft", "Final"],
        ["2", "changed", "T", *ADA, "", "secret", "", "changed (hidden)"],
        ["3", "changed", "T", *GRACE, "ticket: T-7", "done", "false", "true"],
    ]


def test_activity_as_csv(app, run, session, models):
    todo = todo_history(app, session, models)
    session.add(models.Country(code="NO", name="Norway"))
    session.commit()
    header, rows = parsed_csv(run("activity", "--format", "csv", "--limit", "3"))
    assert header == [
        "changed",
        "kind",
        "model",
        "key",
        "version",
        "columns",
        "user_id",
        "remote_addr",
        "change_info",
    ]
    assert rows == [
        ["T", "created", "Country", "NO", "0", "code, name", "—", "—", ""],
        ["T", "changed", "Todo", str(todo.id), "3", "done", *GRACE, "ticket: T-7"],
        ["T", "changed", "Todo", str(todo.id), "2", "secret (hidden)", *ADA, ""],
    ]


def test_enum_values_are_member_names_in_every_format(run, session, models):
    todo = models.Todo(title="x", priority=Priority.LOW)
    session.add(todo)
    session.commit()
    todo.priority = Priority.HIGH
    session.commit()
    document = parsed_json(run("history", "Todo", str(todo.id), "--format", "json"))
    assert document["versions"][1]["changes"] == {"priority": {"before": "LOW", "after": "HIGH"}}
    _, rows = parsed_csv(run("history", "Todo", str(todo.id), "--format", "csv"))
    assert rows[-1][-3:] == ["priority", "LOW", "HIGH"]
    table = run("history", "Todo", str(todo.id)).output
    assert "│ priority │ LOW    │ HIGH  │" in table
    assert "Priority." not in table


def test_stored_control_characters_cannot_reach_the_terminal_in_any_format(
    app, run, session, models
):
    with acting_as(app, TRICKS, "10.0.0.1"), rationale(TRICKS):
        todo = models.Todo(title=TRICKS)
        session.add(todo)
        session.commit()
    unsafe = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u2028\u202e]")
    history = ("history", "Todo", str(todo.id))
    for command in (history, ("activity",)):
        as_json = run(*command, "--format", "json")
        assert not unsafe.findall(as_json.output)
        # JSON escapes them, and reads back exactly what was stored.
        document = json.loads(as_json.output)
        change = document["versions"][0] if command == history else document["changes"][0]
        assert change["user_id"] == TRICKS
        assert change["extra_info"] == {"rationale": TRICKS}
        as_csv = run(*command, "--format", "csv")
        assert not unsafe.findall(as_csv.output)
        assert r"\x1b[2J\x9b8m\x07\u202eevil\u2028x\ny" in as_csv.output


def test_hidden_values_are_in_no_format(app, run, session, models):
    todo = todo_history(app, session, models)
    for command in (("history", "Todo", str(todo.id)), ("activity",)):
        for output_format in ("table", "json", "csv"):
            result = run(*command, "--format", output_format)
            assert result.exit_code == 0, result.output
            assert "hunter2" not in result.output and "correct horse" not in result.output


def test_an_unknown_format_is_refused(run, models):
    result = run("activity", "--format", "xml")
    assert result.exit_code == 2
    assert "'xml' is not one of 'table', 'json', 'csv'" in result.output
