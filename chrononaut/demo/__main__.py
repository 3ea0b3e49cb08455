"""Run the demo: ``python -m chrononaut.demo [--database-url URL] [--host H] [--port N]``."""

from __future__ import annotations

import argparse
import signal
import sys
from contextlib import ExitStack
from types import FrameType

from flask import Flask
from werkzeug.serving import make_server

from chrononaut.demo import create_app, seed
from chrononaut.demo.models import db


def _stop(signum: int, frame: FrameType | None) -> None:
    # SIGTERM takes the same way out as Ctrl-C, so the database server is stopped too.
    # SIGINT gets this handler as well: a shell starting the demo in the background
    # ignores SIGINT for it, and Python then leaves Ctrl-C ignored.
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    """Start the demo and serve it until Ctrl-C or SIGTERM.

    :return: the exit status.
    """
    parser = argparse.ArgumentParser(
        prog="python -m chrononaut.demo", description="Serve Chrononaut's history viewer demo."
    )
    parser.add_argument(
        "--database-url",
        help="SQLAlchemy URL of an existing PostgreSQL database to use "
        "(default: start a throwaway embedded server)",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to serve on (%(default)s)")
    parser.add_argument(
        "--port", type=int, default=5000, help="port to serve on, 0 for any free one (%(default)s)"
    )
    args = parser.parse_args(argv)
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, _stop)
    try:
        with ExitStack() as cleanup:
            if args.database_url:
                database_url = args.database_url
            else:
                from chrononaut.embedded import embedded_server

                print("Starting a throwaway PostgreSQL server...", flush=True)
                server_url = cleanup.enter_context(embedded_server())
                database_url = server_url.render_as_string(hide_password=False)
            app = create_app(database_url)
            if not seed(app):
                print("The database has demo data already; using it as it is.")
            cleanup.callback(_dispose_engines, app)
            server = make_server(args.host, args.port, app, threaded=True)
            cleanup.callback(server.server_close)
            print(
                f"Chrononaut demo running at http://{args.host}:{server.server_port}/", flush=True
            )
            print("Press Ctrl-C to stop.", flush=True)
            server.serve_forever()
    except KeyboardInterrupt:
        pass
    print("Stopped.", flush=True)
    return 0


def _dispose_engines(app: Flask) -> None:
    with app.app_context():
        for engine in db.engines.values():
            engine.dispose()


if __name__ == "__main__":
    sys.exit(main())
