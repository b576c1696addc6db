"""Hostile ground (issue 23): a full disk, a damaged state file or a planted
symlink never takes down another app, nor makes evesnap write outside its folder.

Every case runs the real `evesnap` command on real qcow2 volumes (embedded
runtime, so that no QEMU is needed for state handling) with two or more apps;
the damage is done to one app's state only, and the other app must still
reconcile (a new snapshot taken) and report. Figures are in
docs/reliability.md ("Hostile ground").

``.venv/bin/pytest -q tests/reliability/test_hostile_ground.py``
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from evesnap_core.discovery import load_backends
from evesnap_core.testing.loopfs import loop_filesystem_fixture

from ..support import EVESNAP, MIB, Cli, controller_view

APP_A = "6ba7b810-9dad-41d1-80b4-00c04fd430c8"
APP_B = "7ba7b810-9dad-41d1-80b4-00c04fd430c8"
VOL_A = "6ba7b814-9dad-41d1-80b4-00c04fd430c8"
VOL_B = "7ba7b814-9dad-41d1-80b4-00c04fd430c8"
SNAP_A, SNAP_B = "1a7b8100-9dad-41d1-80b4-00c04fd430c8", "1b7b8100-9dad-41d1-80b4-00c04fd430c8"
SNAP_A2, SNAP_B2 = "2a7b8100-9dad-41d1-80b4-00c04fd430c8", "2b7b8100-9dad-41d1-80b4-00c04fd430c8"
TREE = "8ba7b816-9dad-41d1-80b4-00c04fd430c8"
TIMEOUT = 60


@pytest.fixture
def cli(tmp_path: Path) -> Iterator[Cli]:
    if "qcow2" not in load_backends(tmp_path / "probe").backends:
        pytest.skip("evesnap-qcow2 is not installed (run scripts/setup)")
    made = Cli(tmp_path)
    made.env["EVESNAP_RUNTIME"] = "embedded"
    try:
        yield made
    finally:
        subprocess.run(["rm", "-rf", str(made.run_dir)], check=False)


def two_apps(snaps_a: list[str], snaps_b: list[str]) -> dict[str, Any]:
    def app(uuid_: str, vol: str, name: str, snaps: list[str]) -> dict[str, Any]:
        return {
            "uuidandversion": {"uuid": uuid_, "version": "1"},
            "displayname": name,
            "activate": True,
            "volumeRefList": [{"uuid": vol}],
            "snapshot": {"maxSnapshots": 5, "snapshots": [{"id": s, "type": 2} for s in snaps]},
        }

    return {
        "apps": [app(APP_A, VOL_A, "victim", snaps_a), app(APP_B, VOL_B, "bystander", snaps_b)],
        "volumes": [
            {"uuid": v, "maxsizebytes": str(MIB), "origin": {"type": "VCOT_BLANK"}} for v in (VOL_A, VOL_B)
        ],
    }


def run(cli: Cli, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """The real command, with a deadline: a FIFO must never hang it."""
    return subprocess.run(
        [EVESNAP, *args],
        env=cli.env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        input=stdin,
    )


def apply(cli: Cli, data: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    path = cli.root / f"config-{uuid.uuid4().hex[:6]}.json"
    path.write_text(json.dumps(data))
    return run(cli, "apply", "--json", str(path))


def reports(out: subprocess.CompletedProcess[str]) -> dict[str, dict[str, Any]]:
    data = json.loads(out.stdout)
    return {a["AppID"]: a for a in data["apps"]}


def available(app: dict[str, Any]) -> set[str]:
    return {s["id"] for s in app.get("snapshots", []) if not s.get("snapErr")}


def errors(app: dict[str, Any]) -> str:
    texts = [e["description"] for e in app.get("appErr", [])]
    texts += [s["snapErr"]["description"] for s in app.get("snapshots", []) if s.get("snapErr")]
    return "\n".join(texts)


# ---------------------------------------------------------------- damaged state, one app


def _fifo(path: Path) -> None:
    path.unlink()
    os.mkfifo(path, 0o600)


def _link_dev_zero(path: Path) -> None:
    path.unlink()
    path.symlink_to("/dev/zero")


def _huge(path: Path) -> None:
    with path.open("r+b") as f:
        f.truncate(2 << 30)  # 2 GiB, sparse


def _deep(path: Path) -> None:
    path.write_bytes(b"[" * 100_000 + b"]" * 100_000)


def _deep_object(path: Path) -> None:
    path.write_bytes(b'{"SchemaVersion": 1, "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}")


def _file_for_folder(path: Path) -> None:
    subprocess.run(["rm", "-rf", str(path)], check=True)
    path.write_text("not a folder\n")


def _dir_for_file(path: Path) -> None:
    path.unlink()
    path.mkdir()


def app_file(persist: Path) -> Path:
    return persist / "evesnap" / "apps" / f"{APP_A}.json"


def snapshot_file(persist: Path) -> Path:
    return persist / "snapshots" / SNAP_A / "snapshotInstanceStatus.json"


def volume_file(persist: Path) -> Path:
    """The victim's volume record (named by a hash of its key)."""
    import hashlib

    name = hashlib.sha256(f"{VOL_A}#0".encode()).hexdigest()[:32]
    return persist / "evesnap" / "volumes" / f"{name}.json"


