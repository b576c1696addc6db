"""Beyond the reference, end to end through the real `evesnap` command on real
qcow2 volumes (two per app; the embedded runtime, so the files are free for
qemu-io): the snapshot tree, describe, rename, the delete variants, rollback
to any snapshot keeping the newer ones, clones of an app and of volumes, and
read-only access through NBD."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from evesnap_core.discovery import load_backends
from evesnap_core.testing.conformance.harness import qemu_io_read, qemu_io_write

from ..support import APP, MIB, VOL, VOL2, Cli

CTRL = "cccccccc-cccc-4ccc-8ccc-cccccccccccc"


@pytest.fixture
def cli(tmp_path: Path) -> Iterator[Cli]:
    if "qcow2" not in load_backends(tmp_path).backends:
        pytest.skip("evesnap-qcow2 is not installed (run scripts/setup)")
    made = Cli(tmp_path, volumes=(VOL, VOL2))
    made.env["EVESNAP_RUNTIME"] = "embedded"
    try:
        out = made("apply", str(made.config()))
        assert out.returncode == 0, out.stderr
        yield made
    finally:
        made.cleanup()


def put(cli: Cli, value: int) -> None:
    """The app's state: byte `value` on the first volume, `value + 100` on the second."""
    qemu_io_write(cli.location(VOL), "qcow2", 0, bytes([value]) * MIB)
    qemu_io_write(cli.location(VOL2), "qcow2", 0, bytes([value + 100]) * MIB)


def state(cli: Cli, locations: tuple[str, str] | None = None) -> tuple[int, int]:
    first, second = locations or (cli.location(VOL), cli.location(VOL2))
    a, b = qemu_io_read(first, "qcow2", 0, MIB), qemu_io_read(second, "qcow2", 0, MIB)
    assert len(set(a)) == 1 and len(set(b)) == 1, "a volume holds mixed bytes"
    return a[0], b[0]


def ok(cli: Cli, *args: str) -> str:
    out = cli(*args)
    assert out.returncode == 0, f"evesnap {' '.join(args)}: {out.stderr}"
    return out.stdout


def snap(cli: Cli, name: str = "") -> str:
    return ok(cli, "snapshot", "create", APP, *(["--name", name] if name else [])).strip()


def tree(cli: Cli) -> list[dict[str, Any]]:
    return list(json.loads(ok(cli, "snapshot", "list", APP, "--json")))


