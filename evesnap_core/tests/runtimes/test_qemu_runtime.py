"""The QEMU runtime with real qemu-system processes (no guest OS)."""

from __future__ import annotations

import subprocess
import uuid
from pathlib import Path

import pytest
from qemu.qmp.legacy import QEMUMonitorProtocol

from evesnap_core.errors import ConfigError, GuestAgentTimeout
from evesnap_core.handler_types import VolumeHandle
from evesnap_core.qemu.guest_agent import GuestAgent
from evesnap_core.runtime_hookspecs import AppSpec
from evesnap_core.runtimes.qemu import QemuRuntime
from evesnap_core.runtimes.runtime import Runtime

pytestmark = pytest.mark.qemu


def image(path: Path, fmt: str = "qcow2") -> VolumeHandle:
    subprocess.run(["qemu-img", "create", "-q", "-f", fmt, str(path), "4M"], check=True)
    return VolumeHandle(uuid=uuid.uuid4(), generation=0, backend="qcow2", format=fmt, location=str(path))


@pytest.fixture
def runtime(tmp_path: Path):  # type: ignore[no-untyped-def]
    plugin = QemuRuntime(tmp_path / "persist")
    rt = Runtime(plugin)
    yield rt
    for app in rt.running_apps():
        rt.stop(app, timeout=5)


def test_start_attach_and_stop(tmp_path: Path, runtime: Runtime) -> None:
    # a comma in a path must not break QEMU's option parsing
    volumes = (image(tmp_path / "boot,disk.qcow2"), image(tmp_path / "data.raw", "raw"))
    app = AppSpec(uuid=uuid.uuid4(), name="vm", version="1", volumes=volumes)
    runtime.start(app)
    runtime.start(app)  # idempotent
    assert runtime.state(app.uuid) == "running"
    assert runtime.running_apps() == [app.uuid]
    attachments = runtime.attachments(app.uuid)
    assert [attachments[v.key].node_name for v in volumes] == ["vol0", "vol1"]
    qmp = QEMUMonitorProtocol(str(attachments[volumes[0].key].qmp_socket))
    qmp.connect()
    try:
        assert qmp.cmd("query-status")["status"] == "running"  # type: ignore[index]
        nodes = {n["node-name"] for n in qmp.cmd("query-named-block-nodes")}  # type: ignore[union-attr]
        assert {"vol0", "vol1"} <= nodes
    finally:
        qmp.close()
    # a running VM holds its images: offline tools are locked out
    locked = subprocess.run(
        ["qemu-img", "snapshot", "-c", "x", str(volumes[0].location)], capture_output=True, text=True
    )
    assert locked.returncode != 0 and "lock" in locked.stderr
    assert runtime.stop(app.uuid, timeout=10)
    assert runtime.state(app.uuid) == "stopped" and runtime.attachments(app.uuid) == {}
    assert runtime.stop(app.uuid, timeout=1)  # idempotent


def test_start_failure_names_the_app(tmp_path: Path, runtime: Runtime) -> None:
    missing = VolumeHandle(
        uuid=uuid.uuid4(),
        generation=0,
        backend="qcow2",
        format="qcow2",
        location=str(tmp_path / "missing.qcow2"),
    )
    app = AppSpec(uuid=uuid.uuid4(), name="broken", version="1", volumes=(missing,))
    from evesnap_core.errors import AppRuntimeError

    with pytest.raises(AppRuntimeError, match=r"\(broken\) failed to start"):
        runtime.start(app)
    assert runtime.state(app.uuid) == "stopped"


def _qemus(app: uuid.UUID) -> list[int]:
    from evesnap_core.process import cmdline, pids

    return [p for p in pids() if f"evesnap-{app}" in cmdline(p)]