def snapshot_folder(persist: Path) -> Path:
    return persist / "snapshots" / SNAP_A


DAMAGE: dict[str, tuple[Callable[[Path], Path], Callable[[Path], None]]] = {
    "fifo-for-snapshot-status": (snapshot_file, _fifo),
    "fifo-for-app-state": (app_file, _fifo),
    "dev-zero-link-for-app-state": (app_file, _link_dev_zero),
    "dev-zero-link-for-snapshot-status": (snapshot_file, _link_dev_zero),
    "2-GiB-sparse-app-state": (app_file, _huge),
    "2-GiB-sparse-snapshot-status": (snapshot_file, _huge),
    "file-for-snapshot-folder": (snapshot_folder, _file_for_folder),
    "100000-deep-snapshot-status": (snapshot_file, _deep),
    "100000-deep-inside-an-object": (snapshot_file, _deep_object),
    "folder-for-app-state": (app_file, _dir_for_file),
    "fifo-for-volume-state": (volume_file, _fifo),
}


@pytest.mark.parametrize("kind", sorted(DAMAGE))
def test_damaged_state_affects_only_its_own_app(cli: Cli, kind: str) -> None:
    first = apply(cli, two_apps([SNAP_A], [SNAP_B]))
    assert first.returncode == 0, first.stderr
    persist = cli.root / "persist"
    where, damage = DAMAGE[kind]
    damage(where(persist))

    out = apply(cli, two_apps([SNAP_A, SNAP_A2], [SNAP_B, SNAP_B2]))
    assert "Traceback" not in out.stderr, out.stderr
    assert out.returncode == 1, (out.returncode, out.stderr)  # the damage is reported
    apps = reports(out)
    assert available(apps[APP_B]) == {SNAP_B, SNAP_B2}, apps[APP_B]  # the bystander reconciled
    assert errors(apps[APP_B]) == ""
    assert where(persist).name in errors(apps[APP_A]), apps[APP_A]  # reported on its own app
    # set aside: the next run is clean for the bystander, and still says what happened to the victim
    again = apply(cli, two_apps([SNAP_A, SNAP_A2], [SNAP_B, SNAP_B2]))
    assert "Traceback" not in again.stderr, again.stderr
    assert available(reports(again)[APP_B]) == {SNAP_B, SNAP_B2}
    status = run(cli, "status", "--json")
    assert status.returncode == 0, status.stderr


# ---------------------------------------------------------------- the lock file


def _lock_dir(path: Path) -> None:
    path.mkdir()


def _lock_fifo(path: Path) -> None:
    os.mkfifo(path, 0o600)


def _lock_dev_zero(path: Path) -> None:
    path.symlink_to("/dev/zero")


LOCKS = {"directory": _lock_dir, "FIFO": _lock_fifo, "link to /dev/zero": _lock_dev_zero}


