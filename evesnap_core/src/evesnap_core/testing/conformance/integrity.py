"""The conformance cases that catch what loses users' data or leaks (csi-sanity's
level): nothing left behind, state found again by a new process, ids a naive
sanitiser would merge, NoSpace on a full filesystem, typed errors exact, bytes
across the whole volume against every snapshot, parents after a middle delete,
independence after rollback and of clones, every idempotent call repeated, and
live capabilities run for real.

Every assertion says what was expected and what happened. Collected through
``from evesnap_core.testing.conformance.suite import *``. Long on purpose: one
module holds the cases and the small byte model (Image) they share, so a
backend author reads every data-loss case in one place.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Iterator
from functools import partial
from typing import TypeVar

import pytest

from evesnap_core.backend import Backend
from evesnap_core.errors import (
    AlreadyExists,
    BackendBug,
    EvesnapError,
    NoSpace,
    SnapshotNotFound,
    VolumeNotFound,
)
from evesnap_core.handler_types import Capability, ContentSource, SnapshotInfo, VolumeHandle
from evesnap_core.testing.conformance.harness import MIB, Harness, first_difference
from evesnap_core.testing.conformance.requirements import requires
from evesnap_core.toolkit.names import MAX_SNAPSHOT_ID

__all__ = [
    "TestConcurrency",
    "TestIdempotentRepeats",
    "TestIndependence",
    "TestLeftovers",
    "TestLiveDelete",
    "TestMergedIds",
    "TestNewProcess",
    "TestNoSpace",
    "TestParents",
    "TestTypedErrors",
    "TestWholeVolume",
]

E = TypeVar("E", bound=EvesnapError)
BLOCK = 64 * 1024


def need(backend: Backend, *capabilities: Capability) -> None:
    if not any(backend.has(c) for c in capabilities):
        pytest.skip("not declared: " + " or ".join(c.value for c in capabilities))


def can_roll_back(backend: Backend) -> bool:
    return any(backend.has(c) for c in Capability.rollback())


def expect(error: type[E], call: Callable[[], object], what: str) -> E:
    """`call` must raise exactly the typed `error`: a BackendBug (an untyped
    exception the core wrapped) or another typed error fails the case."""
    try:
        call()
    except BackendBug as bug:
        pytest.fail(f"{what}: expected {error.__name__}, the backend raised an untyped error: {bug}")
    except error as raised:
        return raised
    except EvesnapError as other:
        pytest.fail(f"{what}: expected {error.__name__}, got {type(other).__name__}: {other}")
    pytest.fail(f"{what}: expected {error.__name__}, the call succeeded")


def ids(infos: list[SnapshotInfo]) -> list[str]:
    return [i.snapshot_id for i in infos]


class Image:
    """What the volume must hold, byte for byte, kept beside it: every write
    goes to the volume (through the harness) and here."""

    def __init__(self, harness: Harness, volume: VolumeHandle) -> None:
        self.harness = harness
        self.volume = volume
        self.size = harness.volume_size
        self.data = bytearray(self.size)

    def write(self, offset: int, data: bytes) -> None:
        self.harness.write(self.volume, offset, data)
        self.data[offset : offset + len(data)] = data

    def state(self, seed: int) -> bytes:
        """A state touching the whole volume: the start, across the first 4 MiB
        boundary, the middle, the last block, an all-zero region written over
        data; holes stay where nothing was ever written."""
        size = self.size
        value = (seed * 37) % 251 + 1
        self.write(0, bytes([value]) * BLOCK)
        self.write(4 * MIB - BLOCK // 2, bytes([value ^ 0x55]) * BLOCK)  # across the 4 MiB line
        self.write(size // 2 + BLOCK, bytes([value ^ 0x0F]) * BLOCK)
        zero_at = 5 * MIB if size > 6 * MIB else size // 2 + 3 * BLOCK
        self.write(zero_at, bytes([value ^ 0x33]) * BLOCK)
        if seed % 2:  # odd states zero that region again: an all-zero region over data
            self.write(zero_at, b"\0" * BLOCK)
        self.write(size - BLOCK, bytes([value ^ 0xAA]) * BLOCK)  # the last block
        return bytes(self.data)

    def check(self, expected: bytes, what: str, volume: VolumeHandle | None = None) -> None:
        actual = self.harness.read(volume or self.volume, 0, len(expected))
        assert actual == expected, (
            f"{what}: expected the whole volume ({len(expected)} bytes) to match, "
            f"{first_difference(actual, expected)}"
        )

    def reset_to(self, expected: bytes) -> None:
        self.data[:] = expected


def rollback(backend: Backend, volume: VolumeHandle, snapshot_id: str) -> None:
    """Roll back; a rollback_latest backend is allowed to destroy newer ones."""
    backend.rollback(volume, snapshot_id, destroy_newer=not backend.has(Capability.ROLLBACK_ANY))


@contextlib.contextmanager
def fresh_volume(harness: Harness, backend: Backend) -> Iterator[VolumeHandle]:
    volume = harness.new_volume(backend)
    try:
        yield volume
    finally:
        with contextlib.suppress(EvesnapError):
            for info in reversed(backend.list_snapshots(volume)):
                backend.delete_snapshot(volume, info.snapshot_id)
        with contextlib.suppress(EvesnapError):
            backend.destroy_volume(volume)


def assert_nothing_left(harness: Harness, before: set[str], what: str) -> None:
    left = sorted(harness.backend_files() - before)
    assert not left, f"{what}: expected no files left under the backend's folders, found {left}"
    procs = harness.backend_processes()
    assert not procs, f"{what}: expected no process of the backend left running, found {procs}"
    sockets = sorted(p.name for p in harness.runtime_dir.iterdir())
    assert not sockets, f"{what}: expected the runtime folder empty, found {sockets}"


# ================================================================ leftovers


@pytest.mark.capability("snapshot")
@requires("leftovers_visible")
class TestLeftovers:
    def test_nothing_left_after_deleting_snapshots_and_destroying(
        self, harness: Harness, snapshots: Backend
    ) -> None:
        before = harness.backend_files()
        volume = harness.new_volume(snapshots)
        image = Image(harness, volume)
        image.state(1)
        with_volume = harness.backend_files()
        snapshots.snapshot(volume, "s1")
        image.state(2)
        snapshots.snapshot(volume, "s2")
        if snapshots.has(Capability.CLONE):
            clone = snapshots.clone(volume, "s1", harness.volume_spec())
            snapshots.destroy_volume(clone)
        if snapshots.has(Capability.READ_ONLY):
            export = snapshots.open_snapshot(volume, "s2", str(harness.runtime_dir))
            snapshots.close_snapshot(volume, export)
            assert not harness.backend_processes(), (
                f"expected close_snapshot to end what open_snapshot started: {harness.backend_processes()}"
            )
        if can_roll_back(snapshots):
            rollback(snapshots, volume, "s2")
        for sid in ("s2", "s1"):
            snapshots.delete_snapshot(volume, sid)
        held = {p: n for p, n in harness.backend_file_sizes().items() if p not in with_volume and n > BLOCK}
        assert not held, f"expected deleted snapshots' data freed, files appeared and still hold data: {held}"
        snapshots.destroy_volume(volume)
        assert_nothing_left(harness, before, "after deleting every snapshot and destroying the volume")

    def test_destroy_with_snapshots_does_what_the_hookspec_says(
        self, harness: Harness, snapshots: Backend
    ) -> None:
        """Snapshots survive destroy_volume exactly when snapshot_space is
        full_copy (they are whole, independent copies, freed only by
        delete_snapshot); otherwise destroy removes them with the volume."""
        before = harness.backend_files()
        volume = harness.new_volume(snapshots)
        image = Image(harness, volume)
        kept = image.state(3)
        snapshots.snapshot(volume, "s1")
        snapshots.destroy_volume(volume)
        if snapshots.info.snapshot_space == "full_copy":
            listed = ids(snapshots.list_snapshots(volume))
            assert listed == ["s1"], f"full_copy: expected s1 to survive destroy_volume, listed {listed}"
            if can_roll_back(snapshots):
                rollback(snapshots, volume, "s1")
                image.check(kept, "full_copy: a rollback after destroy_volume brings the volume back")
                snapshots.destroy_volume(volume)
            snapshots.delete_snapshot(volume, "s1")
        else:
            try:
                listed = ids(snapshots.list_snapshots(volume))
            except VolumeNotFound:
                listed = []
            assert listed == [], f"copy_on_write: expected destroy_volume to remove s1 too, listed {listed}"
        assert_nothing_left(harness, before, "after destroy_volume of a volume with a snapshot")

    def test_failed_operations_leave_nothing(self, harness: Harness, snapshots: Backend) -> None:
        volume = harness.new_volume(snapshots)
        before = harness.backend_files()
        failures: list[Callable[[], object]] = [lambda: snapshots.delete_snapshot(volume, "never-taken")]
        if snapshots.has(Capability.CLONE):
            failures.append(lambda: snapshots.clone(volume, "never-taken", harness.volume_spec()))
        if can_roll_back(snapshots):
            failures.append(lambda: snapshots.rollback(volume, "never-taken"))
        if snapshots.has(Capability.READ_ONLY):
            failures.append(lambda: snapshots.open_snapshot(volume, "never-taken", str(harness.runtime_dir)))
        for call in failures:
            with contextlib.suppress(SnapshotNotFound):
                call()
        assert harness.backend_files() == before, (
            f"expected failed calls to leave nothing, found {sorted(harness.backend_files() - before)}"
        )
        snapshots.destroy_volume(volume)
        gone = harness.new_volume(snapshots)
        snapshots.destroy_volume(gone)
        before = harness.backend_files()
        expect(
            VolumeNotFound,
            lambda: snapshots.snapshot(gone, "on-a-destroyed-volume"),
            "snapshot of a gone volume",
        )
        assert_nothing_left(harness, before, "after a snapshot of a destroyed volume failed")


# ================================================================ typed errors


@pytest.mark.capability("snapshot")
class TestTypedErrors:
    def test_a_missing_volume_is_volume_not_found(self, harness: Harness, snapshots: Backend) -> None:
        gone = harness.new_volume(snapshots)
        snapshots.destroy_volume(gone)
        expect(VolumeNotFound, lambda: snapshots.volume_details(gone), "volume_details of a destroyed volume")
        expect(VolumeNotFound, lambda: snapshots.snapshot(gone, "s"), "snapshot of a destroyed volume")
        snapshots.delete_snapshot(gone, "s")  # deleting from a gone volume: nothing to delete, success
        snapshots.destroy_volume(gone)

    def test_unknown_snapshots_are_snapshot_not_found(
        self, harness: Harness, snapshots: Backend, volume: VolumeHandle
    ) -> None:
        snapshots.snapshot(volume, "known")
        if can_roll_back(snapshots):
            expect(
                SnapshotNotFound, lambda: snapshots.rollback(volume, "unknown"), "rollback to an unknown id"
            )
            try:
                check = snapshots.rollback_check(volume, "unknown")
            except BackendBug as bug:
                pytest.fail(f"rollback_check of an unknown id: expected SnapshotNotFound, got {bug}")
            except SnapshotNotFound:
                pass
            else:
                assert not check.possible, f"rollback_check said an unknown snapshot can be restored: {check}"
        if snapshots.has(Capability.CLONE):
            expect(
                SnapshotNotFound, lambda: snapshots.clone(volume, "unknown", harness.volume_spec()), "clone"
            )
        if snapshots.has(Capability.READ_ONLY):
            expect(
                SnapshotNotFound,
                lambda: snapshots.open_snapshot(volume, "unknown", str(harness.runtime_dir)),
                "open_snapshot of an unknown id",
            )


# ================================================================ state and names


@pytest.mark.capability("snapshot")
@requires("state_outlives_process")
class TestNewProcess:
    def test_a_new_process_finds_the_snapshots_and_parents(
        self, harness: Harness, snapshots: Backend, volume: VolumeHandle
    ) -> None:
        image = Image(harness, volume)
        image.state(5)
        snapshots.snapshot(volume, "s1")
        image.state(6)
        snapshots.snapshot(volume, "s2")
        here = [(i.snapshot_id, i.parent) for i in snapshots.list_snapshots(volume)]
        there = harness.listing_in_new_process(volume)
        assert there == here, f"expected a new process to list {here}, it listed {there}"


MERGED_IDS = ["a/b", "a_b", "a b", "a:b", "a\\b", "A/B", "a%2Fb", "a.b"]
"""Ids a sanitiser that replaces or lowercases characters would send to one name."""


@pytest.mark.capability("snapshot")
class TestMergedIds:
    def test_ids_a_naive_sanitiser_merges_stay_apart(
        self, harness: Harness, snapshots: Backend, volume: VolumeHandle
    ) -> None:
        image = Image(harness, volume)
        states = {}
        for n, sid in enumerate(MERGED_IDS):
            states[sid] = image.state(10 + n)
            info = snapshots.snapshot(volume, sid)
            assert info.snapshot_id == sid, f"expected the snapshot's id {sid!r}, got {info.snapshot_id!r}"
        listed = ids(snapshots.list_snapshots(volume))
        assert sorted(listed) == sorted(MERGED_IDS), f"expected {len(MERGED_IDS)} snapshots, listed {listed}"
        if snapshots.has(Capability.ROLLBACK_ANY):
            for sid in (MERGED_IDS[0], MERGED_IDS[1], MERGED_IDS[-1]):
                rollback(snapshots, volume, sid)
                image.check(states[sid], f"after rollback to {sid!r}")
        snapshots.delete_snapshot(volume, "a/b")
        left = ids(snapshots.list_snapshots(volume))
        assert sorted(left) == sorted(MERGED_IDS[1:]), f"deleting 'a/b' expected only it gone, listed {left}"

    def test_the_longest_id(self, snapshots: Backend, volume: VolumeHandle) -> None:
        for longest in ("x" * MAX_SNAPSHOT_ID, "名" * MAX_SNAPSHOT_ID, "x" * (MAX_SNAPSHOT_ID - 1) + "y"):
            info = snapshots.snapshot(volume, longest)
            assert info.snapshot_id == longest, "the longest id came back changed"
        listed = ids(snapshots.list_snapshots(volume))
        assert len(listed) == 3 and set(listed) == {
            "x" * MAX_SNAPSHOT_ID,
            "名" * MAX_SNAPSHOT_ID,
            "x" * (MAX_SNAPSHOT_ID - 1) + "y",
        }, f"expected three distinct {MAX_SNAPSHOT_ID}-character ids, listed {[i[:12] for i in listed]}"


# ================================================================ bytes


@pytest.mark.capability("rollback")
class TestWholeVolume:
    def test_every_snapshot_holds_its_whole_volume(
        self, harness: Harness, snapshots: Backend, volume: VolumeHandle
    ) -> None:
        need(snapshots, *Capability.rollback())
        image = Image(harness, volume)
        states = []
        for n in range(3):
            states.append(image.state(21 + n))
            snapshots.snapshot(volume, f"s{n + 1}")
        order = [2, 0, 1] if snapshots.has(Capability.ROLLBACK_ANY) else [2, 1, 0]
        for n in order:
            image.state(40 + n)  # change everything, then come back
            rollback(snapshots, volume, f"s{n + 1}")
            image.reset_to(states[n])
            image.check(states[n], f"after rollback to s{n + 1}")

    def test_exports_show_every_snapshot_whole(
        self, harness: Harness, snapshots: Backend, volume: VolumeHandle
    ) -> None:
        need(snapshots, Capability.READ_ONLY)
        image = Image(harness, volume)
        first = image.state(31)
        snapshots.snapshot(volume, "s1")
        second = image.state(32)
        snapshots.snapshot(volume, "s2")
        image.state(33)
        for sid, expected in (("s1", first), ("s2", second)):
            export = snapshots.open_snapshot(volume, sid, str(harness.runtime_dir))
            try:
                seen = harness.read_export(export, 0, len(expected))
            finally:
                snapshots.close_snapshot(volume, export)
            assert seen == expected, (
                f"export of {sid}: expected its whole volume, {first_difference(seen, expected)}"
            )


@pytest.mark.capability("rollback")
class TestIndependence:
    def test_a_snapshot_after_rollback_is_independent(
        self, harness: Harness, snapshots: Backend, volume: VolumeHandle
    ) -> None:
        need(snapshots, *Capability.rollback())
        image = Image(harness, volume)
        a = image.state(51)
        snapshots.snapshot(volume, "s1")
        image.state(52)
        snapshots.snapshot(volume, "s2")
        rollback(snapshots, volume, "s1")
        image.reset_to(a)
        c = image.state(53)  # written after the rollback: must not reach s1
        snapshots.snapshot(volume, "s3")
        image.state(54)  # written after s3: must reach neither
        rollback(snapshots, volume, "s3")
        image.reset_to(c)
        image.check(c, "s3 (taken after a rollback to s1) after later writes")
        if snapshots.has(Capability.ROLLBACK_ANY):
            rollback(snapshots, volume, "s1")
            image.reset_to(a)
            image.check(a, "s1 after writes made once the volume was rolled back to it")

    def test_a_clone_is_independent_of_its_source_and_its_snapshot(
        self, harness: Harness, snapshots: Backend, volume: VolumeHandle
    ) -> None:
        need(snapshots, Capability.CLONE)
        image = Image(harness, volume)
        base = image.state(61)
        snapshots.snapshot(volume, "base")
        clone = snapshots.clone(volume, "base", harness.volume_spec())
        try:
            cloned = Image(harness, clone)
            cloned.reset_to(base)
            cloned.check(base, "a new clone")
            after_clone = cloned.state(62)  # writes into the clone ...
            image.check(base, "the source after writing the clone")
            if can_roll_back(snapshots):
                image.state(63)
                rollback(snapshots, volume, "base")
                image.reset_to(base)
                image.check(base, "the snapshot a clone was made from, after writing the clone")
            image.state(64)  # ... and into the source
            cloned.check(after_clone, "the clone after writing its source")
            with contextlib.suppress(EvesnapError):
                snapshots.delete_snapshot(volume, "base")  # SnapshotInUse is allowed
            cloned.check(after_clone, "the clone after deleting (or trying to delete) its snapshot")
        finally:
            snapshots.destroy_volume(clone)


@pytest.mark.capability("snapshot")
class TestParents:
    def test_parents_after_deleting_a_middle_snapshot(
        self, harness: Harness, snapshots: Backend, volume: VolumeHandle
    ) -> None:
        image = Image(harness, volume)
        for n in (1, 2, 3):
            image.state(70 + n)
            snapshots.snapshot(volume, f"s{n}")
        snapshots.delete_snapshot(volume, "s2")
        listing = snapshots.list_snapshots(volume)
        parents = {i.snapshot_id: i.parent for i in listing}
        assert list(parents) == ["s1", "s3"], f"expected s1, s3 left, listed {list(parents)}"
        dangling = {sid: p for sid, p in parents.items() if p is not None and p not in parents}
        assert not dangling, f"expected no parent naming a deleted snapshot, found {dangling}"
        if any(p is not None for p in parents.values()):
            assert parents == {"s1": None, "s3": "s1"}, f"expected s3's parent to become s1, got {parents}"


# ================================================================ idempotence


@pytest.mark.capability("snapshot")
class TestIdempotentRepeats:
    def test_every_idempotent_call_repeated(self, harness: Harness, snapshots: Backend) -> None:
        spec = harness.volume_spec()
        volume = snapshots.create_volume(spec) if snapshots.has(Capability.CREATE_VOLUME) else None
        if volume is None:
            pytest.skip("not declared: create_volume")
        assert snapshots.create_volume(spec) == volume, "expected the same create twice to return one volume"
        first = snapshots.snapshot(volume, "s1")
        again = snapshots.snapshot(volume, "s1")
        assert (again.snapshot_id, again.name) == (first.snapshot_id, first.name), f"{first} then {again}"
        if can_roll_back(snapshots):
            for _ in range(2):
                rollback(snapshots, volume, "s1")
        if snapshots.has(Capability.READ_ONLY):
            export = snapshots.open_snapshot(volume, "s1", str(harness.runtime_dir))
            for _ in range(2):
                snapshots.close_snapshot(volume, export)
        for _ in range(2):
            snapshots.delete_snapshot(volume, "s1")
        assert ids(snapshots.list_snapshots(volume)) == []
        for _ in range(2):
            snapshots.destroy_volume(volume)
        snapshots.delete_snapshot(volume, "s1")  # on a destroyed volume: nothing to delete

    def test_a_repeated_clone_into_the_same_target_is_already_exists(
        self, harness: Harness, snapshots: Backend, volume: VolumeHandle
    ) -> None:
        """The hook specification: the core clones into a new uuid every time; a
        target that exists is refused with AlreadyExists and left as it was."""
        need(snapshots, Capability.CLONE)
        image = Image(harness, volume)
        base = image.state(81)
        snapshots.snapshot(volume, "base")
        target = harness.volume_spec()
        clone = snapshots.clone(volume, "base", target)
        try:
            cloned = Image(harness, clone)
            cloned.reset_to(base)
            written = cloned.state(82)
            expect(AlreadyExists, lambda: snapshots.clone(volume, "base", target), "a second identical clone")
            cloned.check(written, "the existing clone after a refused second clone")
        finally:
            snapshots.destroy_volume(clone)


# ================================================================ space


@pytest.mark.capability("populate_volume")
class TestNoSpace:
    def test_populate_on_a_full_filesystem_is_no_space_and_clean(
        self, harness: Harness, backend: Backend
    ) -> None:
        need(backend, Capability.POPULATE_VOLUME)
        with harness.on_small_filesystem() as small:
            if small is None:
                pytest.skip("this harness cannot hand the backend a small filesystem")
            loaded = small.load()
            before = small.backend_files()
            free = small.free_bytes()
            content = harness.workdir / "too-big.raw"
            with open(content, "wb") as f:
                for _ in range(free // MIB + 8):
                    f.write(os.urandom(MIB))
            spec = small.volume_spec(size=content.stat().st_size)
            raised = expect(
                NoSpace,
                lambda: loaded.populate_volume(spec, ContentSource(path=content, format="raw")),
                f"populate of {content.stat().st_size} bytes with {free} free",
            )
            assert raised.needed > raised.available and raised.where, f"NoSpace fields: {raised!r}"
            assert_nothing_left(small, before, "after a populate refused for space")


# ================================================================ live


@pytest.mark.capability("live_delete")
@requires("volumes_attach_to_qemu")
class TestLiveDelete:
    def test_live_delete_removes_the_snapshot_while_held(self, harness: Harness, snapshots: Backend) -> None:
        need(snapshots, Capability.LIVE_DELETE)
        with fresh_volume(harness, snapshots) as volume:
            image = Image(harness, volume)
            kept = image.state(91)
            snapshots.snapshot(volume, "keep")
            snapshots.snapshot(volume, "drop")
            with harness.attached([volume]) as (live,):
                snapshots.delete_snapshot(live, "drop")
                listed = ids(snapshots.list_snapshots(live))
                assert listed == ["keep"], f"expected only 'keep' after a live delete, listed {listed}"
                snapshots.delete_snapshot(live, "drop")  # idempotent while held too
            if can_roll_back(snapshots):
                image.state(92)
                rollback(snapshots, volume, "keep")
                image.reset_to(kept)
                image.check(kept, "the snapshot kept through a live delete")


# ================================================================ concurrency


def at_once(calls: list[Callable[[], object]]) -> list[str]:
    """Run `calls` in threads released together; what each raised, one line each."""
    start = threading.Barrier(len(calls))
    errors: list[str] = []

    def run(call: Callable[[], object]) -> None:
        start.wait()
        try:
            call()
        except Exception as exc:  # collected: every thread's failure is named
            errors.append(f"{type(exc).__name__}: {exc}")

    threads = [threading.Thread(target=run, args=(c,)) for c in calls]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=600)
    return errors


@pytest.mark.capability("snapshot")
class TestConcurrency:
    """The hookspecs' concurrency rule: the core calls hooks of different volumes
    at the same time from threads of one process (the agent runs different apps'
    requests side by side), and two requests may race on one volume (the backend
    serialises them; neither fails nor is lost)."""

    def test_hooks_of_different_volumes_at_once(self, harness: Harness, snapshots: Backend) -> None:
        volumes = [harness.new_volume(snapshots) for _ in range(3)]
        try:
            images = [Image(harness, v) for v in volumes]
            states = [image.state(71 + i) for i, image in enumerate(images)]

            def cycle(volume: VolumeHandle) -> None:
                snapshots.snapshot(volume, "first")
                snapshots.snapshot(volume, "second")
                snapshots.list_snapshots(volume)
                snapshots.delete_snapshot(volume, "first")

            errors = at_once([partial(cycle, v) for v in volumes])
            assert not errors, f"hooks of different volumes at once failed: {errors}"
            for n, (volume, image) in enumerate(zip(volumes, images, strict=True)):
                assert ids(snapshots.list_snapshots(volume)) == ["second"], f"volume {n}'s snapshots"
                image.check(states[n], f"volume {n} after its snapshots were taken beside the others'")
            if can_roll_back(snapshots):
                for n, image in enumerate(images):
                    image.state(81 + n)
                errors = at_once([partial(rollback, snapshots, v, "second") for v in volumes])
                assert not errors, f"rollbacks of different volumes at once failed: {errors}"
                for n, image in enumerate(images):
                    image.reset_to(states[n])
                    image.check(states[n], f"volume {n} rolled back beside the others")
        finally:
            for volume in volumes:
                with contextlib.suppress(EvesnapError):
                    for info in reversed(snapshots.list_snapshots(volume)):
                        snapshots.delete_snapshot(volume, info.snapshot_id)
                with contextlib.suppress(EvesnapError):
                    snapshots.destroy_volume(volume)

    def test_two_requests_racing_on_one_volume(self, harness: Harness, snapshots: Backend) -> None:
        with fresh_volume(harness, snapshots) as volume:
            image = Image(harness, volume)
            state = image.state(91)
            names = [f"race-{n}" for n in range(4)]
            errors = at_once([partial(snapshots.snapshot, volume, s) for s in names])
            assert not errors, f"snapshots racing on one volume failed: {errors}"
            taken = ids(snapshots.list_snapshots(volume))
            assert sorted(taken) == names, f"expected each racing snapshot once, found {taken}"
            image.check(state, "the volume after racing snapshots")
            errors = at_once([partial(snapshots.delete_snapshot, volume, s) for s in names[:3]])
            assert not errors, f"deletes racing on one volume failed: {errors}"
            assert ids(snapshots.list_snapshots(volume)) == names[3:], "after racing deletes"
            image.check(state, "the volume after racing deletes")
