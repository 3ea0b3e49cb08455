"""A model's state at a time in the viewer and ``flask chrononaut as-of``, and the marks
of changes an undo made."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import text

from tests.models import Priority
from tests.viewer_data import cli_runner, viewer_client


@pytest.fixture
def client(app, db, models):
    return viewer_client(app)


@pytest.fixture
def run(app, db):
    return cli_runner(app)


def _changed(obj: Any) -> Any:
    return obj.versions()[-1].chrononaut_changed


@pytest.fixture
def moments(session, models) -> dict[str, Any]:
    """Two todos; one renamed, the other deleted, then a third: the time of each step."""
    ada = models.Todo(title="Ada 1", priority=Priority.LOW, secret="s3cret-ada")
    session.add(ada)
    session.commit()
    first = _changed(ada)
    bob = models.Todo(title="Bob 1", secret="s3cret-bob")
    session.add(bob)
    session.commit()
    both = _changed(bob)
    ada.title = "Ada 2"
    session.commit()
    renamed = _changed(ada)
    bob_id = bob.id
    session.delete(bob)
    session.commit()
    deleted = models.Todo(id=bob_id).versions()[-1].chrononaut_changed
    cyd = models.Todo(title="Cyd 1")
    session.add(cyd)
    session.commit()
    return {
        "ids": (ada.id, bob_id, cyd.id),
        "before": first - timedelta(microseconds=1),
        "first": first,
        "both": both,
        "renamed": renamed,
        "deleted": deleted,
        "third": _changed(cyd),
    }


_SPOKEN = re.compile(r'<span class="sr-only">[^<]*</span>')


def _rows(response) -> list[list[str]]:
    """The cells of the state table's rows of objects, as the eye reads them."""
    html = response.get_data(as_text=True)
    body = html.split("<tbody>", 1)[1].split("</tbody>", 1)[0]
    rows = []
    for row in re.findall(r"<tr>(.*?)</tr>", body, flags=re.S):
        cells = re.findall(r"<td[^>]*>(.*?)</td>", row, flags=re.S)
        if 'colspan="' in row:
            continue  # the line that says no object existed
        rows.append(
            [
                " ".join(
                    re.sub(
                        r"<[^>]+>", " ", re.sub(r'<span class="sr-only">[^<]*</span>', "", c)
                    ).split()
                )
                for c in cells
            ]
        )
    return rows


def _state(client, at, **params) -> Any:
    return client.get("/history/objects/Todo/as-of", query_string={"at": at.isoformat(), **params})


def test_the_state_page_shows_each_object_as_it_was(client, moments):
    ada, bob, _ = moments["ids"]
    response = _state(client, moments["renamed"])
    assert response.status_code == 200
    # Key, tracked columns in the model's order, version; then since and a link.
    assert [row[:-2] for row in _rows(response)] == [
        [str(ada), "Ada 2", "—", "false", "LOW", "—", "1"],
        [str(bob), "Bob 1", "—", "false", "—", "—", "0"],
    ]
    html = response.get_data(as_text=True)
    assert "s3cret" not in html
    assert f'href="/history/objects/Todo?key={ada}"' in html


def test_the_state_page_is_inclusive_at_a_change_and_leaves_out_deleted_and_later_objects(
    client, moments
):
    def titles(at):
        return [row[1] for row in _rows(_state(client, at))]

    assert titles(moments["before"]) == []
    assert titles(moments["first"]) == ["Ada 1"]
    assert titles(moments["both"]) == ["Ada 1", "Bob 1"]
    assert titles(moments["deleted"]) == ["Ada 2"]
    assert titles(moments["third"]) == ["Ada 2", "Cyd 1"]
    assert "No Todo existed then." in _state(client, moments["before"]).get_data(as_text=True)


def test_the_state_page_is_paged_by_key(client, session, models, moments):
    session.add(models.Todo(title="Dee 1"))
    session.commit()
    ada, _, cyd = moments["ids"]
    first = _state(client, moments["third"] + timedelta(days=1))
    assert [row[0] for row in _rows(first)] == [str(ada), str(cyd)]
    html = first.get_data(as_text=True)
    link = re.search(r'<a rel="next" href="([^"]+)"', html).group(1).replace("&amp;", "&")
    second = client.get(link)
    assert [row[1] for row in _rows(second)] == ["Dee 1"]
    assert 'rel="next"' not in second.get_data(as_text=True)