def qcow2_tags(location: str) -> list[str]:
    out = subprocess.run(
        ["qemu-img", "snapshot", "-U", "-l", "--output=json", location],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    if not out.stdout.strip():  # older qemu-img: no JSON for snapshot -l
        out = subprocess.run(
            ["qemu-img", "info", "-U", "--output=json", location], capture_output=True, text=True
        )
        return [s["name"] for s in json.loads(out.stdout).get("snapshots", [])]
    return [s["name"] for s in json.loads(out.stdout)]


def test_the_tree_rollback_to_any_snapshot_keeps_the_newer_ones(cli: Cli) -> None:
    put(cli, 1)
    s1 = snap(cli, "first")
    put(cli, 2)
    s2 = snap(cli)
    ok(cli, "snapshot", "rollback", APP, s1)
    assert state(cli) == (1, 101)
    put(cli, 3)
    s3 = snap(cli)  # a second branch from s1
    nodes = tree(cli)
    assert [(n["id"], n["parent"], n["depth"]) for n in nodes] == [(s1, None, 0), (s2, s1, 1), (s3, s1, 1)]
    assert [n["id"] for n in nodes if n["current"]] == [s3]
    assert nodes[0]["name"] == "first"

    ok(cli, "snapshot", "rollback", APP, s2)  # to the other branch: nothing newer is lost
    assert state(cli) == (2, 102)
    assert {n["id"] for n in tree(cli)} == {s1, s2, s3}
    assert [n["id"] for n in tree(cli) if n["current"]] == [s2]
    put(cli, 4)
    s4 = snap(cli)
    assert next(n for n in tree(cli) if n["id"] == s4)["parent"] == s2
    ok(cli, "snapshot", "rollback", APP, s3)
    assert state(cli) == (3, 103)

    human = ok(cli, "snapshot", "list", APP)
    assert f"  * {s3}" in human and f"\n{s1}" in human  # children indented under their parent


def test_describe_and_rename(cli: Cli) -> None:
    put(cli, 1)
    s1 = snap(cli)
    s2 = snap(cli)
    info = json.loads(ok(cli, "snapshot", "describe", APP, s1))
    assert info["id"] == s1 and info["children"] == [s2] and info["descendants"] == [s2]
    assert info["config"]["uuidandversion"]["uuid"] == APP and not info["current"]
    assert set(info["backendView"]) == {f"{VOL}#0", f"{VOL2}#0"}
    assert all(v["snapshot_id"] == s1 for v in info["backendView"].values())
    assert info["consistency"] == "crash-consistent" and info["consistency_detail"]  # no guest agent here
    assert tree(cli)[0]["consistency"] == "crash-consistent"
    assert "CONSISTENCY" in ok(cli, "snapshot", "list", APP)

    ok(cli, "snapshot", "rename", APP, s1, "before the schema upgrade")
    assert tree(cli)[0]["name"] == "before the schema upgrade" and tree(cli)[0]["id"] == s1
    bad = cli("snapshot", "rename", APP, s1, "two\nlines")
    assert bad.returncode == 2 and "NAME" in bad.stderr
    missing = cli("snapshot", "describe", APP, "0e0e0e0e-0e0e-4e0e-8e0e-0e0e0e0e0e0e")
    assert missing.returncode == 2 and "no snapshot 0e0e0e0e" in missing.stderr


def test_delete_one_with_descendants_descendants_only_and_metadata_only(cli: Cli) -> None:
    put(cli, 1)
    a = snap(cli)
    b = snap(cli)
    c = snap(cli)
    ok(cli, "snapshot", "rollback", APP, a)
    d = snap(cli)  # a -> b -> c, a -> d
    out = json.loads(ok(cli, "snapshot", "delete", APP, b, "--json"))
    assert out["deleted"] == [b]
    assert {n["id"]: n["parent"] for n in tree(cli)} == {a: None, c: a, d: a}  # c moved up to a

    out = json.loads(ok(cli, "snapshot", "delete", APP, a, "--descendants-only", "--json"))
    assert sorted(out["deleted"]) == sorted([c, d]) and [n["id"] for n in tree(cli)] == [a]
    e = snap(cli)
    out = json.loads(ok(cli, "snapshot", "delete", APP, a, "--with-descendants", "--json"))
    assert out["deleted"] == [e, a] and tree(cli) == []  # deepest first
    assert qcow2_tags(cli.location(VOL)) == [] and qcow2_tags(cli.location(VOL2)) == []

    f = snap(cli)
    out = json.loads(ok(cli, "snapshot", "delete", APP, f, "--metadata-only", "--json"))
    assert tree(cli) == [] and len(out["forgotten"][f]) == 2  # names what stays in the backends
    assert len(qcow2_tags(cli.location(VOL))) == 1


def test_a_controller_snapshot_is_deleted_locally_only_with_force(cli: Cli) -> None:
    ok(cli, "apply", str(cli.config(snapshots=[CTRL])))
    refused = cli("snapshot", "delete", APP, CTRL)
    assert (
        refused.returncode == 2
        and "in the controller's list" in refused.stderr
        and "--force" in refused.stderr
    )
    assert [n["id"] for n in tree(cli)] == [CTRL]
    ok(cli, "snapshot", "delete", APP, CTRL, "--force")
    assert tree(cli) == []


def test_local_snapshots_survive_a_new_controller_config(cli: Cli) -> None:
    """The controller's list rules (deletion by omission, max) govern its own snapshots only."""
    mine = snap(cli, "mine")
    ok(cli, "apply", str(cli.config(snapshots=[CTRL])))
    ok(cli, "apply", str(cli.config(snapshots=[])))  # the controller drops its snapshot
    assert [n["id"] for n in tree(cli)] == [mine]


def test_a_cloned_app_is_independent_and_the_controller_neither_sees_nor_removes_it(
    cli: Cli, tmp_path: Path
) -> None:
    put(cli, 1)
    s1 = snap(cli)
    put(cli, 2)
    made = json.loads(ok(cli, "clone", "app", APP, s1, "--name", "shop-upgrade-test", "--json"))
    clone_app = made["app"]
    assert len(made["volumes"]) == 2 and state(cli, tuple(made["volumes"])) == (1, 101)  # type: ignore[arg-type]

    qemu_io_write(made["volumes"][0], "qcow2", 0, b"\x09" * MIB)  # the schema upgrade, on the clone
    assert state(cli) == (2, 102)  # the source does not see it
    put(cli, 5)
    assert state(cli, tuple(made["volumes"])) == (9, 101)  # type: ignore[arg-type]

    status = cli.status()
    assert {a["AppID"] for a in status["apps"]} == {APP, clone_app}
    reports = tmp_path / "reports.json"
    cli.start_agent(cli.config(), reports)
    seen = cli.wait_reports(reports, lambda r: bool(r["apps"]))
    cli.stop_agent()
    assert [a["AppID"] for a in seen["apps"]] == [APP]  # not reported to the controller
    ok(cli, "apply", str(cli.config()))
    assert clone_app in {a["AppID"] for a in cli.status()["apps"]}  # nor removed by it

    ok(cli, "snapshot", "delete", APP, s1)  # a qcow2 clone does not need its source
    assert state(cli, tuple(made["volumes"])) == (9, 101)  # type: ignore[arg-type]
    refused = cli("clone", "delete", APP)
    assert refused.returncode == 1 and "the controller's" in refused.stderr
    ok(cli, "clone", "delete", clone_app)
    assert clone_app not in {a["AppID"] for a in cli.status()["apps"]}
    assert not any(Path(v).exists() for v in made["volumes"])


def test_cloned_volumes_and_their_removal(cli: Cli) -> None:
    put(cli, 7)
    s1 = snap(cli)
    put(cli, 8)
    made = json.loads(ok(cli, "clone", "volumes", APP, s1, "--json"))
    assert [m["from"].rsplit("/", 1)[1] for m in made] == [f"{VOL}#0", f"{VOL2}#0"]
    assert state(cli, (made[0]["location"], made[1]["location"])) == (7, 107)
    ok(cli, "apply", str(cli.config()))  # a new config does not release them
    assert all(Path(m["location"]).exists() for m in made)
    for m in made:
        ok(cli, "clone", "delete", m["uuid"])
        assert not Path(m["location"]).exists()
    missing = cli("clone", "delete", made[0]["uuid"])
    assert missing.returncode == 2 and "no clone" in missing.stderr


def test_read_only_access_through_nbd(cli: Cli) -> None:
    put(cli, 3)
    s1 = snap(cli)
    put(cli, 4)
    exports = json.loads(ok(cli, "snapshot", "open", APP, s1, "--json"))
    assert [e["volume"] for e in exports] == [f"{VOL}#0", f"{VOL2}#0"]
    assert json.loads(ok(cli, "snapshot", "open", APP, s1, "--json")) == exports  # idempotent
    first, second = (e["uri"] for e in exports)
    assert qemu_io_read(first, "raw", 0, MIB) == b"\x03" * MIB  # the snapshot, not the current bytes
    assert qemu_io_read(second, "raw", 0, MIB) == bytes([103]) * MIB
    with pytest.raises(Exception, match=r"(?i)read.only|permission"):
        qemu_io_write(first, "raw", 0, b"\x00" * 4096)
    sockets = [Path(e["path"]) for e in exports]
    assert all(s.exists() for s in sockets)
    ok(cli, "snapshot", "close", APP, s1)
    assert not any(s.exists() for s in sockets)
    assert state(cli) == (4, 104)


def test_deleting_an_open_snapshot_closes_it_first(cli: Cli) -> None:
    s1 = snap(cli)
    exports = json.loads(ok(cli, "snapshot", "open", APP, s1, "--json"))
    ok(cli, "snapshot", "delete", APP, s1)
    assert not any(Path(e["path"]).exists() for e in exports)
    assert qcow2_tags(cli.location(VOL)) == []


@pytest.mark.parametrize(("crash_at", "kept"), [("clone.volume_done", False), ("clone.recorded", True)])
def test_a_clone_killed_midway_is_undone_or_kept_whole(cli: Cli, crash_at: str, kept: bool) -> None:
    put(cli, 1)
    s1 = snap(cli)
    volumes_dir = Path(cli.location(VOL)).parent
    before = set(volumes_dir.iterdir())
    cli.env["EVESNAP_CRASH_AT"] = crash_at
    killed = cli("clone", "app", APP, s1, "--name", "half")
    del cli.env["EVESNAP_CRASH_AT"]
    assert killed.returncode == -9, killed.stderr  # SIGKILL at the crash point
    ok(cli, "apply", str(cli.config()))  # the next writer resolves the journal
    apps = {a["AppName"]: a["AppID"] for a in cli.status()["apps"]}
    if kept:  # recorded before the kill: a whole clone, both volumes
        assert "half" in apps and len(set(volumes_dir.iterdir()) - before) == 2
        ok(cli, "clone", "delete", apps["half"])
    else:  # one volume made, nothing recorded: undone, no file left behind
        assert "half" not in apps
    assert set(volumes_dir.iterdir()) == before


def test_a_clone_that_fails_on_its_second_volume_leaves_nothing(cli: Cli) -> None:
    s1 = snap(cli)
    second = Path(cli.location(VOL2))
    second.rename(second.with_suffix(".away"))  # its snapshot cannot be read now
    volumes_dir = second.parent
    before = set(volumes_dir.iterdir())
    out = cli("clone", "app", APP, s1, "--name", "broken")
    assert out.returncode == 1 and "nothing was left behind" in out.stderr, out.stderr
    assert set(volumes_dir.iterdir()) == before  # the first volume's clone is gone again
    assert not any((cli.root / "persist" / "evesnap" / "journal").iterdir())  # its intent resolved
    assert "broken" not in {a.get("AppName") for a in cli.status()["apps"]}
    second.with_suffix(".away").rename(second)
