"""The rich console every ``flask chrononaut`` command prints with."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from rich.console import Console


def console() -> Console:
    """Return a console for the command's output.

    rich comes with the ``cli`` extra; a web process that never prints a table does not
    need it. Into a file or a pipe nothing is wrapped or cut to a terminal's width: a
    table is as wide as its longest values (rich pads no line to the console's width).

    :raises click.ClickException: rich is not installed.
    """
    try:
        from rich.console import Console
    except ImportError:
        raise click.ClickException(
            "The history commands print with rich: pip install 'chrononaut[cli]'."
        ) from None
    terminal = Console(highlight=False)
    if terminal.is_terminal:
        return terminal
    return Console(highlight=False, width=sys.maxsize, soft_wrap=True)
