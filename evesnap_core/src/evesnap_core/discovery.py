"""Finding, loading and validating backends.

Backends come only from the entry-point group ``evesnap.volume_handlers``
(loaded with stevedore). Each is imported, built with a BackendContext,
registered into one pluggy PluginManager under its entry-point name, and
validated: hook names (``check_pending``), its description, the plugin API
window, and that every declared capability has its hooks. A backend that fails
any step is reported with its distribution and the error, and the others keep
working. ``EVESNAP_BLOCK_PLUGINS=name,...`` keeps named backends from being
imported at all.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Literal

import pluggy
import pydantic
from stevedore import NamedExtensionManager

from evesnap_core import hookspecs
from evesnap_core.backend import CAPABILITY_HOOKS, REQUIRED_HOOKS, Backend
from evesnap_core.errors import BackendUnavailable, EvesnapError, NoBackendFor
from evesnap_core.handler_types import BackendContext, BackendInfo, VolumeSpec
from evesnap_core.plugin_api import ENTRY_POINT_GROUP, ApiWindow

log = logging.getLogger(__name__)

BLOCK_ENV = "EVESNAP_BLOCK_PLUGINS"

Status = Literal["loaded", "unavailable", "failed", "blocked"]


@dataclass
class BackendRecord:
    """What discovery learnt about one entry point, loaded or not."""

    name: str
    distribution: str
    version: str
    status: Status
    error: str = ""
    warning: str = ""
    info: BackendInfo | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "distribution": self.distribution,
            "version": self.version,
            "status": self.status,
            "plugin_api_version": self.info.plugin_api_version if self.info else None,
            "capabilities": sorted(c.value for c in self.info.capabilities) if self.info else [],
            "formats": list(self.info.formats) if self.info else [],
            "snapshot_space": self.info.snapshot_space if self.info else None,
            "error": self.error,
            "warning": self.warning,
        }


@dataclass
class Registry:
    """The loaded backends and the record of every entry point seen."""

    pm: pluggy.PluginManager
    backends: dict[str, Backend] = field(default_factory=dict)
    records: dict[str, BackendRecord] = field(default_factory=dict)

    def get(self, name: str) -> Backend:
        """The named backend, or an error that says why it cannot be used."""
        backend = self.backends.get(name)
        if backend is not None:
            return backend
        record = self.records.get(name)
        if record is None:
            known = ", ".join(sorted(self.records)) or "none installed"
            raise BackendUnavailable(name, f"no such backend (installed: {known})")
        raise BackendUnavailable(name, record.error or record.status)

    def available(self) -> list[Backend]:
        return [b for b in self.backends.values() if b.info.available]

    def claim(self, volume: VolumeSpec) -> Backend:
        """The backend that serves `volume`: the one it names, else the first to claim."""
        if volume.backend:
            backend = self.get(volume.backend)
            if not backend.info.available:
                raise BackendUnavailable(backend.name, backend.info.unavailable_reason)
            return backend
        # pluggy calls hook implementations last-registered first, honouring tryfirst/trylast
        order = [impl.plugin_name for impl in reversed(self.pm.hook.evesnap_claim_volume.get_hookimpls())]
        for name in order:
            candidate = self.backends.get(name)
            if candidate is not None and candidate.info.available and candidate.claims(volume):
                return candidate
        available = ", ".join(b.name for b in self.available()) or "none"
        raise NoBackendFor(volume.key, f"{_what_serves(volume)} (available here: {available})")


BUNDLED_SERVES = {
    "qcow2": ("evesnap-qcow2", "qcow2"),
    "zvol": ("evesnap-zfs", "zfs"),
}
"""Volume format -> (distribution, evesnap-core extra) of the bundled backend
that serves blank volumes of that format."""


def _what_serves(volume: VolumeSpec) -> str:
    """What to install or change so that `volume` finds a backend."""
    if volume.purgeable:
        return (
            f"a purgeable {volume.format} volume (from a content tree, VCOT_DOWNLOAD) is served by "
            "evesnap-purgeable: pip install 'evesnap-core[purgeable]'"
        )
    bundled = BUNDLED_SERVES.get(volume.format)
    if bundled is not None:
        dist, extra = bundled
        return (
            f"a {volume.format} volume is served by {dist}: pip install 'evesnap-core[{extra}]' "
            "(if it is installed, 'evesnap plugins' says why it cannot work here)"
        )
    return (
        f"no bundled backend makes blank {volume.format} volumes (EVESNAP_VOLUME_FORMAT="
        f"{volume.format}?): set EVESNAP_VOLUME_FORMAT to qcow2 or zvol, or install a backend "
        f"that serves {volume.format} (such as contrib/evesnap_reflink for raw)"
    )


def blocked_names(environ: Mapping[str, str] | None = None) -> set[str]:
    env = os.environ if environ is None else environ
    return {n.strip() for n in env.get(BLOCK_ENV, "").split(",") if n.strip()}


def backend_options(name: str, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """Options for backend `name` from ``EVESNAP_<NAME>_<KEY>`` variables (key lowercased)."""
    env = os.environ if environ is None else environ
    prefix = f"EVESNAP_{name.upper().replace('-', '_')}_"
    return {k[len(prefix) :].lower(): v for k, v in env.items() if k.startswith(prefix)}


def new_plugin_manager() -> pluggy.PluginManager:
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    return pm


def _entry_points() -> dict[str, metadata.EntryPoint]:
    found: dict[str, metadata.EntryPoint] = {}
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        found.setdefault(ep.name, ep)  # the first on sys.path wins, as for imports
    return found


def _dist_of(ep: metadata.EntryPoint) -> tuple[str, str]:
    dist = getattr(ep, "dist", None)
    if dist is None:
        return "?", "?"
    return dist.metadata["Name"], dist.version


def load_backends(
    persist_dir: Path,
    *,
    window: ApiWindow | None = None,
    environ: Mapping[str, str] | None = None,
    extra: Iterable[tuple[str, Any]] = (),
) -> Registry:
    """Load every installed backend; never raise for one backend's fault.

    `extra` adds (name, factory) pairs that are not installed distributions, for
    tests and for embedding; an extra replaces an installed entry point of the
    same name, and the block list applies to extras too.
    """
    window = window or ApiWindow()
    blocked = blocked_names(environ)
    registry = Registry(pm=new_plugin_manager())
    eps = _entry_points()
    factories: dict[str, tuple[Any, str, str]] = {}

    for name, ep in sorted(eps.items()):
        dist, version = _dist_of(ep)
        if name in blocked:
            registry.records[name] = BackendRecord(
                name, dist, version, "blocked", error=f"blocked by {BLOCK_ENV}"
            )
            continue
        registry.records[name] = BackendRecord(name, dist, version, "failed")

    wanted = [n for n, r in registry.records.items() if r.status == "failed"]
    if wanted:

        def on_failure(_manager: Any, ep: Any, exc: BaseException) -> None:
            record = registry.records[ep.name]
            record.error = f"import failed: {type(exc).__name__}: {exc}"
            log.warning("backend %s (%s) failed to load: %s", ep.name, record.distribution, exc)

        manager = NamedExtensionManager(
            ENTRY_POINT_GROUP,
            names=wanted,
            invoke_on_load=False,
            on_load_failure_callback=on_failure,
            name_order=True,
        )
        for ext in manager.extensions:
            record = registry.records[ext.name]
            factories[ext.name] = (ext.plugin, record.distribution, record.version)

    for name, factory in extra:
        if name in blocked:
            registry.records[name] = BackendRecord(
                name, "(builtin)", "", "blocked", error=f"blocked by {BLOCK_ENV}"
            )
            continue
        factories[name] = (factory, "(builtin)", "")
        registry.records[name] = BackendRecord(name, "(builtin)", "", "failed")

    for name in sorted(factories):
        factory, dist, version = factories[name]
        record = registry.records[name]
        context = BackendContext(
            persist_dir=persist_dir,
            options=backend_options(name, environ),
            logger=logging.getLogger(f"evesnap.backend.{name}"),
            peer=registry.get,
        )
        try:
            backend = _register(registry.pm, name, factory, context, window, record)
        except Exception as exc:  # one broken backend never stops the others
            record.status = "failed"
            detail = str(exc) if isinstance(exc, EvesnapError) else f"{type(exc).__name__}: {exc}"
            record.error = record.error or detail
            log.warning("backend %s (%s) refused: %s", name, dist, record.error)
            continue
        registry.backends[name] = backend
    return registry


def _register(
    pm: pluggy.PluginManager,
    name: str,
    factory: Any,
    context: BackendContext,
    window: ApiWindow,
    record: BackendRecord,
) -> Backend:
    plugin = factory(context) if callable(factory) else factory
    try:
        pm.register(plugin, name=name)
    except ValueError as exc:
        raise EvesnapError(f"cannot register: {exc}") from exc
    try:
        pm.check_pending()
        backend = Backend(
            pm, name, BackendInfo(name=name, plugin_api_version=1), record.distribution, record.version
        )
        missing = [h for h in REQUIRED_HOOKS if not _implements(pm, plugin, h)]
        if missing:
            raise EvesnapError(f"does not implement required hooks: {', '.join(missing)}")
        raw = backend.call("evesnap_backend_info")
        try:
            info = BackendInfo.model_validate(raw)
        except pydantic.ValidationError as exc:
            raise EvesnapError(f"invalid evesnap_backend_info: {exc}") from exc
        if info.name != name:
            raise EvesnapError(f"describes itself as {info.name!r} but is registered as {name!r}")
        accepted, message = window.verdict(name, record.distribution, info.plugin_api_version)
        record.info = info
        if not accepted:
            raise EvesnapError(message)
        if message:
            record.warning = message
            log.warning("%s", message)
        for capability in info.capabilities:
            absent = [h for h in CAPABILITY_HOOKS[capability] if not _implements(pm, plugin, h)]
            if absent:
                raise EvesnapError(f"declares {capability.value} but does not implement {', '.join(absent)}")
    except Exception:
        pm.unregister(plugin)
        raise
    backend.info = info
    record.status = "loaded" if info.available else "unavailable"
    if not info.available:
        record.error = info.unavailable_reason
    return backend


def _implements(pm: pluggy.PluginManager, plugin: object, hook: str) -> bool:
    caller = getattr(pm.hook, hook)
    return any(impl.plugin is plugin for impl in caller.get_hookimpls())
