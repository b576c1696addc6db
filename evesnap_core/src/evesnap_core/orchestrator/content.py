"""From the controller's Volume and ContentTree to what a backend is asked for.

A volume whose origin is a content tree (VCOT_DOWNLOAD) is *purgeable*: a purge
(a purge command, or an update that bumps its generationCount) rebuilds it from
that content, so a snapshot must keep the old generation whole. A blank volume
(VCOT_BLANK) holds the app's data and is snapshotted copy-on-write.

Content trees are local files here (``file:///path`` or a plain path); evesnap
does not download. A given sha256 is verified before the file is used.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlparse

from evesnap_core.errors import ConfigError
from evesnap_core.handler_types import ContentSource, VolumeSpec
from evesnap_core.model.config import ContentTree, DeviceConfig, Format, Volume, VolumeContentOriginType
from evesnap_core.model.proto import enum_label
from evesnap_core.settings import CONTENT_ROOTS_ENV

FORMATS = {Format.QCOW2: "qcow2", Format.RAW: "raw"}


@dataclass
class ContentResolver:
    """Turns content trees into verified local files; remembers verified hashes."""

    base_dir: Path = field(default_factory=Path.cwd)
    """Where relative paths in URLs are resolved from (the config file's folder)."""
    default_format: str = "qcow2"
    """Format of blank volumes."""
    roots: tuple[Path, ...] | None = None
    """The folders content files may come from (``EVESNAP_CONTENT_ROOTS``); None:
    `base_dir` (the config file's folder) and below. A content file anywhere else
    (``file:///etc/shadow``, ``../../etc/shadow``, a link out) is refused."""
    _verified: dict[tuple[str, int, int], str] = field(default_factory=dict)

    def volume_spec(self, config: DeviceConfig, volume: Volume, generation: int | None = None) -> VolumeSpec:
        """The spec of `volume` at `generation` (default: the config's)."""
        if volume.origin is not None and not isinstance(volume.origin.type, VolumeContentOriginType):
            where = next((i for i, v in enumerate(config.volumes) if v.uuid == volume.uuid), 0)
            raise ConfigError(  # as the reference: an origin type it does not know is not supported
                f"volumes[{where}].origin.type",
                f"VolumeContentOriginType number {int(volume.origin.type)} is not supported",
            )
        purgeable = bool(volume.origin and volume.origin.type == VolumeContentOriginType.VCOT_DOWNLOAD)
        fmt = self.default_format
        size = volume.maxsizebytes
        if purgeable:
            index, tree = self._tree(config, volume)
            fmt = self._format(index, tree.iformat)
            size = max(size, tree.max_size_bytes)
        return VolumeSpec(
            uuid=volume.uuid,
            generation=volume.generation_count if generation is None else generation,
            format=fmt,
            size_bytes=size,
            purgeable=purgeable,
            readonly=volume.readonly,
            display_name=volume.display_name,
        )

    def source(self, config: DeviceConfig, volume: Volume) -> ContentSource | None:
        """The verified content file a volume is built from, or None for a blank one."""
        if not (volume.origin and volume.origin.type == VolumeContentOriginType.VCOT_DOWNLOAD):
            return None
        index, tree = self._tree(config, volume)
        fmt = self._format(index, tree.iformat)
        path = self._path(index, tree.url)
        if tree.sha256:
            self._verify(index, path, tree.sha256)
        return ContentSource.model_validate({"path": path, "format": fmt, "sha256": tree.sha256 or None})

    # ------------------------------------------------------------ helpers

    @staticmethod
    def _tree(config: DeviceConfig, volume: Volume) -> tuple[int, ContentTree]:
        wanted = volume.origin.download_content_tree_id.lower() if volume.origin else ""
        for index, tree in enumerate(config.content_info):
            if str(tree.uuid) == wanted:
                return index, tree
        where = next((i for i, v in enumerate(config.volumes) if v.uuid == volume.uuid), 0)
        raise ConfigError(
            f"volumes[{where}].origin.downloadContentTreeID", f"unknown content tree {wanted!r}"
        )

    @staticmethod
    def _format(index: int, iformat: Format | int) -> str:
        fmt = FORMATS.get(iformat) if isinstance(iformat, Format) else None
        if fmt is None:
            raise ConfigError(
                f"contentInfo[{index}].iformat",
                f"{enum_label(iformat)} images are not supported (use QCOW2 or RAW)",
            )
        return fmt

    def _path(self, index: int, url: str) -> Path:
        where = f"contentInfo[{index}].URL"
        if not url:
            raise ConfigError(where, "empty URL")
        parsed = urlparse(url)
        if parsed.scheme == "file":
            if parsed.netloc not in ("", "localhost"):
                raise ConfigError(where, f"file URL with a remote host {parsed.netloc!r}")
            raw = unquote(parsed.path)
        elif parsed.scheme == "":
            raw = url
        else:
            raise ConfigError(where, f"only local files can be content ({parsed.scheme}:// is not supported)")
        if "\0" in raw:
            raise ConfigError(where, "NUL byte in path")
        path = Path(raw)
        if not path.is_absolute():
            if ".." in path.parts:
                raise ConfigError(where, f"a relative content path may not climb out of its folder: {raw!r}")
            path = self.base_dir / path
        try:
            if not path.is_file():
                raise ConfigError(where, f"content file {path} does not exist")
            resolved = path.resolve()
        except OSError as exc:  # a name over 255 bytes, a loop of links: a bad URL, not a crash
            raise ConfigError(where, f"content file {path} cannot be used ({exc.strerror})") from None
        roots = [Path(os.path.realpath(r)) for r in (self.roots or (self.base_dir,))]
        if not any(resolved == r or r in resolved.parents for r in roots):
            shown = ":".join(str(r) for r in roots)
            raise ConfigError(
                where,
                f"content file {resolved} is outside the content roots ({shown}); "
                f"put it there or set {CONTENT_ROOTS_ENV}",
            )
        return resolved

    def _verify(self, index: int, path: Path, expected: str) -> None:
        stat = path.stat()
        key = (str(path), stat.st_size, stat.st_mtime_ns)
        digest = self._verified.get(key)
        if digest is None:
            h = hashlib.sha256()
            with open(path, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    h.update(block)
            digest = h.hexdigest()
            self._verified[key] = digest
        if digest != expected.lower().strip():
            raise ConfigError(
                f"contentInfo[{index}].sha256",
                f"{path} has sha256 {digest}, the config says {expected}",
            )


def file_url(path: Path) -> str:
    """A file:// URL for a local path (for configs that evesnap writes)."""
    return path.resolve().as_uri()
