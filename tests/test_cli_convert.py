"""``flask chrononaut convert MODEL [--chunk N]`` and the counts it prints."""

from __future__ import annotations

import pytest

from chrononaut.data_converters import HistoryModelDataConverter
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
    # todo_history holds 5 rows, of objects 1 and 2; objects 3 and 4 only have live rows.
    assert result.output.splitlines()[-1] == (
        "Todo: 4 objects looked at, 4 converted, 0 already complete; "
        "9 snapshots written from 5 rows of todo_history."
    )
    assert [row.version for row in rows_of(db, "todo", id=1)] == [0, 1, 2, 3]
    assert len(activity_rows(db)) == 9

    again = invoke("todo")
    assert again.exit_code == 0, again.output
    assert again.output.splitlines()[-1] == (
        "Todo: 4 objects looked at, 0 converted, 4 already complete; "
        "0 snapshots written from 5 rows of todo_history."
    )
    assert len(activity_rows(db)) == 9


def test_counts_after_an_interrupted_conversion(db, legacy, invoke):
    assert HistoryModelDataConverter(legacy.Todo).convert(db.session, limit=1) == 1
    result = invoke("Todo", "--chunk", "1")
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[-1] == (
        "Todo: 4 objects looked at, 3 converted, 1 already complete; "
        "5 snapshots written from 5 rows of todo_history."
    )


def test_uses_the_models_own_primary_key(db, legacy, invoke):
    result = invoke("Ticket")
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[-1] == (
        "Ticket: 3 objects looked at, 3 converted, 0 already complete; "
        "6 snapshots written from 3 rows of ticket_history."
    )
    result = invoke("Translation")
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[-1] == (
        "Translation: 3 objects looked at, 3 converted, 0 already complete; "
        "5 snapshots written from 2 rows of translation_history."
    )


def test_counts_of_one_are_singular(db, legacy, invoke):
    result = invoke("Legacy")
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[-1] == (
        "Legacy: 1 object looked at, 1 converted, 0 already complete; "
        "2 snapshots written from 1 row of legacy_old."
    )


def test_joined_inheritance_names_every_table_and_the_subclasses_left(db, legacy, invoke):
    dog = invoke("Dog")
    assert dog.exit_code == 0, dog.output
    assert dog.output.splitlines()[-1] == (
        "Dog: 1 object looked at, 1 converted, 0 already complete; "
        "3 snapshots written from 2 rows of animal_history joined with dog_history."
    )
    animal = invoke("Animal")
    assert animal.exit_code == 0, animal.output
    # The dog's 2 rows of animal_history are the Dog conversion's: 2 + 1 = 3 rows.
    assert animal.output.splitlines()[-2:] == [
        "Animal: 2 objects looked at, 2 converted, 0 already complete; "
        "3 snapshots written from 1 row of animal_history.",
        "Dog has a table of its own: convert it with `flask chrononaut convert Dog`.",
    ]


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
