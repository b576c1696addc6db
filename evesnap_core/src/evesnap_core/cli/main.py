"""The `evesnap` command: one group, one module per command family."""

from __future__ import annotations

import logging
from pathlib import Path

import click

from evesnap_core import __version__
from evesnap_core.settings import PERSIST_ENV, default_persist_dir


class Context:
    """What every command shares: where state lives, and output mode."""

    def __init__(self, persist: Path) -> None:
        self.persist = persist


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="evesnap")
@click.option(
    "--persist",
    type=click.Path(path_type=Path, file_okay=False),
    envvar=PERSIST_ENV,
    default=None,
    help=f"State and volume folder (env {PERSIST_ENV}; default /var/lib/evesnap as root).",
)
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
@click.pass_context
def cli(ctx: click.Context, persist: Path | None, verbose: int) -> None:
    """evesnap: application snapshots for edge devices."""
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    ctx.obj = Context(persist or default_persist_dir())


def _register_commands() -> None:
    from evesnap_core.cli import conformance_cmd, plugins_cmd

    cli.add_command(plugins_cmd.plugins)
    cli.add_command(conformance_cmd.conformance)


_register_commands()


def main() -> None:
    cli(prog_name="evesnap")
