"""The agent's local API with a real QEMU app and a real qcow2 volume: the CLI
goes through it while the agent runs (same output, same exit codes, never
"locked"), concurrently with a controller config change; the resources and
operations answer programs; the socket is 0600; the OpenAPI document in docs/
is the server's."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from evesnap_core.api.openapi import text as openapi_text
from evesnap_core.settings import default_persist_dir, default_runtime_dir
from evesnap_launch import agent_http
from evesnap_launch import client as launch

from ..support import APP, EVESNAP, MIB, VOL, VOL2, Cli

pytestmark = pytest.mark.qemu
ROOT = Path(__file__).resolve().parents[2]


def _tags(image: str) -> set[str]:
    out = subprocess.run(
        ["qemu-img", "snapshot", "-U", "-l", image], capture_output=True, text=True, check=True, timeout=60
    )
    return {
        line.split()[1].rsplit("-snapshot-", 1)[-1] for line in out.stdout.splitlines()[2:] if line.strip()
    }


def _wait_for_the_api(cli: Cli) -> None:
    deadline = time.monotonic() + 30
    while not (cli.run_dir / "evesnap.sock").exists():
        assert time.monotonic() < deadline, "the agent never served its API"
        time.sleep(0.05)


@pytest.fixture
def device(tmp_path: Path) -> Iterator[tuple[Cli, Path, Path]]:
    cli = Cli(tmp_path)
    config, reports = tmp_path / "device-config.json", tmp_path / "reports.json"
    config.write_text(json.dumps(cli.config_data()))
    cli.start_agent(config, reports)  # as the systemd unit runs it
    try:
        cli.wait_reports(reports, lambda d: d["apps"][0]["state"] == "RUNNING")
        _wait_for_the_api(cli)
        yield cli, config, reports
    finally:
        cli.cleanup()


def test_the_cli_goes_through_the_agent_beside_a_controller_change(device: tuple[Cli, Path, Path]) -> None:
    cli, config, reports = device
    sock = cli.run_dir / "evesnap.sock"
    assert stat.S_IMODE(sock.stat().st_mode) == 0o600
    cli.guest_write(0x11)
    controller, local = str(uuid.uuid4()), str(uuid.uuid4())
    results: dict[str, Any] = {}

    def controller_change() -> None:
        config.write_text(json.dumps(cli.config_data(snapshots=[controller])))

    def local_snapshot() -> None:
        results["create"] = cli("snapshot", "create", APP, "--id", local, "--json")

    threads = [threading.Thread(target=controller_change), threading.Thread(target=local_snapshot)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    created = results["create"]
    assert created.returncode == 0 and "locked" not in created.stderr, created.stderr
    assert json.loads(created.stdout)["snapshot"] == local
    cli.wait_reports(reports, lambda d: controller in [s["id"] for s in d["apps"][0]["snapshots"]])
    listed = cli("snapshot", "list", APP, "--json")
    assert listed.returncode == 0, listed.stderr
    assert {n["id"] for n in json.loads(listed.stdout)} == {controller, local}
    assert _tags(cli.location()) == {controller, local}  # the qcow2 table agrees with the report
    assert cli("snapshot", "describe", APP, local).returncode == 0
    renamed = cli("snapshot", "rename", APP, local, "before")
    assert renamed.returncode == 0 and "is now named 'before'" in renamed.stdout
    status = cli.status()
    assert status["apps"][0]["state"] == "RUNNING"  # the agent's runtime, not a second one's view
    cli.guest_write(0x22)
    rolled = cli("snapshot", "rollback", APP, local)
    assert rolled.returncode == 0, rolled.stderr
    assert cli.data() == bytes([0x11]) * MIB  # the bytes of the snapshot
    deleted = cli("snapshot", "delete", APP, local)
    assert deleted.returncode == 0 and f"deleted {local}" in deleted.stdout
    assert _tags(cli.location()) == {controller}
    # same errors and exit codes as without an agent
    unknown = cli("snapshot", "describe", APP, str(uuid.uuid4()))
    assert unknown.returncode == 2 and unknown.stderr.startswith("evesnap: error:")
    assert cli("status", "nope").returncode == 2
    # stdin reaches the agent's command
    applied = cli("apply", "/dev/stdin", stdin=json.dumps(cli.config_data(snapshots=[controller])))
    assert applied.returncode == 0, applied.stderr


def test_resources_operations_and_events(device: tuple[Cli, Path, Path]) -> None:
    cli, _, _ = device
    os.environ["EVESNAP_RUNTIME_DIR"] = str(cli.run_dir)
    try:
        api = agent_http.Client(cli.run_dir / "evesnap.sock")
        status, info = api.request("GET", "/v1/agent")
        assert status == 200 and Path(info["persist"]) == (cli.root / "persist").resolve()
        status, apps = api.request("GET", "/v1/apps")
        assert status == 200 and apps[0]["AppID"] == APP and apps[0]["state"] == "RUNNING"
        status, op = api.request("POST", f"/v1/apps/{APP}/snapshots", {"name": "api"})
        assert status == 202 and op["state"] in ("queued", "running", "done")
        status, op = api.request("GET", f"/v1/operations/{op['id']}?wait=60")
        assert status == 200 and op["state"] == "done", op
        made = op["result"]["data"]["snapshot"]
        status, tree = api.request("GET", f"/v1/apps/{APP}/snapshots")
        assert status == 200 and [n["id"] for n in tree] == [made] and tree[0]["name"] == "api"
        assert made in _tags(cli.location())
        status, described = api.request("GET", f"/v1/apps/{APP}/snapshots/{made}")
        assert status == 200 and described
        status, body = api.request("GET", f"/v1/apps/{APP}/snapshots/{uuid.uuid4()}")
        assert status in (400, 404) and "detail" in body
        status, _ = api.request("GET", "/v1/operations/nope")
        assert status == 404
        status, op = api.request("DELETE", f"/v1/apps/{APP}/snapshots/{made}")
        assert status == 202
        status, op = api.request("GET", f"/v1/operations/{op['id']}?wait=60")
        assert op["state"] == "done" and _tags(cli.location()) == set()
        status, _ = api.request("POST", "/v1/operations", {"argv": ["agent"], "cwd": "/"})
        assert status == 400
        api.close()
        # the event stream has the operations and the app's state
        events = agent_http.Client(cli.run_dir / "evesnap.sock", timeout=10)
        events.conn.request("GET", "/v1/events?after=0")
        response = events.conn.getresponse()
        kinds = set()
        while len(kinds) < 2:
            line = response.readline()
            if line.strip():
                kinds.add(json.loads(line)["kind"])
        events.close()
        assert kinds == {"operation", "app"}
        # and `evesnap monitor` shows them to a person
        monitor = subprocess.Popen(
            [EVESNAP, "monitor", "--after", "0"], env=cli.env, stdout=subprocess.PIPE, text=True
        )
        try:
            assert monitor.stdout is not None
            first = monitor.stdout.readline()
            assert " operation " in first or " app " in first, first
        finally:
            monitor.kill()
            monitor.wait()
    finally:
        del os.environ["EVESNAP_RUNTIME_DIR"]


def test_the_openapi_document_in_docs_is_the_servers() -> None:
    kept = (ROOT / "docs" / "api" / "openapi.json").read_text()
    assert kept == openapi_text(), "regenerate: python -m evesnap_core.api.openapi > docs/api/openapi.json"


def test_the_launcher_finds_the_folders_as_settings_do(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for env in ({}, {"EVESNAP_PERSIST": str(tmp_path / "p"), "EVESNAP_RUNTIME_DIR": str(tmp_path / "r")}):
        for name in ("EVESNAP_PERSIST", "EVESNAP_RUNTIME_DIR"):
            monkeypatch.delenv(name, raising=False)
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        assert launch.persist_dir([]) == default_persist_dir()
        assert launch.runtime_dir() == default_runtime_dir()
    assert launch.persist_dir(["--persist", "/x", "status"]) == Path("/x")
    assert launch._command(["-v", "--persist", "/x", "snapshot", "list"]) == "snapshot"
    assert launch._command(["status", "--help"]) is None


def test_open_clones_and_a_policy_run_of_the_running_app_go_through_the_agent(
    device: tuple[Cli, Path, Path],
) -> None:
    """The rest of the local operations, through the API on the app the agent runs:
    a read-only open (the app restarts while it is open), clones of volumes and of
    the app, and a policy run; none is refused as 'locked', the bytes agree."""
    cli, config, reports = device
    cli.guest_write(0x33)
    snap = json.loads(cli("snapshot", "create", APP, "--json").stdout)["snapshot"]
    cli.guest_write(0x44)
    opened = cli("snapshot", "open", APP, snap, "--json")
    assert opened.returncode == 0 and "locked" not in opened.stderr, opened.stderr
    [export] = json.loads(opened.stdout)
    from evesnap_core.testing.conformance.harness import qemu_io_read

    assert qemu_io_read(export["uri"], "raw", 0, MIB) == bytes([0x33]) * MIB
    config.write_text(json.dumps(cli.config_data(activate=False)))  # the controller stops the app ...
    cli.wait_reports(reports, lambda d: d["apps"][0]["state"] != "RUNNING")
    config.write_text(json.dumps(cli.config_data()))  # ... and starts it again, the export open
    cli.wait_reports(reports, lambda d: d["apps"][0]["state"] == "RUNNING")
    assert cli("snapshot", "close", APP, snap).returncode == 0
    volumes = cli("clone", "volumes", APP, snap, "--json")
    assert volumes.returncode == 0, volumes.stderr
    assert qemu_io_read(json.loads(volumes.stdout)[0]["location"], "qcow2", 0, MIB) == bytes([0x33]) * MIB
    app = cli("clone", "app", APP, snap, "--name", "copy", "--no-start", "--json")
    assert app.returncode == 0, app.stderr
    policy = cli.root / "policy.toml"
    policy.write_text('[default]\nschedules = { hourly = "0 * * * *" }\n[default.retention]\nhourly = 2\n')
    ran = cli("policy", "run", str(policy), "--now", "2026-12-01T00:05:00Z", "--json")
    assert ran.returncode == 0 and "locked" not in ran.stderr, ran.stderr
    made = json.loads(ran.stdout)["execution"]["apps"]
    assert any(a.get("created") for a in made), made
    assert cli.data() == bytes([0x44]) * MIB, "the running app's bytes changed"


APP2 = "6ba7b820-9dad-41d1-80b4-00c04fd430c8"


@pytest.fixture
def two_apps(tmp_path: Path) -> Iterator[tuple[Cli, Path, Path]]:
    """A device of two running QEMU apps (shop, cafe), one qcow2 volume each, its agent started."""
    cli = Cli(tmp_path, volumes=(VOL,))
    config, reports = tmp_path / "device-config.json", tmp_path / "reports.json"
    config.write_text(json.dumps(_two_apps_config(cli)))
    cli.start_agent(config, reports, extra=("--resync", "0.5"))  # resyncs due all the time
    try:
        cli.wait_reports(reports, lambda d: [a["state"] for a in d["apps"]] == ["RUNNING", "RUNNING"])
        _wait_for_the_api(cli)
        yield cli, config, reports
    finally:
        cli.cleanup()


def _two_apps_config(cli: Cli, snapshots: list[str] | None = None) -> dict[str, Any]:
    data = cli.config_data(snapshots=snapshots)
    second = json.loads(json.dumps(data["apps"][0]))
    second["uuidandversion"]["uuid"], second["displayname"] = APP2, "cafe"
    second["volumeRefList"] = [{"uuid": VOL2}]
    second["snapshot"]["snapshots"] = []  # the controller's snapshots are the first app's
    data["apps"].append(second)
    data["volumes"].append({**data["volumes"][0], "uuid": VOL2})
    return data


def test_apps_requests_run_side_by_side_and_one_apps_in_order(two_apps: tuple[Cli, Path, Path]) -> None:
    """Inside the agent, requests are serialized per app, not per device: while a
    snapshot of one app waits for its volume (the test holds the volume's lock,
    as a long operation on it would), a snapshot of another app is taken at once;
    a second request for the waiting app queues behind the first and both are
    taken, in order, once the volume is free; nothing is refused. The agent's
    periodic resync (every 0.5 s here) waits for a quiet moment instead of
    queueing every app behind the busy one."""
    import fcntl

    cli = two_apps[0]
    first, then, other = (str(uuid.uuid4()) for _ in range(3))
    results: dict[str, subprocess.CompletedProcess[str]] = {}
    finished: list[str] = []

    def create(app: str, snap: str) -> None:
        results[snap] = cli("snapshot", "create", app, "--id", snap, "--json")
        finished.append(snap)

    busy, free = cli.location(VOL), cli.location(VOL2)  # before: `status` holds the whole device
    lock_file = Path(busy + ".lock")
    fd = os.open(lock_file, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # the first app's volume is busy
        waiting = [threading.Thread(target=create, args=(APP, first))]
        waiting[0].start()
        time.sleep(1.5)  # the first request waits in the agent for the volume; a resync is due
        waiting.append(threading.Thread(target=create, args=(APP, then)))
        waiting[1].start()
        time.sleep(0.5)
        create("cafe", other)  # another app: not behind the busy one
        assert results[other].returncode == 0, results[other].stderr
        assert finished == [other], "a request of another app waited for the busy app"
        assert _tags(free) == {other}
        assert _tags(busy) == set()
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
    for t in waiting:
        t.join(timeout=120)
    assert finished == [other, first, then], finished  # one app's requests in the order they came
    for snap in (first, then):
        assert results[snap].returncode == 0 and "locked" not in results[snap].stderr, results[snap].stderr
    assert _tags(busy) == {first, then}
    listed = cli("snapshot", "list", APP, "--json")
    assert {n["id"] for n in json.loads(listed.stdout)} == {first, then}


def test_many_requests_of_two_apps_at_once_beside_a_config_change(
    two_apps: tuple[Cli, Path, Path], tmp_path: Path
) -> None:
    """Sixteen clients at once on two apps (creates, deletes, renames, lists)
    while the controller adds a snapshot to the first: every request answers, none
    is refused, and afterwards the records, the reports, the qcow2 tables and a
    restarted agent's view all agree, with no intent left in the journal."""
    cli, config, reports = two_apps
    volume_of = {APP: cli.location(VOL), APP2: cli.location(VOL2)}
    kept: dict[str, list[str]] = {APP: [], APP2: []}
    failures: list[str] = []

    def client(app: str, n: int) -> None:
        mine = [str(uuid.uuid4()) for _ in range(3)]
        for snap in mine:
            done = cli("snapshot", "create", app, "--id", snap, "--json")
            if done.returncode != 0:
                failures.append(f"create {app} {snap}: {done.stderr}")
        renamed = cli("snapshot", "rename", app, mine[0], f"client-{n}")
        dropped = cli("snapshot", "delete", app, mine[1])
        listed = cli("snapshot", "list", app, "--json")
        for what, done in (("rename", renamed), ("delete", dropped), ("list", listed)):
            if done.returncode != 0:
                failures.append(f"{what} {app}: {done.stderr}")
        kept[app] += [mine[0], mine[2]]

    controller = {APP: str(uuid.uuid4())}  # the controller's, on the first app
    threads = [threading.Thread(target=client, args=(app, n)) for n in range(8) for app in (APP, APP2)]
    for t in threads:
        t.start()
    config.write_text(json.dumps(_two_apps_config(cli, snapshots=[controller[APP]])))
    for t in threads:
        t.join(timeout=600)
    assert not failures, failures
    cli.wait_reports(reports, lambda d: controller[APP] in [s["id"] for s in d["apps"][0]["snapshots"]])
    for app in (APP, APP2):
        listed = {n["id"] for n in json.loads(cli("snapshot", "list", app, "--json").stdout)}
        tags = _tags(volume_of[app])
        assert listed == tags, (app, listed ^ tags)
        assert listed == set(kept[app]) | ({controller[APP]} if app == APP else set()), app
    journal = tmp_path / "persist" / "evesnap" / "journal"
    assert journal.is_dir() and not list(journal.glob("*.json")), "an intent was left"
    before = {a["AppID"]: sorted(s["id"] for s in a["snapshots"]) for a in cli.status()["apps"]}
    assert cli.stop_agent() == 143
    cli.start_agent(config, reports)
    cli.wait_reports(reports, lambda d: [a["state"] for a in d["apps"]] == ["RUNNING", "RUNNING"])
    after = {a["AppID"]: sorted(s["id"] for s in a["snapshots"]) for a in cli.status()["apps"]}
    assert after == before
