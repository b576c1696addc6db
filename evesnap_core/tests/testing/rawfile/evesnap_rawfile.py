"""A backend written from docs/plugin-author-guide.md, as a third party would:
raw files, a snapshot is a full copy, exports through a read-only qemu-nbd.

It is installed for the tests as a distribution of its own (a dist-info with
entry points, on PYTHONPATH), so `evesnap conformance rawfile` and the pytest
plugin load it exactly as they load any backend. ``EVESNAP_RAWFILE_MUTANT=NAME``
(the option ``mutant``) makes the factory build one of the one-bug copies at
the end instead: each loses data or leaks in one way the suite must catch.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import subprocess
import time
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from evesnap_core import (
    AlreadyExists,
    BackendContext,
    BackendInfo,
    Capability,
    ContentSource,
    ReadOnlyExport,
    RollbackCheck,
    RollbackResult,
    SnapshotInfo,
    SnapshotNotFound,
    VolumeDetails,
    VolumeHandle,
    VolumeNotFound,
    VolumeSpec,
    hookimpl,
    toolkit,
)
from evesnap_core.testing.conformance import Harness
from evesnap_core.toolkit import serialised

NAME = "rawfile"
CHUNK = 1 << 20


class RawFileBackend:
    """``<persist>/rawfile/<uuid>.<gen>/volume.raw``, ``snapshots/<safe>.raw`` and
    ``state.json`` (the snapshots' records and the head)."""

    capabilities = frozenset(
        {
            Capability.CREATE_VOLUME,
            Capability.POPULATE_VOLUME,
            Capability.SNAPSHOT,
            Capability.ROLLBACK_ANY,
            Capability.CLONE,
            Capability.READ_ONLY,
        }
    )

    def __init__(self, context: BackendContext) -> None:
        self.root = context.persist_dir / NAME
        toolkit.sweep(self.root)

    # ------------------------------------------------------------ plumbing

    def folder(self, volume: VolumeHandle | VolumeSpec) -> Path:
        return self.root / f"{volume.uuid}.{volume.generation}"

    def image(self, volume: VolumeHandle | VolumeSpec) -> Path:
        return self.folder(volume) / "volume.raw"

    def snapshot_file(self, volume: VolumeHandle, snapshot_id: str) -> Path:
        return self.folder(volume) / "snapshots" / f"{self.safe(snapshot_id)}.raw"

    def safe(self, snapshot_id: str) -> str:
        return toolkit.safe_name(snapshot_id)

    def lock_volume(self, volume: VolumeHandle | VolumeSpec) -> AbstractContextManager[None]:
        folder = self.folder(volume)
        return toolkit.volume_lock(
            self.root / f"{folder.name}.lock", volume.key, gone=lambda: not folder.exists()
        )

    def handle(self, spec: VolumeSpec) -> VolumeHandle:
        return VolumeHandle(
            uuid=spec.uuid,
            generation=spec.generation,
            backend=NAME,
            format="raw",
            location=str(self.image(spec)),
        )

    def require(self, volume: VolumeHandle) -> Path:
        image = self.image(volume)
        if not image.exists():
            raise VolumeNotFound(volume.key, f"{image} does not exist")
        return image

    def load_state(self, volume: VolumeHandle) -> dict[str, Any]:
        try:
            return dict(json.loads((self.folder(volume) / "state.json").read_text()))
        except FileNotFoundError:
            return {"head": None, "snapshots": []}

    def save_state(self, volume: VolumeHandle, state: dict[str, Any]) -> None:
        toolkit.atomic_write(self.folder(volume) / "state.json", json.dumps(state).encode())

    def info(self, volume: VolumeHandle, record: dict[str, Any]) -> SnapshotInfo:
        return SnapshotInfo(
            snapshot_id=record["id"],
            name=self.safe(record["id"]),
            volume=volume.uuid,
            generation=volume.generation,
            created=datetime.fromisoformat(record["created"]),
            parent=record["parent"],
        )

    def require_folder(self, volume: VolumeHandle) -> None:
        """The volume, or what is left of it: full copies outlive destroy_volume."""
        if not self.folder(volume).exists():
            raise VolumeNotFound(volume.key, f"{self.folder(volume)} does not exist")

    def find(self, volume: VolumeHandle, snapshot_id: str) -> dict[str, Any]:
        self.require_folder(volume)
        record = next((r for r in self.load_state(volume)["snapshots"] if r["id"] == snapshot_id), None)
        if record is None:
            raise SnapshotNotFound(snapshot_id, volume.key)
        return record

    def copy(self, src: Path, dst: Path) -> None:
        """A whole copy through a temporary beside `dst`, published whole."""
        with toolkit.temp_file(dst) as tmp:
            toolkit.copy_file(src, tmp)
            toolkit.publish(tmp, dst)

    def copy_back(self, src: Path, dst: Path) -> None:
        self.copy(src, dst)

    # ------------------------------------------------------------ hooks

    @hookimpl
    def evesnap_backend_info(self) -> BackendInfo:
        return BackendInfo(
            name=NAME,
            plugin_api_version=1,
            capabilities=self.capabilities,
            formats=("raw",),
            snapshot_space="full_copy",
        )

    @hookimpl
    def evesnap_claim_volume(self, volume: VolumeSpec) -> bool | None:
        return None  # only when asked for by name

    @hookimpl
    @serialised
    def evesnap_create_volume(self, volume: VolumeSpec) -> VolumeHandle:
        image = self.image(volume)
        if image.exists():
            if image.stat().st_size != volume.size_bytes:
                raise AlreadyExists(f"volume {volume.key} exists with another size")
            return self.handle(volume)
        toolkit.ensure_dir(image.parent / "snapshots")
        with toolkit.temp_file(image) as tmp:
            with open(tmp, "xb") as f:
                f.truncate(volume.size_bytes)
            toolkit.publish(tmp, image)
        return self.handle(volume)

    @hookimpl
    @serialised
    def evesnap_populate_volume(self, volume: VolumeSpec, source: ContentSource) -> VolumeHandle:
        image = self.image(volume)
        if image.exists():
            return self.handle(volume)
        folder_existed = image.parent.exists()
        toolkit.ensure_dir(image.parent / "snapshots")
        try:
            self.populate(source, image, volume.size_bytes)
        except BaseException:
            if not folder_existed:
                shutil.rmtree(image.parent, ignore_errors=True)
            raise
        return self.handle(volume)

    def populate(self, source: ContentSource, image: Path, size: int) -> None:
        toolkit.populate_raw(source, image, size)

    @hookimpl
    @serialised
    def evesnap_destroy_volume(self, volume: VolumeHandle) -> None:
        """The volume's own file; its snapshots are whole copies and stay until
        deleted (snapshot_space full_copy, as the hook specification says)."""
        folder = self.folder(volume)
        if not folder.exists():
            return
        toolkit.durable_unlink(self.image(volume))
        self.prune(volume)

    def prune(self, volume: VolumeHandle) -> None:
        """Remove the folder once neither the volume nor a snapshot is left."""
        if not self.image(volume).exists() and not self.load_state(volume)["snapshots"]:
            for export in self.load_state(volume).get("exports", []):
                _stop(export["pid"], Path(export["socket"]))
            self.remove_folder(self.folder(volume))

    def remove_folder(self, folder: Path) -> None:
        with toolkit.temp_file(folder) as doomed:
            folder.rename(doomed)

    @hookimpl
    def evesnap_volume_details(self, volume: VolumeHandle) -> VolumeDetails:
        image = self.require(volume)
        stat = image.stat()
        return VolumeDetails(
            handle=volume, format="raw", virtual_size=stat.st_size, actual_size=stat.st_blocks * 512
        )

    @hookimpl
    @serialised
    def evesnap_snapshot_volume(self, volume: VolumeHandle, snapshot_id: str) -> SnapshotInfo:
        image = self.require(volume)
        state = self.load_state(volume)
        existing = next((r for r in state["snapshots"] if r["id"] == snapshot_id), None)
        if existing is not None:
            return self.info(volume, existing)
        self.copy(image, self.snapshot_file(volume, snapshot_id))
        record = {"id": snapshot_id, "parent": state["head"], "created": datetime.now(UTC).isoformat()}
        state["snapshots"].append(record)
        state["head"] = snapshot_id
        self.save_state(volume, state)
        return self.info(volume, record)

    @hookimpl
    def evesnap_list_snapshots(self, volume: VolumeHandle) -> list[SnapshotInfo]:
        self.require_folder(volume)
        return [self.info(volume, r) for r in self.load_state(volume)["snapshots"]]

    @hookimpl
    def evesnap_rollback_check(self, volume: VolumeHandle, snapshot_id: str) -> RollbackCheck:
        self.find(volume, snapshot_id)
        return RollbackCheck(possible=True)

    @hookimpl
    @serialised
    def evesnap_rollback(self, volume: VolumeHandle, snapshot_id: str) -> RollbackResult:
        self.find(volume, snapshot_id)
        self.copy_back(self.snapshot_file(volume, snapshot_id), self.image(volume))
        state = self.load_state(volume)
        state["head"] = snapshot_id
        self.save_state(volume, state)
        return RollbackResult(snapshot_id=snapshot_id)

    @hookimpl
    @serialised
    def evesnap_delete_snapshot(self, volume: VolumeHandle, snapshot_id: str) -> None:
        if not self.folder(volume).exists():
            return
        state = self.load_state(volume)
        if not any(r["id"] == snapshot_id for r in state["snapshots"]):
            return
        parents, head = toolkit.after_delete(
            {r["id"]: r["parent"] for r in state["snapshots"]}, state["head"], snapshot_id
        )
        state["snapshots"] = [
            dict(r, parent=parents[r["id"]]) for r in state["snapshots"] if r["id"] in parents
        ]
        state["head"] = head
        self.save_state(volume, state)
        self.drop_snapshot_file(self.snapshot_file(volume, snapshot_id))
        self.prune(volume)

    def drop_snapshot_file(self, path: Path) -> None:
        toolkit.durable_unlink(path)

    @hookimpl
    def evesnap_clone_snapshot(
        self, volume: VolumeHandle, snapshot_id: str, target: VolumeSpec
    ) -> VolumeHandle:
        with self.lock_volume(volume):
            self.find(volume, snapshot_id)
            with self.lock_volume(target):
                image = self.image(target)
                if image.exists():
                    raise AlreadyExists(f"volume {target.key} exists")
                toolkit.ensure_dir(image.parent / "snapshots")
                try:
                    self.clone_file(self.snapshot_file(volume, snapshot_id), image)
                except BaseException:
                    shutil.rmtree(image.parent, ignore_errors=True)
                    raise
        return self.handle(target)

    def clone_file(self, src: Path, dst: Path) -> None:
        self.copy(src, dst)

    @hookimpl
    @serialised
    def evesnap_open_snapshot(
        self, volume: VolumeHandle, snapshot_id: str, runtime_dir: str
    ) -> ReadOnlyExport:
        self.find(volume, snapshot_id)
        sock = Path(runtime_dir) / f"rawfile-{hashlib.sha256(snapshot_id.encode()).hexdigest()[:12]}.sock"
        argv = ["qemu-nbd", "--read-only", "--persistent", "--shared=4", "-f", "raw", "-k", str(sock)]
        proc = subprocess.Popen(
            [*argv, str(self.snapshot_file(volume, snapshot_id))],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + 10
        while not sock.exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        state = self.load_state(volume)
        state.setdefault("exports", []).append({"id": sock.name, "pid": proc.pid, "socket": str(sock)})
        self.save_state(volume, state)
        return ReadOnlyExport(export_id=sock.name, kind="nbd", path=sock, uri=f"nbd+unix:///?socket={sock}")

    @hookimpl
    def evesnap_close_snapshot(self, volume: VolumeHandle, export: ReadOnlyExport) -> None:
        if not self.folder(volume).exists():
            return
        with self.lock_volume(volume):
            state = self.load_state(volume)
            mine = [e for e in state.get("exports", []) if e["id"] == export.export_id]
            for record in mine:
                self.stop_export(record)
            state["exports"] = [e for e in state.get("exports", []) if e["id"] != export.export_id]
            self.save_state(volume, state)

    def stop_export(self, record: dict[str, Any]) -> None:
        _stop(record["pid"], Path(record["socket"]))


def _stop(pid: int, sock: Path) -> None:
    """SIGTERM, a bounded wait, then SIGKILL: the server never outlives close."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, sig)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                if os.waitpid(pid, os.WNOHANG)[0] == pid:
                    break
            except ChildProcessError:  # not our child (another process started it)
                if not Path(f"/proc/{pid}").exists():
                    break
            time.sleep(0.02)
        else:
            continue
        break
    with contextlib.suppress(FileNotFoundError):
        sock.unlink()


# ================================================================ the one-bug copies


class DeleteLeavesCopy(RawFileBackend):
    def drop_snapshot_file(self, path: Path) -> None:
        pass  # the snapshot's copy stays on disk


class DestroyLeavesTrash(RawFileBackend):
    def remove_folder(self, folder: Path) -> None:
        folder.rename(folder.with_name(folder.name + ".trash"))  # the data, kept "for later"


class CopiesLeaveTmp(RawFileBackend):
    def copy(self, src: Path, dst: Path) -> None:
        tmp = dst.with_name(dst.name + ".tmp")
        shutil.copyfile(src, tmp)
        shutil.copyfile(tmp, dst)  # ... and the .tmp stays


class CloseLeavesNbd(RawFileBackend):
    def stop_export(self, record: dict[str, Any]) -> None:
        pass  # qemu-nbd and its socket keep running


_MEMORY: dict[str, dict[str, Any]] = {}


class StateInModuleDict(RawFileBackend):
    def load_state(self, volume: VolumeHandle) -> dict[str, Any]:
        return _MEMORY.setdefault(volume.key, {"head": None, "snapshots": []})

    def save_state(self, volume: VolumeHandle, state: dict[str, Any]) -> None:
        _MEMORY[volume.key] = state


class NaiveNames(RawFileBackend):
    def safe(self, snapshot_id: str) -> str:
        return "".join(c if c.isalnum() or c == "-" else "_" for c in snapshot_id)[:200] or "_"


class RollbackSkipsZeroChunks(RawFileBackend):
    def copy_back(self, src: Path, dst: Path) -> None:
        with open(src, "rb") as fin, open(dst, "r+b") as fout:
            offset = 0
            while chunk := fin.read(CHUNK):
                if offset < 4 << 20 or chunk.count(0) != len(chunk):  # "zeros are holes anyway"
                    fout.seek(offset)
                    fout.write(chunk)
                offset += len(chunk)


class NoSpaceCheck(RawFileBackend):
    def populate(self, source: ContentSource, image: Path, size: int) -> None:
        shutil.copyfile(source.path, image)  # no check: ENOSPC half way, the partial file left
        os.truncate(image, max(size, image.stat().st_size))


class DanglingParent(RawFileBackend):
    @hookimpl
    @serialised
    def evesnap_delete_snapshot(self, volume: VolumeHandle, snapshot_id: str) -> None:
        if not self.folder(volume).exists():
            return
        state = self.load_state(volume)
        state["snapshots"] = [r for r in state["snapshots"] if r["id"] != snapshot_id]  # children keep it
        self.save_state(volume, state)
        toolkit.durable_unlink(self.snapshot_file(volume, snapshot_id))


class CheckSaysYes(RawFileBackend):
    @hookimpl
    def evesnap_rollback_check(self, volume: VolumeHandle, snapshot_id: str) -> RollbackCheck:
        return RollbackCheck(possible=True)


class RollbackShares(RawFileBackend):
    def copy_back(self, src: Path, dst: Path) -> None:
        dst.unlink()
        os.link(src, dst)  # instant: the volume IS the snapshot's copy now


class CloneHardLinks(RawFileBackend):
    def clone_file(self, src: Path, dst: Path) -> None:
        os.link(src, dst)


class LiveDeclaredNotImplemented(RawFileBackend):
    capabilities = RawFileBackend.capabilities | {Capability.LIVE_SNAPSHOT, Capability.LIVE_DELETE}

    @hookimpl
    @serialised
    def evesnap_snapshot_volume(self, volume: VolumeHandle, snapshot_id: str) -> SnapshotInfo:
        if volume.attachment is not None:
            raise NotImplementedError("live snapshots: later")
        return RawFileBackend.evesnap_snapshot_volume.__wrapped__(self, volume, snapshot_id)  # type: ignore[attr-defined,no-any-return]

    @hookimpl
    @serialised
    def evesnap_delete_snapshot(self, volume: VolumeHandle, snapshot_id: str) -> None:
        if volume.attachment is not None:
            raise NotImplementedError("live deletes: later")
        RawFileBackend.evesnap_delete_snapshot.__wrapped__(self, volume, snapshot_id)  # type: ignore[attr-defined]


class MissingVolumeUntyped(RawFileBackend):
    def require(self, volume: VolumeHandle) -> Path:
        image = self.image(volume)
        image.stat()  # FileNotFoundError, not VolumeNotFound
        return image


MUTANTS: dict[str, type[RawFileBackend]] = {
    "delete-leaves-copy": DeleteLeavesCopy,
    "destroy-leaves-trash": DestroyLeavesTrash,
    "copies-leave-tmp": CopiesLeaveTmp,
    "close-leaves-nbd": CloseLeavesNbd,
    "state-in-module-dict": StateInModuleDict,
    "naive-names": NaiveNames,
    "rollback-skips-zero-chunks": RollbackSkipsZeroChunks,
    "no-space-check": NoSpaceCheck,
    "dangling-parent": DanglingParent,
    "check-says-yes": CheckSaysYes,
    "rollback-shares": RollbackShares,
    "clone-hard-links": CloneHardLinks,
    "live-not-implemented": LiveDeclaredNotImplemented,
    "missing-volume-untyped": MissingVolumeUntyped,
}
"""Each bug class of issue #17's first bullet, one mutant each."""


def make(context: BackendContext) -> RawFileBackend:
    """The entry point's factory: the honest backend, or the mutant the option names."""
    name = context.option("mutant")
    if not name:
        return RawFileBackend(context)
    if name not in MUTANTS:
        raise ValueError(f"unknown mutant {name!r}: one of {', '.join(MUTANTS)}")
    return MUTANTS[name](context)


class RawFileHarness(Harness):
    """Bytes with plain file I/O, never through the backend."""

    backend_name = NAME
    volume_format = "raw"

    def write(self, volume: VolumeHandle, offset: int, data: bytes) -> None:
        with open(volume.location, "r+b") as f:
            f.seek(offset)
            f.write(data)
            f.flush()
            os.fsync(f.fileno())

    def read(self, volume: VolumeHandle, offset: int, length: int) -> bytes:
        with open(volume.location, "rb") as f:
            f.seek(offset)
            return f.read(length)
