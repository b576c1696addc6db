"""The `evesnap` command: one group, one module per command family."""

from __future__ import annotations

import importlib
import logging
from pathlib import Path

import click

from evesnap_core import __version__
from evesnap_core.settings import PERSIST_ENV, default_persist_dir


class Context:
    """What every command shares: where state lives, which runtime runs apps."""

    def __init__(self, persist: Path, runtime: str) -> None:
        self.persist = persist
        self.runtime = runtime


COMMANDS = {
    "apply": ("evesnap_core.cli.ops_cmds", "apply"),
    "status": ("evesnap_core.cli.ops_cmds", "status"),
    "snapshot": ("evesnap_core.cli.snapshot_cmds", "snapshot"),
    "clone": ("evesnap_core.cli.clone_cmds", "clone"),
    "agent": ("evesnap_core.cli.ops_cmds", "agent"),
    "plugins": ("evesnap_core.cli.plugins_cmd", "plugins"),
    "conformance": ("evesnap_core.cli.conformance_cmd", "conformance"),
    "policy": ("evesnap_core.cli.policy_cmd", "policy"),
    "monitor": ("evesnap_core.cli.monitor_cmd", "monitor"),
}
"""Command name -> (module, attribute): a command's module is imported only when
it runs, so that `evesnap plugins` does not pay for the orchestrator."""


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None:
            return None
        command: click.Command = getattr(importlib.import_module(target[0]), target[1])
        return command


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="evesnap")
@click.option(
    "--persist",
    type=click.Path(path_type=Path, file_okay=False),
    envvar=PERSIST_ENV,
    default=None,
    help=f"State and volume folder (env {PERSIST_ENV}; default /var/lib/evesnap as root).",
)
@click.option(
    "--runtime",
    envvar="EVESNAP_RUNTIME",
    default="qemu",
    show_default=True,
    help="What runs the apps: qemu (a qemu-system process per app) or embedded.",
)
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
@click.pass_context
def cli(ctx: click.Context, persist: Path | None, runtime: str, verbose: int) -> None:
    """evesnap: application snapshots for edge devices.

    Start with 'evesnap plugins' (which storage backends work here), then
    'evesnap apply CONFIG' and 'evesnap status'.
    """
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    ctx.obj = Context(persist or default_persist_dir(), runtime)


def main() -> None:
    from evesnap_core.cli.interrupt import Interrupted, install

    install()
    try:
        cli(prog_name="evesnap")
    except Interrupted as exc:
        click.echo(exc.line, err=True)
        raise SystemExit(exc.exit_code) from None
    except OSError as exc:  # the persist folder, HOME, the runtime dir: not writable, full...
        where = f"{exc.filename}: " if exc.filename else ""
        click.echo(f"evesnap: error: {where}{exc.strerror or exc}", err=True)
        raise SystemExit(2) from None