@pytest.mark.parametrize(
    ("query", "status", "message"),
    [
        ({"at": "yesterday"}, 400, "at: "),
        ({"at": "2024-01-01T00:00:00", "page": "0"}, 400, "page: "),
    ],
)
def test_the_state_page_refuses_bad_input(client, models, query, status, message):
    response = client.get("/history/objects/Todo/as-of", query_string=query)
    assert response.status_code == status
    assert message in response.get_data(as_text=True)


def test_the_state_page_of_an_unknown_model_is_not_found(client):
    assert client.get("/history/objects/Nope/as-of").status_code == 404


def test_the_state_page_names_the_migration_on_an_old_table(client, db, session, moments):
    session.execute(text("ALTER TABLE chrononaut_activity DROP COLUMN operation"))
    session.execute(text("ALTER TABLE chrononaut_activity DROP COLUMN transaction_id"))
    session.commit()
    db.engine.dispose()
    response = _state(client, moments["third"])
    assert response.status_code == 400
    assert "docs/migration.rst" in response.get_data(as_text=True)


def test_the_index_links_each_model_to_its_state(client, models):
    html = client.get("/history/").get_data(as_text=True)
    assert 'href="/history/objects/Todo/as-of"' in html


def test_as_of_prints_the_objects_as_they_were(run, moments):
    ada, bob, _ = moments["ids"]
    result = run("as-of", "Todo", moments["renamed"].isoformat(), "--format", "json")
    assert result.exit_code == 0, result.output
    document = json.loads(result.output)
    since = {key: document["objects"][i].pop("since") for i, key in enumerate((ada, bob))}
    assert document == {
        "model": "Todo",
        "at": moments["renamed"].isoformat(),
        "objects": [
            {
                "id": ada,
                "title": "Ada 2",
                "text": None,
                "done": False,
                "priority": "LOW",
                "due_at": None,
                "version": 1,
            },
            {
                "id": bob,
                "title": "Bob 1",
                "text": None,
                "done": False,
                "priority": None,
                "due_at": None,
                "version": 0,
            },
        ],
        "more": False,
    }
    assert since == {ada: moments["renamed"].isoformat(), bob: moments["both"].isoformat()}
    assert "s3cret" not in result.output


def test_as_of_prints_a_table_and_csv_and_pages(run, moments):
    at = moments["third"].isoformat()
    table = run("as-of", "Todo", at)
    assert table.exit_code == 0, table.output
    assert "Ada 2" in table.output and "Cyd 1" in table.output and "Bob 1" not in table.output
    csv = run("as-of", "Todo", at, "--format", "csv", "--limit", "1").output.splitlines()
    assert csv[0] == "id,title,text,done,priority,due_at,version,since"
    assert [line.split(",")[1] for line in csv[1:]] == ["Ada 2"]
    paged = run("as-of", "Todo", at, "--limit", "1")
    assert "More objects follow: --offset 1." in paged.output
    second = run("as-of", "Todo", at, "--format", "csv", "--limit", "1", "--offset", "1")
    assert [line.split(",")[1] for line in second.output.splitlines()[1:]] == ["Cyd 1"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["Nope", "2024-01-01"], "no versioned model named 'Nope'"),
        (
            ["Todo", "yesterday"],
            "Invalid value for 'TIME': 'yesterday' is not an ISO 8601 date or time",
        ),
        (["Todo", "2024-01-01", "--limit", "0"], "0 is not in the range"),
    ],
)
def test_as_of_explains_bad_arguments(run, models, args, message):
    result = run("as-of", *args)
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output


def test_reverts_and_restores_are_marked_in_timelines(client, run, session, models, moments):
    ada, bob, _ = moments["ids"]
    ada_object = session.get(models.Todo, ada)
    ada_object.revert_to(0)
    session.commit()
    models.Todo.undelete(bob)
    session.commit()

    ada_page = client.get(f"/history/objects/Todo?key={ada}").get_data(as_text=True)
    assert re.findall(r'<span class="badge undo">(\w+)</span>', ada_page) == ["reverted"]
    bob_page = client.get(f"/history/objects/Todo?key={bob}").get_data(as_text=True)
    assert re.findall(r'<span class="badge undo">(\w+)</span>', bob_page) == ["restored"]

    history = run("history", "Todo", str(ada)).output
    kinds = [line.split(" | ")[1] for line in history.splitlines() if line.startswith("Version ")]
    assert kinds == ["created", "changed", "changed (reverted)"]
    history = run("history", "Todo", str(bob)).output
    kinds = [line.split(" | ")[1] for line in history.splitlines() if line.startswith("Version ")]
    assert kinds == ["created", "deleted", "created (restored)"]
    feed = client.get("/history/activity").get_data(as_text=True)
    assert '<span class="kind undo">restored</span>' in feed