def test_a_lost_vm_is_adopted_not_doubled(tmp_path: Path, runtime: Runtime) -> None:
    """evesnap killed after QEMU launched but before started.json: the next start
    finds the VM by its name and pid file path and adopts it."""
    volumes = (image(tmp_path / "a.qcow2"),)
    app = AppSpec(uuid=uuid.uuid4(), name="vm", version="1", volumes=volumes)
    runtime.start(app)
    [pid] = _qemus(app.uuid)
    folder = tmp_path / "persist" / "run" / "apps" / str(app.uuid)
    (folder / "started.json").unlink()  # as if killed before it was written
    (folder / "qemu.pid").unlink()  # and the pid file gone too: found by its command line
    assert runtime.state(app.uuid) == "stopped"
    runtime.start(app)
    assert _qemus(app.uuid) == [pid]
    assert runtime.state(app.uuid) == "running"
    assert runtime.attachments(app.uuid)[volumes[0].key].qmp_socket.exists()
    assert runtime.stop(app.uuid, timeout=10)
    assert _qemus(app.uuid) == []


def test_a_lost_vm_with_other_volumes_is_stopped_first(tmp_path: Path, runtime: Runtime) -> None:
    first = AppSpec(uuid=uuid.uuid4(), name="vm", version="1", volumes=(image(tmp_path / "a.qcow2"),))
    runtime.start(first)
    [old] = _qemus(first.uuid)
    (tmp_path / "persist" / "run" / "apps" / str(first.uuid) / "started.json").unlink()
    second = first.model_copy(update={"volumes": (image(tmp_path / "b.qcow2"),)})
    runtime.start(second)
    [new] = _qemus(first.uuid)
    assert new != old
    assert runtime.stop(first.uuid, timeout=10)


def test_a_lost_vm_is_stopped_by_stop(tmp_path: Path, runtime: Runtime) -> None:
    app = AppSpec(uuid=uuid.uuid4(), name="vm", version="1", volumes=(image(tmp_path / "a.qcow2"),))
    runtime.start(app)
    (tmp_path / "persist" / "run" / "apps" / str(app.uuid) / "started.json").unlink()
    assert runtime.stop(app.uuid, timeout=10)
    assert _qemus(app.uuid) == []


def test_a_foreign_client_on_the_operators_monitor_never_blocks_evesnap(
    tmp_path: Path, runtime: Runtime
) -> None:
    from evesnap_core.qemu import QmpClient

    volumes = (image(tmp_path / "a.qcow2"),)
    app = AppSpec(uuid=uuid.uuid4(), name="vm", version="1", volumes=volumes)
    runtime.start(app)
    own = runtime.attachments(app.uuid)[volumes[0].key].qmp_socket
    operators = next(p for p in own.parent.parent.glob(f"*-{app.uuid}.qmp"))
    assert own != operators and (own.parent.stat().st_mode & 0o777) == 0o700
    held = QEMUMonitorProtocol(str(operators))
    held.connect()  # an operator's client, never let go
    try:
        with QmpClient(own) as qmp:
            assert qmp.command("query-status")["status"] == "running"
    finally:
        held.close()


def test_a_guest_agent_channel_when_the_local_setting_asks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The channel exists (a unix socket QEMU listens on, beside evesnap's own
    monitor); with no guest OS nobody answers on it, and the client says so in time."""
    setting = tmp_path / "guest.json"
    setting.write_text('{"guest_agent": true}')
    monkeypatch.setenv("EVESNAP_QEMU_GUEST", str(setting))
    rt = Runtime(QemuRuntime(tmp_path / "persist"))
    app = AppSpec(uuid=uuid.uuid4(), name="vm", version="1", volumes=(image(tmp_path / "d.qcow2"),))
    rt.start(app)
    try:
        sock = rt.guest_agent(app.uuid)
        assert sock is not None and sock.is_socket() and sock.name.endswith(".qga")
        assert (
            sock.parent == rt.attachments(app.uuid)[app.volumes[0].key].qmp_socket.parent
        )  # the 0700 folder
        with pytest.raises(GuestAgentTimeout):
            GuestAgent(sock, timeout=0.5).connect()
    finally:
        assert rt.stop(app.uuid, timeout=10)
    assert rt.guest_agent(app.uuid) is None


def test_a_bad_guest_setting_is_a_config_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    setting = tmp_path / "guest.json"
    setting.write_text('{"guest_agent": true, "kernal": "/boot/vmlinuz"}')
    monkeypatch.setenv("EVESNAP_QEMU_GUEST", str(setting))
    with pytest.raises(ConfigError, match="EVESNAP_QEMU_GUEST"):
        QemuRuntime(tmp_path / "persist")
