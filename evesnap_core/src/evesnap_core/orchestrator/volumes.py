"""Volumes: create the generations a config names, destroy, release the unused.

Where the orchestrator's flow turns a config's volume (and the content it names,
through `content.ContentResolver`) into a backend's volume: the backend that
claims it creates or populates it, and the ledger records it (or records why
not). At the end of each reconcile, generations nothing uses any more (no
config, no snapshot, no clone) are destroyed.
"""

from __future__ import annotations

from evesnap_core.errors import ConfigError, EvesnapError
from evesnap_core.handler_types import Capability, VolumeSpec
from evesnap_core.model.config import AppInstanceConfig, Volume
from evesnap_core.orchestrator.ledger import volume_keys
from evesnap_core.orchestrator.wiring import Wiring
from evesnap_core.records import AppRecord, Problem, VolumeRecord


class Volumes:
    def __init__(self, wiring: Wiring) -> None:
        self.w = wiring

    def ensure_config_volume(self, volume: Volume) -> None:
        """A volume of the device config, at its current generation."""
        self.ensure(self.w.resolver.volume_spec(self.w.ledger.device, volume), volume)

    def ensure_app_volumes(self, config: AppInstanceConfig) -> None:
        """Every volume generation an app config uses."""
        ledger = self.w.ledger
        for ref in config.volume_ref_list:
            key = f"{ref.uuid}#{ref.generation_count}"
            if key in ledger.volumes and ledger.volumes[key].state == "ready":
                continue
            try:
                volume = ledger.device.volume(ref.uuid)
            except KeyError:
                raise ConfigError("volumeRefList", f"unknown volume {ref.uuid}") from None
            spec = self.w.resolver.volume_spec(ledger.device, volume, generation=ref.generation_count)
            self.ensure(spec, volume)

    def ensure(self, spec: VolumeSpec, volume: Volume) -> VolumeRecord:
        """The volume `spec`, from its content or blank; a failure is recorded on it."""
        ledger = self.w.ledger
        existing = ledger.volumes.get(spec.key)
        if existing is not None and existing.state == "ready":
            return existing
        try:
            backend = self.w.registry.claim(spec)
            source = self.w.resolver.source(ledger.device, volume)
            spec = spec.model_copy(update={"backend": backend.name})
            handle = (
                backend.populate_volume(spec, source, self.w.progress)
                if source is not None
                else backend.create_volume(spec)
            )
            record = VolumeRecord(spec=spec, handle=handle, created=self.w.now())
        except EvesnapError as exc:
            ledger.save_volume(
                VolumeRecord(spec=spec, state="error", error=Problem(description=str(exc), time=self.w.now()))
            )
            raise
        ledger.save_volume(record)
        return record

    def destroy(self, volume: VolumeRecord) -> None:
        """Destroy the backend's volume, then forget it."""
        if volume.handle is not None:
            self.w.backend_of(volume.handle).destroy_volume(volume.handle)
        self.w.ledger.drop_volume(volume.key)

    def all_live(self, record: AppRecord, capability: Capability) -> bool:
        """Whether every volume the app runs with has `capability` (live snapshot, live delete)."""
        keys = volume_keys(record.deployed) if record.deployed else []
        try:
            return bool(keys) and all(
                self.w.backend_of(self.w.ledger.handle(k)).has(capability) for k in keys
            )
        except EvesnapError:
            return False

    def used_keys(self) -> set[str]:
        """Every generation something still uses: a config, a snapshot, a clone."""
        ledger = self.w.ledger
        used: set[str] = set()
        for volume in ledger.device.volumes:
            used.add(f"{volume.uuid}#{volume.generation_count}")
        used.update(k for k, v in ledger.volumes.items() if v.origin == "clone")
        for record in ledger.apps.values():
            for cfg in (record.config, record.deployed, record.restored):
                if cfg is not None:
                    used.update(volume_keys(cfg))
            for snap in record.snapshots.values():
                used.update(snap.volumes)
                if snap.state == "requested":
                    used.update(snap.volume_keys)
        return used

    def release_unused(self) -> None:
        """Destroy the generations nothing uses; a failure is recorded on the volume."""
        ledger = self.w.ledger
        used = self.used_keys()
        for key in [k for k in ledger.volumes if k not in used]:
            volume = ledger.volumes[key]
            try:
                self.destroy(volume)
            except EvesnapError as exc:
                volume.error = Problem(description=f"destroy failed: {exc}", time=self.w.now())
                ledger.save_volume(volume)
