"""`evesnap clone ...`: a new app, or new volumes, from a snapshot, independent
of their source (try a schema upgrade on a copy of production), and their removal."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import click

from evesnap_core.cli.common import (
    EXIT_FAILED,
    EXIT_INVALID,
    app_or_fail,
    free_text_option,
    session_or_fail,
    snapshot_id_or_fail,
)
from evesnap_core.cli.output import fail, print_json, print_table
from evesnap_core.errors import EvesnapError, UnknownTarget


@click.group()
def clone() -> None:
    """Clones of snapshots: a new app or new volumes, and their removal."""


@clone.command("app")
@click.argument("app")
@click.argument("snapshot_id")
@click.option("--name", required=True, callback=free_text_option, help="The clone's display name.")
@click.option("--no-start", is_flag=True, help="Create it stopped.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
@click.pass_obj
def clone_app(obj: Any, app: str, snapshot_id: str, name: str, no_start: bool, as_json: bool) -> None:
    """A new app from SNAPSHOT_ID of APP: the snapshot's config with a new UUID and a
    clone of every volume. The controller does not know it; it is not reported to
    the controller and a new controller config does not remove it."""
    snapshot_id = snapshot_id_or_fail(snapshot_id, "SNAPSHOT_ID")
    session = session_or_fail(obj, as_json=as_json)
    uuid = app_or_fail(session, app)
    try:
        new = session.orchestrator.clone_app(uuid, snapshot_id, name, start=not no_start)
    except UnknownTarget as exc:
        fail(str(exc), f"run 'evesnap snapshot list {app}'", EXIT_INVALID)
    except EvesnapError as exc:
        fail(f"clone of {snapshot_id} failed: {exc}", "nothing was left behind", EXIT_FAILED)
    record = session.orchestrator.apps[new]
    volumes = session.orchestrator.app_volumes(record)
    if as_json:
        print_json(
            {"app": str(new), "name": name, "volumes": [v.handle.location for v in volumes if v.handle]}
        )
    else:
        click.echo(f"{new}  {name}")
        for v in volumes:
            click.echo(f"  volume {v.spec.uuid}  {v.handle.location if v.handle else ''}")


@clone.command("volumes")
@click.argument("app")
@click.argument("snapshot_id")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
@click.pass_obj
def clone_volumes(obj: Any, app: str, snapshot_id: str, as_json: bool) -> None:
    """New volumes, one per volume of SNAPSHOT_ID of APP, for another use (attach
    them elsewhere, inspect them); removed with 'evesnap clone delete UUID'."""
    snapshot_id = snapshot_id_or_fail(snapshot_id, "SNAPSHOT_ID")
    session = session_or_fail(obj, as_json=as_json)
    uuid = app_or_fail(session, app)
    try:
        made = session.orchestrator.clone_volumes(uuid, snapshot_id)
    except UnknownTarget as exc:
        fail(str(exc), f"run 'evesnap snapshot list {app}'", EXIT_INVALID)
    except EvesnapError as exc:
        fail(f"clone of {snapshot_id} failed: {exc}", "nothing was left behind", EXIT_FAILED)
    rows = [
        {
            "uuid": str(v.spec.uuid),
            "from": v.cloned_from,
            "backend": v.spec.backend,
            "location": v.handle.location if v.handle else "",
        }
        for v in made
    ]
    if as_json:
        print_json(rows)
    else:
        print_table(
            ["UUID", "BACKEND", "LOCATION", "FROM"],
            [[r["uuid"], r["backend"], r["location"], r["from"]] for r in rows],
        )


@clone.command("delete")
@click.argument("target")
@click.pass_obj
def clone_delete(obj: Any, target: str) -> None:
    """Remove the cloned app or cloned volume TARGET (its UUID): stop it, delete
    its snapshots and volumes. Only clones: an app of the controller is refused."""
    try:
        wanted = UUID(target)
    except ValueError:
        fail(f"TARGET: not a UUID: {target!r}", "run 'evesnap status' to list clones", EXIT_INVALID)
    session = session_or_fail(obj)
    try:
        what = session.orchestrator.remove_clone(wanted)
    except UnknownTarget as exc:
        fail(str(exc), "run 'evesnap status' to list clones", EXIT_INVALID)
    except EvesnapError as exc:
        fail(f"cannot remove {target}: {exc}", "", EXIT_FAILED)
    click.echo(f"removed {what}")
