"""The handle of a volume a backend made: who serves it and where it lives."""

from __future__ import annotations

from evesnap_core.handler_types import VolumeHandle, VolumeSpec


def handle_for(
    spec: VolumeSpec | VolumeHandle, backend: str, location: str, fmt: str | None = None
) -> VolumeHandle:
    """The handle of `spec`'s volume as `backend` keeps it at `location` (in
    format `fmt`, by default the spec's): computed, never read back from a
    stored handle."""
    return VolumeHandle(
        uuid=spec.uuid,
        generation=spec.generation,
        backend=backend,
        format=fmt or spec.format,
        location=location,
    )