@pytest.mark.parametrize("kind", sorted(LOCKS))
def test_an_odd_lock_file_is_refused_in_one_line(cli: Cli, kind: str) -> None:
    first = apply(cli, two_apps([SNAP_A], [SNAP_B]))
    assert first.returncode == 0, first.stderr
    lock = cli.root / "persist" / "evesnap.lock"
    lock.unlink()
    LOCKS[kind](lock)
    for args in (["snapshot", "create", APP_B], ["snapshot", "delete", APP_B, SNAP_B, "--force"]):
        out = run(cli, *args)
        assert out.returncode == 2, (args, out.returncode, out.stderr)
        assert out.stderr.count("\n") == 1 and "evesnap.lock" in out.stderr and "not a regular" in out.stderr
    out = apply(cli, two_apps([SNAP_A], [SNAP_B]))
    assert out.returncode == 2 and "evesnap.lock" in out.stderr and "Traceback" not in out.stderr
    assert run(cli, "status").returncode == 0  # a read takes no lock
    assert run(cli, "snapshot", "list", APP_B).returncode == 0


def test_a_lock_file_linked_to_a_file_outside_leaves_it_unchanged(cli: Cli) -> None:
    outside = cli.root / "precious.txt"
    outside.write_text("root-only content\n")
    persist = cli.root / "persist"
    persist.mkdir(mode=0o700)
    (persist / "evesnap.lock").symlink_to(outside)
    out = apply(cli, two_apps([], []))
    assert out.returncode == 2 and "evesnap.lock" in out.stderr, out.stderr
    assert outside.read_text() == "root-only content\n"


# ---------------------------------------------------------------- planted symbolic links


def tree(folder: Path) -> dict[str, bytes | str]:
    """Every entry below `folder`: a file's bytes, a link's target, a folder's mark."""
    out: dict[str, bytes | str] = {}
    for path in sorted(folder.rglob("*")):
        rel = str(path.relative_to(folder))
        if path.is_symlink():
            out[rel] = f"-> {os.readlink(path)}"
        elif path.is_dir():
            out[rel] = "dir"
        else:
            out[rel] = path.read_bytes()
    return out


def relink(path: Path, outside: Path) -> None:
    """Move `path` (a folder or file) to `outside` and leave a link to it in its place."""
    subprocess.run(["cp", "-a", str(path), str(outside)], check=True)
    subprocess.run(["rm", "-rf", str(path)], check=True)
    path.symlink_to(outside)


STATE_FOLDERS = [
    "snapshots",
    "evesnap",
    "evesnap/apps",
    "evesnap/volumes",
    "evesnap/journal",
    "evesnap/quarantine",
    "vault",
    "vault/volumes",
]


@pytest.mark.parametrize("folder", STATE_FOLDERS)
def test_a_state_folder_replaced_by_a_link_writes_nothing_outside(cli: Cli, folder: str) -> None:
    first = apply(cli, two_apps([SNAP_A], [SNAP_B]))
    assert first.returncode == 0, first.stderr
    persist = cli.root / "persist"
    (persist / "evesnap" / "quarantine").mkdir(mode=0o700, exist_ok=True)
    outside = cli.root / "elsewhere"
    relink(persist / folder, outside)
    before = tree(outside)

    out = apply(cli, two_apps([SNAP_A, SNAP_A2], [SNAP_B, SNAP_B2]))
    assert "Traceback" not in out.stderr, out.stderr
    assert out.returncode != 0, out.stdout
    said = out.stderr + out.stdout
    assert "symbolic link" in said and str(persist / folder) in said, said
    assert tree(outside) == before, "a write went through the link"
    snap = run(cli, "snapshot", "create", APP_B)
    assert snap.returncode != 0 and "Traceback" not in snap.stderr, snap.stderr
    assert tree(outside) == before


