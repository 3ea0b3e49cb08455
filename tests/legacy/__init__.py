"""0.1-era history tables and data for the conversion tests (the SQL files here)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from chrononaut import Versioned

SQL_DIR = Path(__file__).parent


def define_ticket(db: Any) -> Any:
    """A model with a text key named ``uuid`` and a ``created_at`` column."""

    class Ticket(db.Model, Versioned):
        __tablename__ = "ticket"
        uuid = db.Column(db.Text, primary_key=True)
        title = db.Column(db.Text)
        created_at = db.Column(db.DateTime(timezone=True))

    return Ticket


def run_sql(db: Any, name: str) -> None:
    """Run the SQL file ``name`` of this directory, outside the session's transaction."""
    with db.engine.begin() as connection:
        connection.exec_driver_sql((SQL_DIR / name).read_text())


def load_legacy(db: Any, models: Any, data: Path = SQL_DIR / "data.sql") -> Any:
    """Add Ticket to ``models``, create the tables, the 0.1 history tables and their data.

    :param data: the SQL file of the rows, ``data.sql`` unless given.
    """
    models.Ticket = define_ticket(db)
    db.create_all()
    run_sql(db, "schema.sql")
    with db.engine.begin() as connection:
        connection.exec_driver_sql(data.read_text())
    return models
