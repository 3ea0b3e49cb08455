"""``flask chrononaut convert MODEL [--chunk N]``."""

from __future__ import annotations

import pytest

from tests.activity import activity_rows, rows_of
from tests.legacy import load_legacy


@pytest.fixture
def legacy(db, models):
    return load_legacy(db, models)


@pytest.fixture
def invoke(app):
    def invoke(*args):
        return app.test_cli_runner().invoke(args=["chrononaut", "convert", *args])

    return invoke


def test_converts_in_chunks_and_prints_the_counts(db, legacy, invoke):
    result = invoke("Todo", "--chunk", "3")
    assert result.exit_code == 0, result.output
    assert "Converting Todo" in result.output
    assert "Todo: 4 of 4 objects converted, 9 snapshots written (from todo_history)." in (
        result.output
    )
    assert [row.version for row in rows_of(db, "todo", id=1)] == [0, 1, 2, 3]
    assert len(activity_rows(db)) == 9

    again = invoke("todo")
    assert again.exit_code == 0, again.output
    assert "Todo: 0 of 4 objects converted, 0 snapshots written" in again.output
    assert len(activity_rows(db)) == 9


def test_uses_the_models_own_primary_key(db, legacy, invoke):
    result = invoke("Ticket")
    assert result.exit_code == 0, result.output
    assert "Ticket: 3 of 3 objects converted, 6 snapshots written" in result.output
    result = invoke("Translation")
    assert result.exit_code == 0, result.output
    assert "Translation: 3 of 3 objects converted, 5 snapshots written" in result.output


def test_missing_history_table_is_reported_without_writing(db, legacy, invoke):
    result = invoke("Author")
    assert result.exit_code == 1
    assert "The 0.1 history table 'author_history' of Author does not exist." in result.output
    assert activity_rows(db) == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["Nope"], "no versioned model named 'Nope'"),
        (["Todo", "--chunk", "0"], "--chunk"),
        ([], "Missing argument 'MODEL'"),
    ],
)
def test_bad_arguments(db, legacy, invoke, args, message):
    result = invoke(*args)
    assert result.exit_code == 2
    assert message in result.output
    assert activity_rows(db) == []