def test_a_snapshot_folder_or_app_state_replaced_by_a_link_is_set_aside(cli: Cli) -> None:
    first = apply(cli, two_apps([SNAP_A], [SNAP_B]))
    assert first.returncode == 0, first.stderr
    persist = cli.root / "persist"
    relink(persist / "snapshots" / SNAP_A, cli.root / "outside-snapshot")
    relink(app_file(persist), cli.root / "outside-app.json")
    before = tree(cli.root / "outside-snapshot"), (cli.root / "outside-app.json").read_bytes()

    out = apply(cli, two_apps([SNAP_A, SNAP_A2], [SNAP_B, SNAP_B2]))
    assert "Traceback" not in out.stderr, out.stderr
    apps = reports(out)
    assert available(apps[APP_B]) == {SNAP_B, SNAP_B2}
    assert "symbolic link" in errors(apps[APP_A]), apps[APP_A]
    assert (tree(cli.root / "outside-snapshot"), (cli.root / "outside-app.json").read_bytes()) == before
    assert not (persist / "snapshots" / SNAP_A).is_symlink() and not app_file(persist).is_symlink()


def test_a_sidecar_linked_to_a_file_outside_leaves_it_unchanged(cli: Cli) -> None:
    first = apply(cli, two_apps([SNAP_A], [SNAP_B]))
    assert first.returncode == 0, first.stderr
    outside = cli.root / "precious.txt"
    outside.write_text("root-only content\n")
    (sidecar,) = (cli.root / "persist" / "vault" / "volumes").glob(f"{VOL_B}*.evesnap.json")
    sidecar.unlink()
    sidecar.symlink_to(outside)
    out = run(cli, "snapshot", "create", APP_B)
    assert out.returncode == 0, out.stderr
    assert outside.read_text() == "root-only content\n"
    assert not sidecar.is_symlink()  # replaced by a real sidecar


def test_an_image_replaced_by_a_link_is_refused_and_the_target_unchanged(cli: Cli) -> None:
    first = apply(cli, two_apps([SNAP_A], [SNAP_B]))
    assert first.returncode == 0, first.stderr
    (image,) = (cli.root / "persist" / "vault" / "volumes").glob(f"{VOL_B}*.qcow2")
    outside = cli.root / "outside.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(outside), "1M"], check=True, timeout=30)
    before = outside.read_bytes()
    image.unlink()
    image.symlink_to(outside)
    out = run(cli, "snapshot", "create", APP_B)
    assert out.returncode == 1 and "symbolic link" in out.stderr, out.stderr
    assert out.stderr.count("\n") == 1, out.stderr
    assert outside.read_bytes() == before


# ---------------------------------------------------------------- a full disk


small_fs = loop_filesystem_fixture("ext4", 24 * MIB)


def on(mount: Path, cli: Cli) -> Path:
    """Put the device's persist folder on `mount`; returns it."""
    persist = mount / "persist"
    cli.env["EVESNAP_PERSIST"] = str(persist)
    return persist


def fill(mount: Path) -> Path:
    """Fill `mount` to the last byte with one file; returns it."""
    filler = mount / "filler"
    with filler.open("wb", buffering=0) as f:
        try:
            while True:
                f.write(b"\xff" * 65536)
        except OSError:
            pass
        try:
            while True:
                f.write(b"\xff" * 1024)
        except OSError:
            pass
    return filler


def images(persist: Path) -> list[Path]:
    return sorted((persist / "vault" / "volumes").glob("*.qcow2"))


def leaks(persist: Path) -> dict[str, int]:
    """qemu-img check of every image: its exit code (0 clean, 3 leaked clusters)."""
    check = ["qemu-img", "check", "-q"]
    return {
        p.name: subprocess.run([*check, str(p)], capture_output=True, timeout=30).returncode
        for p in images(persist)
    }


def write_data(persist: Path) -> None:
    for image in images(persist):
        subprocess.run(
            ["qemu-io", "-f", "qcow2", "-c", "write -P 7 0 512k", str(image)],
            check=True,
            capture_output=True,
            timeout=30,
        )


