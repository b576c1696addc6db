"""The conformance cases every backend passes, driven by its declared capabilities.

Import them into a test module of your backend with
``from evesnap_core.testing.conformance.suite import *`` (see the plugin module
for the fixtures to provide). A case for a capability the backend does not
declare is skipped as "not declared"; `TestDeclaredCapabilities` then checks
that such a call raises NotSupported. A case needing something of the harness
(``@requires``, requirements.py) is skipped, naming it, when the harness's
``requirements`` does not provide it. Bytes are always checked through the
harness, never through the backend. Override a case by subclassing its class
in your module.

Longer than 400 lines on purpose: it is the one list of cases a backend author
imports with a star, one class per capability, read top to bottom.
"""

from __future__ import annotations

import contextlib
import uuid
from pathlib import Path

import pytest

from evesnap_core.backend import Backend
from evesnap_core.errors import (
    AlreadyExists,
    EvesnapError,
    FormatError,
    InvalidName,
    NotSupported,
    RollbackBlocked,
    SnapshotInUse,
    SnapshotNotFound,
)
from evesnap_core.handler_types import Capability, ContentSource, SnapshotInfo, VolumeHandle
from evesnap_core.process import run
from evesnap_core.testing.conformance.harness import MIB, Harness, first_difference, pattern
from evesnap_core.testing.conformance.integrity import *  # noqa: F403 (the cases, collected here)
from evesnap_core.testing.conformance.integrity import __all__ as _integrity_cases
from evesnap_core.testing.conformance.integrity import expect
from evesnap_core.testing.conformance.requirements import requires
from evesnap_core.testing.content_images import REFERENCE_KINDS, referencing_image

__all__ = [
    "TestBesideARunningVM",
    "TestClone",
    "TestDeclaredCapabilities",
    "TestDelete",
    "TestGroupSnapshot",
    "TestHostileNames",
    "TestIdempotentCreate",
    "TestListing",
    "TestLiveSnapshot",
    "TestPopulate",
    "TestReadOnlyAccess",
    "TestRollback",
    "TestRollbackCheck",
    "TestStateSurvivesRestart",
    "TestVolumes",
    *_integrity_cases,
]

REGION = MIB
"""Cases write whole regions of this size at the start of the volume."""


def need(backend: Backend, *capabilities: Capability) -> None:
    """Skip the case unless one of `capabilities` is declared."""
    if not any(backend.has(c) for c in capabilities):
        pytest.skip("not declared: " + " or ".join(c.value for c in capabilities))


def fill(harness: Harness, volume: VolumeHandle, seed: int, regions: int = 2) -> bytes:
    data = pattern(seed, REGION * regions)
    harness.write(volume, 0, data)
    return data


def assert_bytes(harness: Harness, volume: VolumeHandle, expected: bytes, what: str) -> None:
    actual = harness.read(volume, 0, len(expected))
    assert actual == expected, f"{what}: volume bytes are wrong, {first_difference(actual, expected)}"


def ids(infos: list[SnapshotInfo]) -> list[str]:
    return [i.snapshot_id for i in infos]


def rollback_to(backend: Backend, volume: VolumeHandle, snapshot_id: str) -> None:
    """Roll back as far as the backend allows without destroying anything."""
    backend.rollback(volume, snapshot_id, destroy_newer=False)


@pytest.mark.capability("create_volume")
class TestVolumes:
    def test_details_describe_the_new_volume(self, harness: Harness, backend: Backend) -> None:
        need(backend, Capability.CREATE_VOLUME)
        volume = harness.new_volume(backend)
        try:
            details = backend.volume_details(volume)
            assert details.virtual_size >= harness.volume_size, "virtual size smaller than asked"
            assert details.format in backend.info.formats, f"format {details.format!r} not declared"
            assert not details.corrupt, f"a new volume reports corruption: {details.problems}"
        finally:
            backend.destroy_volume(volume)

    def test_destroy_is_idempotent(self, harness: Harness, backend: Backend) -> None:
        need(backend, Capability.CREATE_VOLUME)
        volume = harness.new_volume(backend)
        backend.destroy_volume(volume)
        backend.destroy_volume(volume)


