"""How the CLI talks: rich tables for people, JSON for scripts, one-line errors with exit code 2.

Imports only the standard library, click and rich.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any, Iterable, Sequence

import click
from rich.console import Console
from rich.table import Table

def _width() -> int | None:
    # rich assumes 80 columns when not on a terminal; tables piped to a file or a pager deserve more
    return None if sys.stdout.isatty() else int(os.environ.get("COLUMNS", 160))


out = Console(highlight=False, width=_width(), soft_wrap=True)  # long lines stay whole for grep and scripts
err = Console(stderr=True, highlight=False, soft_wrap=True)


def emit_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, default=str))


def table(title: str | None, columns: Sequence[str], rows: Iterable[Sequence[Any]], *, right: Sequence[str] = ()) -> None:
    t = Table(title=title, title_justify="left", show_edge=False, pad_edge=False, header_style="bold")
    for i, column in enumerate(columns):
        last = i == len(columns) - 1
        t.add_column(column, justify="right" if column in right else "left", overflow="fold", no_wrap=not last)
    for row in rows:
        t.add_row(*("" if v is None else str(v) for v in row))
    out.print(t)


def fail(message: str) -> None:
    err.print(f"nas: error: {message}", markup=False)
    sys.exit(2)
