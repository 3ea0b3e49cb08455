"""The ``flask chrononaut`` command group."""

from __future__ import annotations

import click
import pytest

from chrononaut.cli import versioned_model


def test_group_is_registered_on_the_app(app, db):
    result = app.test_cli_runner().invoke(args=["chrononaut", "--help"])
    assert result.exit_code == 0, result.output
    assert "Inspect and migrate Chrononaut history." in result.output


def test_versioned_model_by_class_or_table_name(db, models):
    assert versioned_model("Todo") is models.Todo
    assert versioned_model(models.Todo.__table__.name) is models.Todo


@pytest.mark.parametrize("name", ["Nope", "chrononaut_activity"])
def test_versioned_model_refuses_unknown_and_unversioned_names(db, models, name):
    with pytest.raises(click.BadParameter, match="no versioned model named") as error:
        versioned_model(name)
    assert "Todo" in str(error.value)
