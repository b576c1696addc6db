"""`evesnap plugins`: which backends are installed, and whether they work here."""

from __future__ import annotations

import click

from evesnap_core.cli.exit_codes import EXIT_BACKEND_LOAD
from evesnap_core.cli.output import print_json, print_table
from evesnap_core.discovery import load_backends
from evesnap_core.plugin_api import ApiWindow


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.pass_obj
def plugins(obj: object, as_json: bool) -> None:
    """List volume-handler backends: version, plugin API, capabilities, status.

    Exit code 0 when every backend loaded, 3 when one failed to load (a broken
    or incompatible package), whether or not it is merely unavailable here.
    """
    persist = obj.persist  # type: ignore[attr-defined]
    registry = load_backends(persist)
    records = sorted(registry.records.values(), key=lambda r: r.name)
    window = ApiWindow()
    if as_json:
        print_json(
            {
                "plugin_api": {"version": window.version, "age": window.age},
                "backends": [r.as_dict() for r in records],
            }
        )
    else:
        if not records:
            click.echo("no backends installed (pip install evesnap-qcow2, for example)")
        rows = []
        for r in records:
            info = r.info
            caps = ",".join(sorted(c.value for c in info.capabilities)) if info else ""
            note = r.error or r.warning
            rows.append(
                [
                    r.name,
                    r.distribution,
                    r.version,
                    info.plugin_api_version if info else "",
                    r.status,
                    caps,
                    note,
                ]
            )
        print_table(["NAME", "DISTRIBUTION", "VERSION", "API", "STATUS", "CAPABILITIES", "NOTE"], rows)
    if any(r.status == "failed" for r in records):
        raise SystemExit(EXIT_BACKEND_LOAD)
