"""The QEMU runtime with real qemu-system processes (no guest OS)."""

from __future__ import annotations

import subprocess
import uuid
from pathlib import Path

import pytest
from qemu.qmp.legacy import QEMUMonitorProtocol

from evesnap_core.handler_types import VolumeHandle
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
