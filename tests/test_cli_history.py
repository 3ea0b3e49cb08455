"""``flask chrononaut history`` and ``flask chrononaut activity``."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from datetime import datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import CHAR, Column, String, insert, select

from chrononaut import Versioned, extra_change_info, rationale
from chrononaut.history.serialization import UTC
from chrononaut.interfaces.text import (
    visible,
)
from chrononaut.unsafe import suppress_versioning
from tests.viewer_data import OPERATIONS, acting_as, cli_runner, todo_history, two_lives


@pytest.fixture
def run(app, db):
    return cli_runner(app)


def test_history_prints_each_version_and_its_changes(app, run, session, models):
    todo = todo_history(app, session, models)
    result = run("history", "Todo", str(todo.id))
    assert result.exit_code == 0, result.output
    out = result.output
    headings = [line for line in out.splitlines() if line.startswith("Version ")]
    assert [re.sub(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", "TIME", line) for line in headings] == [
        "Version 0 | created | TIME | user: ada@example.org | address: 10.0.0.1",
        "Version 1 | changed | TIME | user: grace@example.org | address: 10.0.0.2 | "
        "rationale: clearer title",
        "Version 2 | changed | TIME | user: ada@example.org | address: 10.0.0.1",
        "Version 3 | changed | TIME | user: grace@example.org | address: 10.0.0.2 | ticket: T-7",
    ]
    title_rows = [line for line in out.splitlines() if "│ title " in line]
    assert [[cell.strip() for cell in line.split("│")[2:4]] for line in title_rows] == [
        ["—", "Draft"],
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


@pytest.mark.parametrize("operations", OPERATIONS)
def test_history_and_activity_show_both_lives_of_a_key_used_again(run, session, models, operations):
    two_lives(session, models, operations)
    result = run("history", "Country", "NO")
    assert result.exit_code == 0, result.output
    headings = [line.split(" | ")[:2] for line in result.output.splitlines() if " | " in line]
    assert headings == [
        ["Version 0", "created"],
        ["Version 1", "changed"],
        ["Version 2", "deleted"],
        ["Version 0", "created"],
    ]
    # The second life starts anew: each value is new, none compared with the first's.
    second_life = result.output.split("Version 0 | created")[2]
    cells = [line.split("│")[1:-1] for line in second_life.splitlines() if line.startswith("│")]
    assert [[cell.strip() for cell in row] for row in cells] == [
        ["code", "—", "NO"],
        ["name", "—", "Noreg"],
    ]
    assert "has been deleted" not in result.output

    session.delete(session.get(models.Country, "NO"))
    session.commit()
    assert run("history", "Country", "NO").output.rstrip().endswith("Country NO has been deleted.")
    result = run("activity", "--kind", "deleted")
    assert [row[:5] for row in table_rows(result.output)] == [
        ["deleted", "Country", "NO", "1", "—"],
        ["deleted", "Country", "NO", "2", "—"],
    ]


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
    assert table_rows(result.output) == [
        ["created", "Country", "NO", "0", "code, name", "grace@example.org", "10.0.0.2", ""],
        ["changed", "Todo", "1", "3", "done", "grace@example.org", "10.0.0.2", "ticket: T-7"],
        ["changed", "Todo", "1", "2", "secret (hidden)", "ada@example.org", "10.0.0.1", ""],
        ["changed", "Todo", "1", "1", "title", "grace@example.org", "10.0.0.2",
         "rationale: clearer title"],
        ["created", "Todo", "1", "0", "done, id, text, title, secret (hidden)",
         "ada@example.org", "10.0.0.1", ""],
    ]  # fmt: skip
    assert "5 changes shown." in result.output
    assert "hunter2" not in result.output

    result = run("activity", "--model", "Todo", "--user", "grace@example.org", "--limit", "1")
    assert [row[:4] for row in table_rows(result.output)] == [["changed", "Todo", "1", "3"]]
    assert "1 change shown." in result.output

    result = run("activity", "--kind", "created")
    assert [row[:4] for row in table_rows(result.output)] == [
        ["created", "Country", "NO", "0"],
        ["created", "Todo", "1", "0"],
    ]
    result = run("activity", "--kind", "changed", "--model", "todo")
    assert [row[3] for row in table_rows(result.output)] == ["3", "2", "1"]

    later = (datetime.now(UTC) + timedelta(minutes=5)).isoformat()
    assert "0 changes shown." in run("activity", "--since", later).output
    assert "5 changes shown." in run("activity", "--until", later).output


def table_rows(output):
    """The cells of a printed activity table after its time column, stripped."""
    return [
        [cell.strip() for cell in line.split("│")[2:-1]]
        for line in output.splitlines()
        if line.startswith("│")
    ]


def test_output_that_is_not_a_terminal_is_never_wrapped_or_cut(app, db, session, models):
    long_reason = "the customer asked for the second time to change the delivery address"
    with acting_as(app, "customer-service@shop.example", "10.0.0.3"), rationale(long_reason):
        todo = models.Todo(title="Deliver to the new address", text="a" * 300)
        session.add(todo)
        session.commit()
    # A terminal 40 columns wide, but the output goes elsewhere (the runner's buffer).
    run = cli_runner(app, columns=40)
    activity = run("activity").output
    assert f"customer-service@shop.example │ 10.0.0.3 │ rationale: {long_reason} │" in activity
    history = run("history", "Todo", str(todo.id)).output
    assert f"│ text     │ —      │ {'a' * 300} │" in history
    assert history.splitlines()[0].endswith(f"| rationale: {long_reason}")
    assert "…" not in activity + history


@pytest.mark.slow
@pytest.mark.parametrize("columns", [None, "30"])
def test_the_commands_piped_to_another_program_print_whole_lines(database_url, columns):
    url = database_url.render_as_string(hide_password=False)
    env = {name: value for name, value in os.environ.items() if name not in ("COLUMNS", "LINES")}
    if columns:
        env["COLUMNS"] = columns
    subprocess.run(
        [
            sys.executable,
            "-c",
            f"from chrononaut.demo import create_app, seed; seed(create_app({url!r}))",
        ],
        check=True,
        env=env,
    )
    flask = [sys.executable, "-m", "flask", "--app", f"chrononaut.demo:create_app({url!r})"]

    def piped(*args):
        result = subprocess.run(
            [*flask, "chrononaut", *args], capture_output=True, text=True, env=env, check=True
        )
        return result.stdout

    activity = piped("activity", "--limit", "100")
    assert "23 changes shown." in activity
    rows = {tuple(row) for row in table_rows(activity)}
    assert (
        "deleted",
        "Document",
        "3",
        "1",
        "—",
        "ada@example.org",
        "198.51.100.7",
        "rationale: duplicate of the handbook",
    ) in rows
    assert ("created", "Order", "1", "0", "customer, id, status, total", "clerk@shop.example",
            "192.0.2.50", "") in rows  # fmt: skip
    assert len(rows) == 23
    handbook = piped("history", "Document", "2")
    sections = r"1. Welcome\n2. On-call\n3. Holidays\n4. Expenses\n5. Security\n6. Travel"
    body_rows = [
        [cell.strip() for cell in line.split("│")[1:-1]]
        for line in handbook.splitlines()
        if line.startswith("│ body")
    ]
    assert body_rows[-1] == ["body", sections, sections + r"\n7. Offboarding"]
    assert "…" not in activity + handbook


def test_activity_refuses_a_time_that_is_not_iso(run, models):
    result = run("activity", "--since", "last tuesday")
    assert result.exit_code == 2
    assert "'last tuesday' is not an ISO 8601 date or time" in result.output


# Stored text meant to clear the screen, colour, ring, back over and rewrite a line,
# reverse what follows and break the line: none of it may reach the terminal as is.
TERMINAL_TRICKS = "\x1b[2J\x1b[31mred\x07ab\x08\x08\rOK\x9b8m\u202eevil\u2066x\u2028y\nz\tend\x7f"
TRICKS_SHOWN = r"\x1b[2J\x1b[31mred\x07ab\x08\x08\rOK\x9b8m\u202eevil\u2066x\u2028y\nz\tend\x7f"
# What a terminal could act on, and everything that reorders text; newlines end lines.
UNSAFE = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069]")


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("\x1b[31mred", r"\x1b[31mred"),
        ("\x9b31m", r"\x9b31m"),
        ("\x00\x07\x08\x7f\x85", r"\x00\x07\x08\x7f\x85"),
        ("a\rb\nc\td", r"a\rb\nc\td"),
        ("\u202a\u202b\u202c\u202d\u202e", r"\u202a\u202b\u202c\u202d\u202e"),
        ("\u2066\u2067\u2068\u2069", r"\u2066\u2067\u2068\u2069"),
        ("\u061c\u200e\u200f", r"\u061c\u200e\u200f"),
        ("\u2028\u2029", r"\u2028\u2029"),
        ("\ud800\udcff", r"\ud800\udcff"),
        # Printable text stays, joiners and backslashes included.
        ("Zoë 日本語 👩‍👩‍👧 C:\\temp \\x1b", "Zoë 日本語 👩‍👩‍👧 C:\\temp \\x1b"),
    ],
)
def test_visible_writes_what_steers_a_terminal_as_escapes(text, shown):
    assert visible(text) == shown


@pytest.fixture
def tricky_history(app, db, session, models):
    """History whose every stored part holds the tricks: values, user, address, change
    info and its names, a key, a column name and a table name."""
    with (
        acting_as(app, TERMINAL_TRICKS, TERMINAL_TRICKS),
        extra_change_info(**{"\x1b[8m": TERMINAL_TRICKS}),
        rationale(TERMINAL_TRICKS),
    ):
        todo = models.Todo(title=TERMINAL_TRICKS, text="plain")
        session.add(todo)
        session.add(models.Country(code="\u202e\x1b", name="Tricky"))
        session.commit()
    table = db.activity_cls.__table__
    row = session.execute(select(table).where(table.c.table_name == "todo")).one()
    with suppress_versioning(allow_deleting_history=True):
        session.execute(
            insert(table).values(
                table_name="todo",
                changed=row.changed,
                version=1,
                key=row.key,
                data={**row.data, "version": 1, "\x1b[8mcolumn": 1},
            )
        )
        session.execute(
            insert(table).values(
                table_name="\x1b]0;pwned\x07", changed=row.changed, version=0, key={}, data={}
            )
        )
        session.commit()
    return todo


def test_history_prints_stored_control_characters_visibly(app, tricky_history):
    result = cli_runner(app, columns=1000)("history", "Todo", str(tricky_history.id))
    assert result.exit_code == 0, result.output
    assert not UNSAFE.findall(result.output)
    heading = result.output.splitlines()[0]
    assert heading.endswith(
        f"| user: {TRICKS_SHOWN} | address: {TRICKS_SHOWN} | {CHANGE_INFO_SHOWN}"
    )
    assert f"│ title    │ —      │ {TRICKS_SHOWN} │" in result.output
    assert "│ \\x1b[8mcolumn │ —      │ 1     │" in result.output

    result = cli_runner(app, columns=1000)("history", "Country", "\u202e\x1b")
    assert result.exit_code == 0, result.output
    assert not UNSAFE.findall(result.output)
    assert "│ code   │ —      │ \\u202e\\x1b │" in result.output


def test_activity_prints_stored_control_characters_visibly(app, tricky_history):
    result = cli_runner(app, columns=1000)("activity")
    assert result.exit_code == 0, result.output
    assert not UNSAFE.findall(result.output)
    todo = str(tricky_history.id)
    assert sorted(table_rows(result.output)) == sorted(
        [
            ["created", "\\x1b]0;pwned\\x07", "{}", "0", "—", "—", "—", ""],
            ["changed", "Todo", todo, "1", "\\x1b[8mcolumn", "—", "—", ""],
            ["created", "Country", "\\u202e\\x1b", "0", "code, name", TRICKS_SHOWN,
             TRICKS_SHOWN, CHANGE_INFO_SHOWN],
            ["created", "Todo", todo, "0", "done, id, text, title", TRICKS_SHOWN, TRICKS_SHOWN,
             CHANGE_INFO_SHOWN],
        ]
    )  # fmt: skip


CHANGE_INFO_SHOWN = f"\\x1b[8m: {TRICKS_SHOWN}; rationale: {TRICKS_SHOWN}"


@settings(max_examples=40, deadline=None)
@given(
    text=st.text(st.characters(exclude_characters="\x00", exclude_categories=["Cs"]), max_size=20)
)
def printed_as_shown(app, session, models, text):
    with acting_as(app, text, "10.0.0.1"), rationale(text):
        todo = models.Todo(title=text, text=text)
        session.add(todo)
        session.commit()
    run = cli_runner(app, columns=1000)
    for result in (run("history", "Todo", str(todo.id)), run("activity", "--limit", "1")):
        assert result.exit_code == 0, result.output
        assert not UNSAFE.findall(result.output)
        assert visible(text) in result.output


def test_any_stored_text_is_printed_visibly(app, session, models):
    printed_as_shown(app, session, models)


def test_history_finds_a_char_key_given_without_its_padding(app, db, run):
    class Code(db.Model, Versioned):
        __tablename__ = "code"
        code = Column(CHAR(4), primary_key=True)
        name = Column(String(40))

    db.create_all()
    db.session.add(Code(code="ab", name="first"))
    db.session.commit()

    found = run("history", "Code", "ab")
    too_long = run("history", "Code", "abcde")

    assert found.exit_code == 0, found.output
    assert [
        line.split(" | ")[:2] for line in found.output.splitlines() if line.startswith("Version ")
    ] == [["Version 0", "created"]]
    assert too_long.exit_code == 2
    assert "'abcde' is not a valid code of Code" in too_long.output