def test_apply_on_a_full_disk_reports_every_app_and_converges_once_freed(cli: Cli, small_fs: Path) -> None:
    persist = on(small_fs, cli)
    first = apply(cli, two_apps([SNAP_A], [SNAP_B]))
    assert first.returncode == 0, first.stderr
    write_data(persist)
    filler = fill(small_fs)
    wanted = two_apps([SNAP_A, SNAP_A2], [SNAP_B, SNAP_B2])

    out = apply(cli, wanted)
    assert "Traceback" not in out.stderr, out.stderr
    assert out.returncode == 1, out.stderr
    assert "No space left on device" in out.stderr or "not enough space" in out.stderr, out.stderr
    apps = reports(out)
    for app in (APP_A, APP_B):  # the apps after the failing one were reconciled too
        assert errors(apps[app]), apps[app]
    assert set(leaks(persist).values()) == {0}

    # a snapshot cut short by a nearly full disk (1 to 4 KiB free) leaves no leaked cluster
    size = filler.stat().st_size
    for kib in (1, 2, 3, 4):
        os.truncate(filler, size - kib * 1024)
        out = apply(cli, wanted)
        assert "Traceback" not in out.stderr, out.stderr
        assert set(leaks(persist).values()) == {0}, (kib, leaks(persist), out.stderr)

    filler.unlink()
    out = apply(cli, wanted)
    assert out.returncode == 0, out.stderr
    apps = reports(out)
    assert available(apps[APP_A]) == {SNAP_A, SNAP_A2} and available(apps[APP_B]) == {SNAP_B, SNAP_B2}
    assert set(leaks(persist).values()) == {0}


AGENT_ARGS = ("--interval", "0.2", "--resync", "0", "--no-api")


def test_the_agent_keeps_running_on_a_full_disk_and_converges_once_freed(
    cli: Cli, small_fs: Path, tmp_path: Path
) -> None:
    persist = on(small_fs, cli)
    first = apply(cli, two_apps([SNAP_A], [SNAP_B]))
    assert first.returncode == 0, first.stderr
    filler = fill(small_fs)
    config = tmp_path / "device.json"
    config.write_text(json.dumps(two_apps([SNAP_A, SNAP_A2], [SNAP_B, SNAP_B2])))
    report_file = tmp_path / "reports.json"  # beside the full disk: what the agent says meanwhile
    log = (tmp_path / "agent.log").open("w")
    agent = subprocess.Popen(
        [EVESNAP, "agent", "--config", str(config), "--reports", str(report_file), *AGENT_ARGS],
        env=cli.env,
        stderr=log,
        text=True,
    )
    try:

        def wait(predicate: Callable[[dict[str, dict[str, Any]]], bool]) -> dict[str, dict[str, Any]]:
            deadline = time.monotonic() + TIMEOUT
            while time.monotonic() < deadline:
                assert agent.poll() is None, (tmp_path / "agent.log").read_text()
                try:
                    apps = {
                        a["AppID"]: a for a in controller_view(json.loads(report_file.read_text()))["apps"]
                    }
                    if predicate(apps):
                        return apps
                except (OSError, ValueError, KeyError):
                    pass
                time.sleep(0.1)
            raise AssertionError((tmp_path / "agent.log").read_text())

        wait(lambda apps: all(errors(apps[a]) for a in (APP_A, APP_B)))  # up, reporting, both tried
        assert agent.poll() is None
        filler.unlink()
        apps = wait(
            lambda apps: (
                available(apps[APP_A]) == {SNAP_A, SNAP_A2} and available(apps[APP_B]) == {SNAP_B, SNAP_B2}
            )
        )
        assert errors(apps[APP_B]) == ""
    finally:
        agent.terminate()
        agent.wait(timeout=60)
        log.close()
    text = (tmp_path / "agent.log").read_text()
    assert "Traceback" not in text, text
    assert "No space left on device" in text or "not enough space" in text, text
    assert set(leaks(persist).values()) == {0}


