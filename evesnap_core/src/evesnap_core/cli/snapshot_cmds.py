"""`evesnap snapshot ...`: local snapshot operations, for a device without a
controller or an operator beside one: create, list as a tree, describe,
rename, roll back, delete (with or without descendants), read-only access."""

from __future__ import annotations

from typing import Any

import click

from evesnap_core.cli.common import (
    EXIT_FAILED,
    EXIT_INVALID,
    app_or_fail,
    free_text_option,
    session_or_fail,
    snapshot_id_or_fail,
)
from evesnap_core.cli.output import fail, one_line, print_json, print_table
from evesnap_core.errors import ConfigError, EvesnapError, InvalidName, UnknownTarget
from evesnap_core.orchestrator.tree import DeleteScope, TreeNode, walk


@click.group()
def snapshot() -> None:
    """Local snapshot operations: create, list, describe, rename, rollback, delete, open, close."""


@snapshot.command("create")
@click.argument("app")
@click.option("--id", "snapshot_id", default=None, help="Snapshot UUID (default: a new one).")
@click.option(
    "--name", "display_name", default="", callback=free_text_option, help="A display name (the id stays)."
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
@click.pass_obj
def snapshot_create(obj: Any, app: str, snapshot_id: str | None, display_name: str, as_json: bool) -> None:
    """Take an immediate snapshot of APP now (live when its volumes allow)."""
    if snapshot_id is not None:
        snapshot_id = snapshot_id_or_fail(snapshot_id, "--id")
    session = session_or_fail(obj, as_json=as_json)
    uuid = app_or_fail(session, app)
    try:
        made = session.orchestrator.snapshot_now(uuid, snapshot_id, display_name=display_name)
    except (ConfigError, InvalidName) as exc:
        fail(f"snapshot of {app} refused: {exc}", "", EXIT_INVALID)
    except (EvesnapError, ValueError) as exc:
        fail(f"snapshot of {app} failed: {exc}", "see 'evesnap status " + app + "'", EXIT_FAILED)
    if as_json:
        print_json({"app": str(uuid), "snapshot": made})
    else:
        click.echo(made)


@snapshot.command("rollback")
@click.argument("app")
@click.argument("snapshot_id")
@click.option(
    "--destroy-newer",
    is_flag=True,
    help="Where a backend rolls back only to its newest snapshot (ZFS), destroy the newer ones.",
)
@click.pass_obj
def snapshot_rollback(obj: Any, app: str, snapshot_id: str, destroy_newer: bool) -> None:
    """Roll APP back to SNAPSHOT_ID: its volumes and its config. Newer snapshots are
    kept where the backends can (qcow2, purgeable); ZFS refuses and names them
    unless --destroy-newer."""
    snapshot_id = snapshot_id_or_fail(snapshot_id, "SNAPSHOT_ID")
    session = session_or_fail(obj)
    uuid = app_or_fail(session, app)
    try:
        destroyed = session.orchestrator.rollback_now(uuid, snapshot_id, destroy_newer=destroy_newer)
    except UnknownTarget as exc:
        fail(str(exc), f"run 'evesnap snapshot list {app}'", EXIT_INVALID)
    except EvesnapError as exc:
        hint = "add --destroy-newer to destroy them" if "newer snapshots" in str(exc) else ""
        fail(f"rollback of {app} failed: {exc}", hint or f"see 'evesnap snapshot list {app}'", EXIT_FAILED)
    click.echo(f"{app} rolled back to {snapshot_id}")
    for sid in destroyed:
        click.echo(f"destroyed newer snapshot {sid}")


@snapshot.command("delete")
@click.argument("app")
@click.argument("snapshot_id")
@click.option(
    "--with-descendants", "scope", flag_value="with-descendants", help="Also every snapshot below it."
)
@click.option(
    "--descendants-only", "scope", flag_value="descendants-only", help="Only the snapshots below it."
)
@click.option(
    "--metadata-only",
    "scope",
    flag_value="metadata-only",
    help="Forget evesnap's record only; the backends' snapshots stay (named in the output).",
)
@click.option("--force", is_flag=True, help="Also a snapshot the controller lists.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
@click.pass_obj
def snapshot_delete(
    obj: Any, app: str, snapshot_id: str, scope: DeleteScope | None, force: bool, as_json: bool
) -> None:
    """Delete SNAPSHOT_ID of APP (now if the app is stopped or its volumes delete
    live, else at its next stop). Its children move up to its parent."""
    snapshot_id = snapshot_id_or_fail(snapshot_id, "SNAPSHOT_ID")
    session = session_or_fail(obj, as_json=as_json)
    uuid = app_or_fail(session, app)
    try:
        outcome = session.orchestrator.delete_now(uuid, snapshot_id, scope=scope or "snapshot", force=force)
    except UnknownTarget as exc:
        fail(str(exc), f"run 'evesnap snapshot list {app}'", EXIT_INVALID)
    except ConfigError as exc:
        fail(f"deletion refused: {exc.reason}", "", EXIT_INVALID)
    except EvesnapError as exc:
        fail(f"deletion of {snapshot_id} failed: {exc}", f"see 'evesnap status {app}'", EXIT_FAILED)
    if as_json:
        print_json(outcome.to_json())
    else:
        for sid in outcome.deleted:
            click.echo(f"deleted {sid}")
        for sid in outcome.pending:
            click.echo(f"deletion of {sid} pending until the app stops")
        for sid, left in outcome.forgotten.items():
            click.echo(f"forgot {sid}; left in the backends: {', '.join(left) or 'nothing'}")
        for sid, why in outcome.failed.items():
            click.echo(f"deletion of {sid} failed: {one_line(why)}", err=True)
    if outcome.failed:
        raise SystemExit(EXIT_FAILED)


@snapshot.command("list")
@click.argument("app")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
@click.pass_obj
def snapshot_list(obj: Any, app: str, as_json: bool) -> None:
    """List APP's snapshots as a tree: parents first, the current one marked '*'."""
    session = session_or_fail(obj, write=False)
    uuid = app_or_fail(session, app)
    record = session.orchestrator.apps[uuid]
    nodes = list(walk(record))
    if as_json:
        print_json([_node_json(n) for n in nodes])
        return
    print_table(
        ["ID", "NAME", "STATE", "CONFIG VERSION", "CREATED", "CONSISTENCY", "ERROR"],
        [
            [
                ("  " * n.depth) + ("* " if n.current else "") + n.snapshot.id,
                one_line(n.snapshot.display_name),
                n.snapshot.state,
                n.snapshot.config_version,
                f"{n.snapshot.created:%Y-%m-%d %H:%M:%S}" if n.snapshot.created else "",
                n.snapshot.consistency if n.snapshot.state != "requested" else "",
                one_line(n.snapshot.error.description) if n.snapshot.error else "",
            ]
            for n in nodes
        ],
    )


@snapshot.command("describe")
@click.argument("app")
@click.argument("snapshot_id")
@click.pass_obj
def snapshot_describe(obj: Any, app: str, snapshot_id: str) -> None:
    """Everything known about SNAPSHOT_ID of APP, as JSON: its record, its place in
    the tree, each volume's backend snapshot as the backend sees it now."""
    snapshot_id = snapshot_id_or_fail(snapshot_id, "SNAPSHOT_ID")
    session = session_or_fail(obj, write=False)
    uuid = app_or_fail(session, app)
    try:
        print_json(session.orchestrator.describe_snapshot(uuid, snapshot_id))
    except UnknownTarget as exc:
        fail(str(exc), f"run 'evesnap snapshot list {app}'", EXIT_INVALID)


@snapshot.command("rename")
@click.argument("app")
@click.argument("snapshot_id")
@click.argument("name", callback=free_text_option)
@click.pass_obj
def snapshot_rename(obj: Any, app: str, snapshot_id: str, name: str) -> None:
    """Give SNAPSHOT_ID a display name NAME (the id, and the controller's view, stay)."""
    snapshot_id = snapshot_id_or_fail(snapshot_id, "SNAPSHOT_ID")
    session = session_or_fail(obj)
    uuid = app_or_fail(session, app)
    try:
        session.orchestrator.rename_snapshot(uuid, snapshot_id, name)
    except UnknownTarget as exc:
        fail(str(exc), f"run 'evesnap snapshot list {app}'", EXIT_INVALID)
    except ValueError as exc:
        fail(f"NAME: {exc}", "", EXIT_INVALID)
    click.echo(f"{snapshot_id} is now named {one_line(name)!r}")


@snapshot.command("open")
@click.argument("app")
@click.argument("snapshot_id")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
@click.pass_obj
def snapshot_open(obj: Any, app: str, snapshot_id: str, as_json: bool) -> None:
    """Expose SNAPSHOT_ID's volumes read-only (a path, or an NBD socket that
    qemu-img, qemu-nbd, nbdfuse or guestfish read) to recover single files.
    They stay open until 'evesnap snapshot close'."""
    snapshot_id = snapshot_id_or_fail(snapshot_id, "SNAPSHOT_ID")
    session = session_or_fail(obj, as_json=as_json)
    uuid = app_or_fail(session, app)
    try:
        exports = session.orchestrator.open_snapshot(uuid, snapshot_id)
    except UnknownTarget as exc:
        fail(str(exc), f"run 'evesnap snapshot list {app}'", EXIT_INVALID)
    except EvesnapError as exc:
        fail(f"cannot open {snapshot_id} read-only: {exc}", "", EXIT_FAILED)
    rows = [
        {"volume": key, "kind": e.kind, "path": str(e.path), "format": e.format, "uri": e.uri}
        for key, e in exports.items()
    ]
    if as_json:
        print_json(rows)
    else:
        print_table(
            ["VOLUME", "KIND", "FORMAT", "READ WITH"],
            [[r["volume"], r["kind"], r["format"], r["uri"] or r["path"]] for r in rows],
        )


@snapshot.command("close")
@click.argument("app")
@click.argument("snapshot_id")
@click.pass_obj
def snapshot_close(obj: Any, app: str, snapshot_id: str) -> None:
    """Release what 'evesnap snapshot open' exposed."""
    snapshot_id = snapshot_id_or_fail(snapshot_id, "SNAPSHOT_ID")
    session = session_or_fail(obj)
    uuid = app_or_fail(session, app)
    try:
        session.orchestrator.close_snapshot(uuid, snapshot_id)
    except UnknownTarget as exc:
        fail(str(exc), f"run 'evesnap snapshot list {app}'", EXIT_INVALID)
    except EvesnapError as exc:
        fail(f"cannot close {snapshot_id}: {exc}", "", EXIT_FAILED)
    click.echo(f"{snapshot_id} closed")


def _node_json(node: TreeNode) -> dict[str, Any]:
    """The snapshot in the report's names (ZInfoSnapshot), plus its place in the tree."""
    snap = node.snapshot
    out: dict[str, Any] = {
        "id": snap.id,
        "configId": str(snap.config_id),
        "configVersion": snap.config_version,
        "type": snap.type.name,
        "parent": snap.parent,
        "depth": node.depth,
        "current": node.current,
        "name": snap.display_name,
        "state": snap.state,
        "origin": snap.origin,
        "consistency": snap.consistency,
        "consistencyDetail": snap.consistency_detail,
    }
    if snap.created is not None:
        out["createTime"] = snap.created.isoformat().replace("+00:00", "Z")
    if snap.error is not None:
        out["snapErr"] = {"description": snap.error.description, "timestamp": snap.error.time.isoformat()}
    return out
