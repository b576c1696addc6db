"""Picking the app runtime by name (``--runtime``)."""

from __future__ import annotations

from importlib import metadata
from pathlib import Path

from evesnap_core.errors import ConfigError
from evesnap_core.runtime_hookspecs import RUNTIME_GROUP
from evesnap_core.runtimes.runtime import Runtime


def runtime_names() -> list[str]:
    return sorted(ep.name for ep in metadata.entry_points(group=RUNTIME_GROUP))


def load_runtime(name: str, persist_dir: Path) -> Runtime:
    """The runtime registered as `name` under ``evesnap.runtimes``, built for `persist_dir`.

    A runtime factory takes the persist folder; the ones evesnap-core ships are
    ``qemu`` and ``embedded``.
    """
    for ep in metadata.entry_points(group=RUNTIME_GROUP):
        if ep.name == name:
            factory = ep.load()
            return Runtime(factory(persist_dir))
    raise ConfigError(
        "--runtime", f"unknown runtime {name!r} (installed: {', '.join(runtime_names()) or 'none'})"
    )