def test_a_snapshot_cut_short_by_a_full_disk_leaves_no_leaked_cluster(small_fs: Path) -> None:
    """Straight into the qcow2 backend, so that the free space at `qemu-img
    snapshot -c` is exact: 0 to 8 KiB, where the snapshot table or the L1 copy
    is cut off halfway (it leaked 1 cluster at 1 KiB free before)."""
    from evesnap_core.errors import NoSpace
    from evesnap_core.handler_types import VolumeSpec

    backend = load_backends(small_fs, environ={}).get("qcow2")
    tried: dict[int, str] = {}
    for kib in range(9):
        spec = VolumeSpec(uuid=uuid.uuid4(), format="qcow2", size_bytes=64 * MIB, backend="qcow2")
        handle = backend.create_volume(spec)
        image = Path(handle.location)
        qemu_io = ["qemu-io", "-f", "qcow2", "-c"]
        subprocess.run([*qemu_io, "write -P 7 0 4M", str(image)], check=True, capture_output=True)
        backend.snapshot(handle, "s0")
        subprocess.run([*qemu_io, "write -P 8 0 1M", str(image)], check=True, capture_output=True)
        filler = fill(small_fs)
        os.truncate(filler, max(0, filler.stat().st_size - kib * 1024))
        try:
            backend.snapshot(handle, "cut")
            tried[kib] = "taken"
        except NoSpace:
            tried[kib] = "NoSpace"
        check = subprocess.run(["qemu-img", "check", str(image)], capture_output=True, text=True, timeout=30)
        assert check.returncode == 0, (kib, tried, check.stdout)
        filler.unlink()
        backend.destroy_volume(handle)
    assert "NoSpace" in tried.values(), tried


# ---------------------------------------------------------------- ownership

HOSTILE_USER = "evesnap-hostile"


@pytest.fixture
def other_uid() -> Iterator[int]:
    """A second local user (made with useradd, removed after), or skip when not root."""
    import pwd
    import shutil

    if os.geteuid() != 0:
        pytest.skip("changing a folder's owner needs root")
    made = False
    try:
        uid = pwd.getpwnam(HOSTILE_USER).pw_uid
    except KeyError:
        if shutil.which("useradd") is None:
            pytest.skip("useradd is not installed")
        subprocess.run(["useradd", "--no-create-home", "--shell", "/bin/false", HOSTILE_USER], check=True)
        made = True
        uid = pwd.getpwnam(HOSTILE_USER).pw_uid
    try:
        yield uid
    finally:
        if made:
            subprocess.run(["userdel", HOSTILE_USER], check=False)


def test_a_persist_folder_owned_by_another_user_is_refused(cli: Cli, other_uid: int) -> None:
    persist = cli.root / "persist"
    persist.mkdir(mode=0o700)
    precious = cli.root / "root-only.txt"
    precious.write_text("root's\n")
    precious.chmod(0o600)
    os.chown(persist, other_uid, -1)
    (persist / "evesnap.lock").symlink_to(precious)  # what that user would plant
    os.lchown(persist / "evesnap.lock", other_uid, -1)
    for args in (["status"], ["snapshot", "list", APP_A]):
        out = run(cli, *args)
        assert out.returncode == 2, (args, out.stderr)
        assert out.stderr.count("\n") == 1 and str(persist) in out.stderr and HOSTILE_USER in out.stderr
    out = apply(cli, two_apps([], []))
    assert out.returncode == 2 and "owned by" in out.stderr, out.stderr
    assert precious.read_text() == "root's\n"


def test_a_persist_folder_under_a_folder_others_can_write_is_refused_unless_sticky(cli: Cli) -> None:
    shared = cli.root / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    persist = shared / "persist"
    cli.env["EVESNAP_PERSIST"] = str(persist)
    out = apply(cli, two_apps([], []))
    assert out.returncode == 2 and f"{shared}, above {persist}" in out.stderr, out.stderr
    assert out.stderr.count("\n") == 1
    shared.chmod(0o1777)  # sticky, as /tmp: nobody can rename another's folder away
    out = apply(cli, two_apps([], []))
    assert out.returncode == 0, out.stderr


def test_a_runtime_folder_others_can_write_or_another_user_owns_is_refused(cli: Cli, other_uid: int) -> None:
    cli.run_dir.chmod(0o777)
    out = apply(cli, two_apps([], []))
    assert out.returncode == 2 and str(cli.run_dir) in out.stderr and "EVESNAP_RUNTIME_DIR" in out.stderr
    cli.run_dir.chmod(0o700)
    os.chown(cli.run_dir, other_uid, -1)
    out = apply(cli, two_apps([], []))
    assert out.returncode == 2 and "owned by" in out.stderr, out.stderr
    os.chown(cli.run_dir, 0, -1)
    assert apply(cli, two_apps([], [])).returncode == 0