@pytest.mark.capability("populate_volume")
class TestPopulate:
    @pytest.mark.parametrize("fmt", ["raw", "qcow2"])
    def test_populate_holds_the_content(self, harness: Harness, backend: Backend, fmt: str) -> None:
        need(backend, Capability.POPULATE_VOLUME)
        content = pattern(80, 2 * REGION)
        raw = harness.workdir / "content.raw"
        raw.write_bytes(content)
        source = raw
        if fmt == "qcow2":
            source = harness.workdir / "content.qcow2"
            run(["qemu-img", "convert", "-f", "raw", "-O", "qcow2", str(raw), str(source)], timeout=120)
        volume = backend.populate_volume(harness.volume_spec(), ContentSource(path=source, format=fmt))
        try:
            assert_bytes(harness, volume, content, f"a volume populated from {fmt} content")
            details = backend.volume_details(volume)
            assert details.virtual_size >= harness.volume_size, "populated volume smaller than asked"
        finally:
            backend.destroy_volume(volume)

    @pytest.mark.parametrize("kind", REFERENCE_KINDS)
    def test_content_naming_another_file_is_refused(
        self, harness: Harness, backend: Backend, kind: str
    ) -> None:
        """A qcow2 content image with a backing or external data file would make
        qemu copy THAT host file into the volume: refused, typed, naming it."""
        need(backend, Capability.POPULATE_VOLUME)
        source, secret = referencing_image(harness.workdir / "hostile", kind)
        spec = harness.volume_spec()
        before = harness.backend_files()
        refused = expect(FormatError, lambda: backend.populate_volume(spec, source), f"populate ({kind})")
        assert str(secret) in str(refused), (
            f"expected the error to name the referenced file {secret}, got: {refused}"
        )
        assert harness.backend_files() == before, (
            f"a refused populate left files: {sorted(harness.backend_files() - before)}"
        )


