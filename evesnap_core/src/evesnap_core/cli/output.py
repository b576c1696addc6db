"""Printing data for people (aligned tables) and for programs (JSON)."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import Any

import click


def print_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=False, default=str))


def print_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """A plain aligned table; the last column may be long and is not padded."""
    cells = [[str(h) for h in headers]] + [["" if c is None else str(c) for c in r] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    for n, row in enumerate(cells):
        line = "  ".join(c if i == len(row) - 1 else c.ljust(widths[i]) for i, c in enumerate(row))
        click.echo(line.rstrip())
        if n == 0:
            click.echo("  ".join("-" * w for w in widths).rstrip())


def one_line(text: str) -> str:
    """`text` with control characters (a newline from a hostile name) escaped."""
    return "".join(c if c.isprintable() or c == " " else ascii(c)[1:-1] for c in text)


def fail(message: str, hint: str = "", code: int = 1) -> None:
    """Exit with one line on stderr that says what went wrong and what to do next."""
    text = f"evesnap: error: {one_line(message)}"
    if hint:
        text += f" ({hint})"
    click.echo(text, err=True)
    sys.exit(code)