# ---------------------------------------------------------------- volumes and content boundaries


def with_version(data: dict[str, Any], version: str) -> dict[str, Any]:
    for app in data["apps"]:
        app["uuidandversion"]["version"] = version
    return data


@pytest.mark.parametrize("reference", ["backing_file", "data_file"])
def test_a_volume_naming_a_file_outside_the_persist_folder_is_refused_before_the_app_starts(
    cli: Cli, reference: str
) -> None:
    first = apply(cli, two_apps([], []))
    assert first.returncode == 0, first.stderr
    secret = cli.root / "host-secret.raw"
    secret.write_bytes(b"S" * MIB)
    (image,) = (cli.root / "persist" / "vault" / "volumes").glob(f"{VOL_A}*.qcow2")
    image.unlink()
    opts = (
        ["-b", str(secret), "-F", "raw"]
        if reference == "backing_file"
        else ["-o", f"data_file={secret},data_file_raw=on"]
    )
    create = ["qemu-img", "create", "-q", "-f", "qcow2", *opts, str(image), "1M"]
    subprocess.run(create, check=True, timeout=30)
    before = secret.read_bytes()  # (creating a data-file image rewrites that file)

    out = apply(cli, with_version(two_apps([], []), "2"))  # an update: each app is stopped and started
    assert "Traceback" not in out.stderr, out.stderr
    assert out.returncode == 1, out.stderr
    apps = reports(out)
    assert "outside the persist folder" in errors(apps[APP_A]) and str(secret) in errors(apps[APP_A])
    assert apps[APP_A]["state"] == "ERROR" and apps[APP_B]["state"] != "ERROR", apps
    assert errors(apps[APP_B]) == ""
    assert secret.read_bytes() == before


@pytest.mark.parametrize("url", ["file:///etc/shadow", "/etc/shadow", "../../../../../../../../etc/shadow"])
def test_a_content_url_outside_the_content_roots_is_refused(cli: Cli, url: str) -> None:
    data = two_apps([], [])
    data["volumes"][0]["origin"] = {"type": "VCOT_DOWNLOAD", "downloadContentTreeID": TREE}
    data["contentInfo"] = [{"uuid": TREE, "URL": url, "iformat": "RAW"}]
    out = apply(cli, data)
    assert out.returncode == 1, (out.returncode, out.stdout, out.stderr)  # reported, the rest applied
    assert "Traceback" not in out.stderr, out.stderr
    said = out.stdout + out.stderr
    assert "contentInfo[0].URL" in said and ("content roots" in said or "climb out" in said), said
    assert not list((cli.root / "persist").rglob(f"{VOL_A}*")), "a volume was made from it"
    assert reports(out)[APP_B]["state"] != "ERROR"
    # the same file inside a configured content root is taken
    shadow_like = cli.root / "content" / "os.raw"
    shadow_like.parent.mkdir()
    shadow_like.write_bytes(b"\x11" * MIB)
    data["contentInfo"] = [{"uuid": TREE, "URL": shadow_like.as_uri(), "iformat": "RAW"}]
    cli.env["EVESNAP_CONTENT_ROOTS"] = str(shadow_like.parent)
    out = apply(cli, data)
    assert out.returncode == 0, out.stderr


# ---------------------------------------------------------------- free text


HOSTILE_NAMES = {
    "newline": "two\nlines",
    "control character": "bell\x07",
    "RTL mark": "gnp.\u200fexe",
    "over 256 characters": "n" * 257,
}


def test_hostile_free_text_is_refused_before_any_work(cli: Cli) -> None:
    first = apply(cli, two_apps([SNAP_A], [SNAP_B]))
    assert first.returncode == 0, first.stderr
    persist = cli.root / "persist"
    before = sorted(str(p.relative_to(persist)) for p in persist.rglob("*") if "lock" not in p.name)
    for what, name in HOSTILE_NAMES.items():
        for args, field in (
            (["clone", "app", APP_B, SNAP_B, "--name", name], "--name"),
            (["snapshot", "create", APP_B, "--name", name], "--name"),
            (["snapshot", "rename", APP_B, SNAP_B, name], "NAME"),
        ):
            out = run(cli, *args)
            assert out.returncode == 2, (what, args[:2], out.returncode, out.stderr)
            assert out.stderr.count("\n") == 1 and field in out.stderr, (what, out.stderr)
            assert "Traceback" not in out.stderr
    after = sorted(str(p.relative_to(persist)) for p in persist.rglob("*") if "lock" not in p.name)
    assert after == before, "a refused name left something behind"
    ok = run(cli, "clone", "app", APP_B, SNAP_B, "--name", "a fine name \u00e9")
    assert ok.returncode == 0, ok.stderr