@pytest.mark.capability("snapshot")
class TestRollback:
    def test_rollback_restores_exact_bytes(
        self, harness: Harness, snapshots: Backend, volume: VolumeHandle
    ) -> None:
        need(snapshots, *Capability.rollback())
        before = fill(harness, volume, seed=1)
        snapshots.snapshot(volume, "s1")
        harness.write(volume, REGION // 2, pattern(2, REGION))  # overwrite across regions
        harness.write(volume, 3 * REGION, pattern(3, REGION))  # and a region never written before
        rollback_to(snapshots, volume, "s1")
        assert_bytes(harness, volume, before, "after rollback to s1")
        tail = harness.read(volume, 3 * REGION, REGION)
        assert tail == b"\0" * REGION, "rollback left later writes behind a region never written before"

    def test_second_rollback_to_the_same_snapshot(
        self, harness: Harness, snapshots: Backend, volume: VolumeHandle
    ) -> None:
        need(snapshots, *Capability.rollback())
        before = fill(harness, volume, seed=4)
        snapshots.snapshot(volume, "s1")
        for round_ in range(2):
            harness.write(volume, 0, pattern(5 + round_, REGION))
            rollback_to(snapshots, volume, "s1")
            assert_bytes(harness, volume, before, f"after rollback number {round_ + 1}")

    def test_rollback_to_unknown_snapshot_is_not_found(
        self, snapshots: Backend, volume: VolumeHandle
    ) -> None:
        need(snapshots, *Capability.rollback())
        expect(SnapshotNotFound, lambda: snapshots.rollback(volume, "never-taken"), "rollback to unknown")

    def test_rollback_to_an_older_snapshot_keeps_newer_ones(
        self, harness: Harness, snapshots: Backend, volume: VolumeHandle
    ) -> None:
        need(snapshots, Capability.ROLLBACK_ANY)
        first = fill(harness, volume, seed=6)
        snapshots.snapshot(volume, "s1")
        second = fill(harness, volume, seed=7)
        snapshots.snapshot(volume, "s2")
        rollback_to(snapshots, volume, "s1")
        assert_bytes(harness, volume, first, "after rollback to the older s1")
        assert "s2" in ids(snapshots.list_snapshots(volume)), "rollback_any destroyed a newer snapshot"
        rollback_to(snapshots, volume, "s2")
        assert_bytes(harness, volume, second, "after rollback forward to s2")


@pytest.mark.capability("rollback")
class TestRollbackCheck:
    def test_check_names_blockers_and_changes_nothing(
        self, harness: Harness, snapshots: Backend, volume: VolumeHandle
    ) -> None:
        need(snapshots, *Capability.rollback())
        fill(harness, volume, seed=8)
        snapshots.snapshot(volume, "s1")
        fill(harness, volume, seed=9)
        snapshots.snapshot(volume, "s2")
        current = fill(harness, volume, seed=10)
        check = snapshots.rollback_check(volume, "s1")
        if snapshots.has(Capability.ROLLBACK_ANY):
            assert check.possible and not check.blockers, f"rollback_any backend reports {check}"
        else:
            assert list(check.blockers) == ["s2"], f"blockers should name s2, got {check.blockers}"
            assert not check.possible, "a rollback that destroys s2 reported as simply possible"
        assert ids(snapshots.list_snapshots(volume)) == ["s1", "s2"], "the check changed the listing"
        assert_bytes(harness, volume, current, "the check changed the volume")

    def test_rollback_never_destroys_newer_silently(
        self, harness: Harness, snapshots: Backend, volume: VolumeHandle
    ) -> None:
        need(snapshots, Capability.ROLLBACK_LATEST)
        if snapshots.has(Capability.ROLLBACK_ANY):
            pytest.skip("rollback_any: newer snapshots are kept")
        first = fill(harness, volume, seed=11)
        snapshots.snapshot(volume, "s1")
        fill(harness, volume, seed=12)
        snapshots.snapshot(volume, "s2")
        blocked = expect(RollbackBlocked, lambda: snapshots.rollback(volume, "s1"), "rollback past s2")
        assert blocked.blockers == ["s2"], f"expected the blockers ['s2'], got {blocked.blockers}"
        assert ids(snapshots.list_snapshots(volume)) == ["s1", "s2"]
        result = snapshots.rollback(volume, "s1", destroy_newer=True)
        assert list(result.destroyed) == ["s2"], f"destroyed snapshots not reported: {result}"
        assert ids(snapshots.list_snapshots(volume)) == ["s1"]
        assert_bytes(harness, volume, first, "after rollback with destroy_newer")


@pytest.mark.capability("snapshot")
class TestIdempotentCreate:
    def test_same_snapshot_twice_is_one_snapshot(self, snapshots: Backend, volume: VolumeHandle) -> None:
        one = snapshots.snapshot(volume, "twice")
        two = snapshots.snapshot(volume, "twice")
        assert one.name == two.name and one.snapshot_id == two.snapshot_id
        assert ids(snapshots.list_snapshots(volume)).count("twice") == 1

    def test_same_volume_created_twice_is_one_volume(self, harness: Harness, backend: Backend) -> None:
        need(backend, Capability.CREATE_VOLUME)
        spec = harness.volume_spec()
        first = backend.create_volume(spec)
        try:
            assert backend.create_volume(spec) == first
            bigger = spec.model_copy(update={"size_bytes": spec.size_bytes * 2})
            expect(AlreadyExists, lambda: backend.create_volume(bigger), "the same volume with another size")
        finally:
            backend.destroy_volume(first)

    def test_long_snapshot_id_works(self, snapshots: Backend, volume: VolumeHandle) -> None:
        long_id = "x" * 1000
        info = snapshots.snapshot(volume, long_id)
        assert info.snapshot_id == long_id
        assert long_id in ids(snapshots.list_snapshots(volume))
        snapshots.delete_snapshot(volume, long_id)


@pytest.mark.capability("snapshot")
class TestDelete:
    def test_delete_removes_and_is_idempotent(self, snapshots: Backend, volume: VolumeHandle) -> None:
        snapshots.snapshot(volume, "gone")
        snapshots.delete_snapshot(volume, "gone")
        assert "gone" not in ids(snapshots.list_snapshots(volume))
        snapshots.delete_snapshot(volume, "gone")
        snapshots.delete_snapshot(volume, "never-existed")

    def test_deleting_a_middle_snapshot_keeps_the_others(
        self, harness: Harness, snapshots: Backend, volume: VolumeHandle
    ) -> None:
        need(snapshots, Capability.ROLLBACK_ANY)
        fill(harness, volume, seed=13)
        snapshots.snapshot(volume, "s1")
        fill(harness, volume, seed=14)
        snapshots.snapshot(volume, "s2")
        third = fill(harness, volume, seed=15)
        snapshots.snapshot(volume, "s3")
        snapshots.delete_snapshot(volume, "s2")
        assert ids(snapshots.list_snapshots(volume)) == ["s1", "s3"]
        harness.write(volume, 0, pattern(16, REGION))
        rollback_to(snapshots, volume, "s3")
        assert_bytes(harness, volume, third, "s3 after deleting s2")


@pytest.mark.capability("snapshot")
class TestListing:
    def test_oldest_first_with_parents(
        self, harness: Harness, snapshots: Backend, volume: VolumeHandle
    ) -> None:
        for n in (1, 2, 3):
            fill(harness, volume, seed=20 + n, regions=1)
            snapshots.snapshot(volume, f"s{n}")
        listing = snapshots.list_snapshots(volume)
        assert ids(listing) == ["s1", "s2", "s3"], f"not oldest first: {ids(listing)}"
        parents = {i.snapshot_id: i.parent for i in listing}
        if any(p is not None for p in parents.values()):
            assert parents == {"s1": None, "s2": "s1", "s3": "s2"}, f"wrong parents: {parents}"
        for info in listing:
            assert info.volume == volume.uuid and info.generation == volume.generation

    def test_parent_follows_rollback(
        self, harness: Harness, snapshots: Backend, volume: VolumeHandle
    ) -> None:
        need(snapshots, Capability.ROLLBACK_ANY)
        snapshots.snapshot(volume, "s1")
        fill(harness, volume, seed=24, regions=1)
        snapshots.snapshot(volume, "s2")
        rollback_to(snapshots, volume, "s1")
        snapshots.snapshot(volume, "s3")
        parents = {i.snapshot_id: i.parent for i in snapshots.list_snapshots(volume)}
        if any(p is not None for p in parents.values()):
            assert parents["s3"] == "s1", f"s3 was taken after a rollback to s1, parents: {parents}"


@pytest.mark.capability("snapshot")
class TestStateSurvivesRestart:
    def test_new_backend_object_finds_snapshots(
        self, harness: Harness, snapshots: Backend, volume: VolumeHandle
    ) -> None:
        first = fill(harness, volume, seed=30)
        snapshots.snapshot(volume, "before-restart")
        harness.write(volume, 0, pattern(31, REGION))
        reborn = harness.load()
        assert ids(reborn.list_snapshots(volume)) == ["before-restart"]
        if reborn.has(Capability.ROLLBACK_ANY) or reborn.has(Capability.ROLLBACK_LATEST):
            reborn.rollback(volume, "before-restart")
            assert_bytes(harness, volume, first, "rollback by a re-created backend object")


@pytest.mark.capability("clone")
class TestClone:
    def test_clone_is_independent(self, harness: Harness, snapshots: Backend, volume: VolumeHandle) -> None:
        need(snapshots, Capability.CLONE)
        original = fill(harness, volume, seed=40)
        snapshots.snapshot(volume, "base")
        clone = snapshots.clone(volume, "base", harness.volume_spec())
        try:
            assert_bytes(harness, clone, original, "a new clone")
            harness.write(clone, 0, pattern(41, REGION))
            assert_bytes(harness, volume, original, "the source after writing the clone")
            harness.write(volume, REGION, pattern(42, REGION))
            assert harness.read(clone, REGION, REGION) == original[REGION:], "clone changed with its source"
            try:
                snapshots.delete_snapshot(volume, "base")
            except SnapshotInUse as in_use:
                assert in_use.users, "SnapshotInUse must name who uses the snapshot"
            else:  # declared safe: the clone keeps its data without the snapshot
                assert harness.read(clone, REGION, REGION) == original[REGION:]
        finally:
            snapshots.destroy_volume(clone)

    def test_clone_of_unknown_snapshot_is_not_found(
        self, harness: Harness, snapshots: Backend, volume: VolumeHandle
    ) -> None:
        need(snapshots, Capability.CLONE)
        target = harness.volume_spec()
        expect(SnapshotNotFound, lambda: snapshots.clone(volume, "never-taken", target), "clone of unknown")


@pytest.mark.capability("read_only")
class TestReadOnlyAccess:
    def test_export_matches_snapshot_and_refuses_writes(
        self, harness: Harness, snapshots: Backend, volume: VolumeHandle
    ) -> None:
        need(snapshots, Capability.READ_ONLY)
        original = fill(harness, volume, seed=50)
        snapshots.snapshot(volume, "ro")
        harness.write(volume, 0, pattern(51, REGION))  # the export must show the snapshot, not this
        export = snapshots.open_snapshot(volume, "ro", str(harness.runtime_dir))
        try:
            seen = harness.read_export(export, 0, len(original))
            assert seen == original, f"export differs from the snapshot: {first_difference(seen, original)}"
            with pytest.raises((OSError, EvesnapError)):
                harness.write_export(export, 0, b"\xff" * 4096)
            assert harness.read_export(export, 0, 4096) == original[:4096], "a write went through"
        finally:
            snapshots.close_snapshot(volume, export)
        snapshots.close_snapshot(volume, export)  # idempotent
        assert_bytes(harness, volume, pattern(51, REGION), "the volume after closing the export")


@pytest.mark.capability("snapshot")
class TestGroupSnapshot:
    def test_group_snapshot_and_rollback_of_two_volumes(self, harness: Harness, snapshots: Backend) -> None:
        need(snapshots, *Capability.rollback())
        a, b = harness.new_volume(snapshots), harness.new_volume(snapshots)
        try:
            data_a, data_b = fill(harness, a, seed=60), fill(harness, b, seed=61)
            infos = snapshots.snapshot_group([a, b], "g1")
            assert sorted(str(i.volume) for i in infos) == sorted([str(a.uuid), str(b.uuid)])
            harness.write(a, 0, pattern(62, REGION))
            harness.write(b, 0, pattern(63, REGION))
            for v in (a, b):
                rollback_to(snapshots, v, "g1")
            assert_bytes(harness, a, data_a, "volume a after group rollback")
            assert_bytes(harness, b, data_b, "volume b after group rollback")
        finally:
            for v in (a, b):
                snapshots.destroy_volume(v)

    def test_group_snapshot_is_all_or_nothing(self, harness: Harness, snapshots: Backend) -> None:
        healthy = harness.new_volume(snapshots)
        doomed = harness.new_volume(snapshots)
        snapshots.destroy_volume(doomed)  # the injected failure: this member is gone
        try:
            with pytest.raises(EvesnapError):
                snapshots.snapshot_group([healthy, doomed], "partial")
            assert "partial" not in ids(snapshots.list_snapshots(healthy)), (
                "a failed group snapshot left a snapshot behind on the healthy volume"
            )
        finally:
            snapshots.destroy_volume(healthy)


@pytest.mark.capability("live_snapshot")
@requires("volumes_attach_to_qemu")
class TestLiveSnapshot:
    def test_live_snapshot_of_two_volumes(self, harness: Harness, snapshots: Backend) -> None:
        need(snapshots, Capability.LIVE_SNAPSHOT)
        a, b = harness.new_volume(snapshots), harness.new_volume(snapshots)
        try:
            data_a, data_b = fill(harness, a, seed=70), fill(harness, b, seed=71)
            with harness.attached([a, b]) as live:
                snapshots.snapshot_group(live, "live")
                harness.write_attached(live[0], 0, pattern(72, REGION))
                harness.write_attached(live[1], 0, pattern(73, REGION))
            for v in (a, b):
                rollback_to(snapshots, v, "live")
            assert_bytes(harness, a, data_a, "volume a after rollback to a live snapshot")
            assert_bytes(harness, b, data_b, "volume b after rollback to a live snapshot")
        finally:
            for v in (a, b):
                snapshots.destroy_volume(v)


@pytest.mark.capability("live_snapshot")
@requires("volumes_attach_to_qemu")
class TestBesideARunningVM:
    """A running app's snapshots can be cloned and opened while its VM holds the
    volume (the handle carries the attachment), and an open export never keeps
    a VM from taking the volume."""

    def test_clone_of_a_held_volume(self, harness: Harness, snapshots: Backend, volume: VolumeHandle) -> None:
        need(snapshots, Capability.LIVE_SNAPSHOT)
        need(snapshots, Capability.CLONE)
        original = fill(harness, volume, seed=80)
        with harness.attached([volume]) as live:
            snapshots.snapshot_group(live, "held")
            harness.write_attached(live[0], 0, pattern(81, REGION))
            clone = snapshots.clone(live[0], "held", harness.volume_spec())
        try:
            assert_bytes(harness, clone, original, "a clone made while a VM held the source")
        finally:
            snapshots.destroy_volume(clone)

    def test_export_of_a_held_volume_and_a_vm_taking_an_exported_one(
        self, harness: Harness, snapshots: Backend, volume: VolumeHandle
    ) -> None:
        need(snapshots, Capability.LIVE_SNAPSHOT)
        need(snapshots, Capability.READ_ONLY)
        original = fill(harness, volume, seed=82)
        snapshots.snapshot(volume, "before")
        export = snapshots.open_snapshot(volume, "before", str(harness.runtime_dir))
        try:
            with harness.attached([volume]) as live:  # a VM starts while the export is open
                harness.write_attached(live[0], 0, pattern(83, REGION))
                seen = harness.read_export(export, 0, len(original))
                assert seen == original, f"the open export changed: {first_difference(seen, original)}"
                held = snapshots.open_snapshot(live[0], "before", str(harness.runtime_dir))
                try:
                    seen = harness.read_export(held, 0, len(original))
                    assert seen == original, (
                        f"an export opened beside the VM: {first_difference(seen, original)}"
                    )
                finally:
                    snapshots.close_snapshot(live[0], held)
        finally:
            snapshots.close_snapshot(volume, export)


HOSTILE_IDS = [
    "../../../evesnap-escape",
    "a/b\\c",
    "..",
    "$(touch {marker})",
    "; touch {marker}; #",
    "`touch {marker}`",
    "-rf",
    "--help",
    "123",
    "0",
    "snapshot name with spaces\tand\nnewlines",
    "ünïcödé-名前-🚀",
    "x" * 300,
    "'\"quotes\"'",
]


@pytest.mark.capability("snapshot")
class TestHostileNames:
    @pytest.mark.parametrize("raw", HOSTILE_IDS, ids=lambda r: repr(r[:20]))
    def test_hostile_id_is_handled_safely(
        self, harness: Harness, snapshots: Backend, volume: VolumeHandle, tmp_path: Path, raw: str
    ) -> None:
        marker = tmp_path / f"pwned-{uuid.uuid4().hex}"
        snapshot_id = raw.format(marker=marker)
        outside_before = {p.name for p in harness.workdir.parent.iterdir()}
        try:
            info = snapshots.snapshot(volume, snapshot_id)
        except InvalidName:
            return  # a clear, typed refusal is safe
        assert info.snapshot_id == snapshot_id
        assert snapshot_id in ids(snapshots.list_snapshots(volume))
        if snapshots.has(Capability.ROLLBACK_ANY) or snapshots.has(Capability.ROLLBACK_LATEST):
            snapshots.rollback(volume, snapshot_id)
        snapshots.delete_snapshot(volume, snapshot_id)
        assert snapshot_id not in ids(snapshots.list_snapshots(volume))
        assert not marker.exists(), "a snapshot id was run by a shell"
        assert {p.name for p in harness.workdir.parent.iterdir()} == outside_before, "files appeared outside"
        roots = {harness.workdir, harness.persist.parent}
        escaped = [
            p for root in roots for p in root.rglob("*evesnap-escape*") if harness.persist not in p.parents
        ]
        assert not escaped, f"a snapshot id became a path outside the persist folder: {escaped}"


UNDECLARED_CALLS = {
    Capability.CREATE_VOLUME: lambda b, h, v: b.create_volume(h.volume_spec()),
    Capability.CLONE: lambda b, h, v: b.clone(v, "s", h.volume_spec()),
    Capability.READ_ONLY: lambda b, h, v: b.open_snapshot(v, "s", str(h.runtime_dir)),
    Capability.SNAPSHOT: lambda b, h, v: b.snapshot(v, "s"),
}


class TestDeclaredCapabilities:
    @pytest.mark.parametrize("capability", list(UNDECLARED_CALLS), ids=lambda c: c.value)
    def test_undeclared_capability_raises_not_supported(
        self, harness: Harness, backend: Backend, capability: Capability
    ) -> None:
        if backend.has(capability):
            pytest.skip(f"declared: {capability.value} is exercised by its own cases")
        volume = None
        with contextlib.suppress(EvesnapError):
            volume = harness.new_volume(backend)
        handle = volume or VolumeHandle(
            uuid=uuid.uuid4(), generation=0, backend=backend.name, format="raw", location="/nonexistent"
        )
        try:
            with pytest.raises(NotSupported):
                UNDECLARED_CALLS[capability](backend, harness, handle)
        finally:
            if volume is not None:
                backend.destroy_volume(volume)

    def test_declared_capabilities_have_their_hooks(self, backend: Backend) -> None:
        from evesnap_core.backend import CAPABILITY_HOOKS

        plugin = backend.pm.get_plugin(backend.name)
        for capability in backend.info.capabilities:
            for hook in CAPABILITY_HOOKS[capability]:
                impls = getattr(backend.pm.hook, hook).get_hookimpls()
                assert any(i.plugin is plugin for i in impls), f"{capability.value} needs {hook}"