# ---------------------------------------------------------------- the agent's config, by content


def test_the_agent_sees_a_config_replaced_with_the_same_size_and_mtime(cli: Cli, tmp_path: Path) -> None:
    config = tmp_path / "device.json"
    config.write_text(json.dumps(with_version(two_apps([], []), "1")))
    stamp = config.stat()
    report_file = tmp_path / "reports.json"
    log = (tmp_path / "agent.log").open("w")
    agent = subprocess.Popen(
        [EVESNAP, "agent", "--config", str(config), "--reports", str(report_file), *AGENT_ARGS],
        env=cli.env,
        stderr=log,
        text=True,
    )
    try:

        def wait_version(version: str) -> None:
            deadline = time.monotonic() + TIMEOUT
            while time.monotonic() < deadline:
                assert agent.poll() is None, (tmp_path / "agent.log").read_text()
                try:
                    apps = controller_view(json.loads(report_file.read_text()))["apps"]
                    if apps and all(a.get("appVersion") == version for a in apps):
                        return
                except (OSError, ValueError, KeyError):
                    pass
                time.sleep(0.1)
            raise AssertionError(f"never reported version {version}: {(tmp_path / 'agent.log').read_text()}")

        wait_version("1")
        staged = tmp_path / "staged.json"  # as `cp -p staged device.json` does: same size, same mtime
        staged.write_text(json.dumps(with_version(two_apps([], []), "2")))
        os.utime(staged, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))
        subprocess.run(["cp", "-p", str(staged), str(config)], check=True)
        after = config.stat()
        assert (after.st_size, after.st_mtime_ns) == (stamp.st_size, stamp.st_mtime_ns)
        wait_version("2")  # with --resync 0: only the content told it
    finally:
        agent.terminate()
        agent.wait(timeout=60)
        log.close()


@pytest.mark.qemu
def test_with_real_qemu_apps_a_backing_file_outside_is_never_opened(tmp_path: Path) -> None:
    """The same as above with the qemu runtime: each app a real qemu-system. The
    bystander's QEMU runs the new version; no QEMU ever has the host file open."""
    if "qcow2" not in load_backends(tmp_path / "probe").backends:
        pytest.skip("evesnap-qcow2 is not installed (run scripts/setup)")
    cli = Cli(tmp_path)  # the default runtime: qemu
    try:
        first = apply(cli, two_apps([], []))
        assert first.returncode == 0, first.stderr
        secret = cli.root / "host-secret.raw"
        secret.write_bytes(b"S" * MIB)
        (image,) = (cli.root / "persist" / "vault" / "volumes").glob(f"{VOL_A}*.qcow2")
        # replaced under the running QEMU (which keeps the old file open); the update restarts it
        image.unlink()
        create = ["qemu-img", "create", "-q", "-f", "qcow2", "-b", str(secret), "-F", "raw", str(image), "1M"]
        subprocess.run(create, check=True, timeout=30)
        out = apply(cli, with_version(two_apps([], []), "2"))
        assert "Traceback" not in out.stderr, out.stderr
        apps = reports(out)
        assert "outside the persist folder" in errors(apps[APP_A]), apps[APP_A]
        assert apps[APP_B]["state"] == "RUNNING" and errors(apps[APP_B]) == "", apps[APP_B]
        holders = [fd for fd in Path("/proc").glob("[0-9]*/fd/*") if _points_at(fd, secret)]
        assert holders == [], holders
    finally:
        cli.cleanup()


def _points_at(fd: Path, target: Path) -> bool:
    try:
        return os.readlink(fd) == str(target)
    except OSError:
        return False
