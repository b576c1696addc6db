"""Content trees as local files: URLs, formats, sha256, and the purgeable rule."""

from __future__ import annotations

import hashlib
import uuid
from pathlib import Path
from typing import Any

import pytest

from evesnap_core.errors import ConfigError
from evesnap_core.model.config import DeviceConfig
from evesnap_core.model.validation import parse_model
from evesnap_core.orchestrator.content import ContentResolver, file_url

TREE = str(uuid.uuid4())
OS_VOL = str(uuid.uuid4())
DATA_VOL = str(uuid.uuid4())


def config(url: str, iformat: str = "QCOW2", sha256: str = "") -> DeviceConfig:
    data: dict[str, Any] = {
        "volumes": [
            {
                "uuid": OS_VOL,
                "generationCount": 3,
                "maxsizebytes": 1024,
                "origin": {"type": "VCOT_DOWNLOAD", "downloadContentTreeID": TREE},
            },
            {"uuid": DATA_VOL, "maxsizebytes": 4096, "origin": {"type": "VCOT_BLANK"}},
        ],
        "contentInfo": [
            {"uuid": TREE, "URL": url, "iformat": iformat, "sha256": sha256, "maxSizeBytes": 2048}
        ],
    }
    return parse_model(DeviceConfig, data)


def test_download_volume_is_purgeable_and_blank_is_not(tmp_path: Path) -> None:
    image = tmp_path / "os.qcow2"
    image.write_bytes(b"x")
    cfg = config(file_url(image))
    resolver = ContentResolver(base_dir=tmp_path)
    os_spec = resolver.volume_spec(cfg, cfg.volumes[0])
    data_spec = resolver.volume_spec(cfg, cfg.volumes[1])
    assert os_spec.purgeable and os_spec.format == "qcow2" and os_spec.generation == 3
    assert os_spec.size_bytes == 2048  # the larger of the volume's and the content's size
    assert not data_spec.purgeable and data_spec.format == "qcow2" and data_spec.size_bytes == 4096
    assert resolver.source(cfg, cfg.volumes[1]) is None
    source = resolver.source(cfg, cfg.volumes[0])
    assert source is not None and source.path == image.resolve() and source.format == "qcow2"


def test_relative_paths_resolve_from_the_config_folder(tmp_path: Path) -> None:
    (tmp_path / "img.raw").write_bytes(b"raw")
    cfg = config("img.raw", iformat="RAW")
    source = ContentResolver(base_dir=tmp_path).source(cfg, cfg.volumes[0])
    assert source is not None and source.format == "raw"


def test_sha256_is_verified(tmp_path: Path) -> None:
    image = tmp_path / "os.qcow2"
    image.write_bytes(b"content")
    good = hashlib.sha256(b"content").hexdigest()
    cfg = config(str(image), sha256=good)
    assert ContentResolver(base_dir=tmp_path).source(cfg, cfg.volumes[0]) is not None
    bad = config(str(image), sha256="0" * 64)
    with pytest.raises(ConfigError, match=r"^contentInfo\[0\]\.sha256: .* has sha256 " + good):
        ContentResolver(base_dir=tmp_path).source(bad, bad.volumes[0])


@pytest.mark.parametrize(
    ("url", "iformat", "field", "message"),
    [
        ("https://example.com/os.qcow2", "QCOW2", "contentInfo[0].URL", "only local files"),
        ("file://otherhost/os.qcow2", "QCOW2", "contentInfo[0].URL", "remote host"),
        ("/nonexistent/os.qcow2", "QCOW2", "contentInfo[0].URL", "does not exist"),
        ("", "QCOW2", "contentInfo[0].URL", "empty URL"),
        ("/x", "VMDK", "contentInfo[0].iformat", "VMDK images are not supported"),
    ],
)
def test_bad_content_is_refused_naming_the_field(url: str, iformat: str, field: str, message: str) -> None:
    cfg = config(url, iformat=iformat)
    with pytest.raises(ConfigError) as info:
        ContentResolver().source(cfg, cfg.volumes[0])
    assert info.value.path == field and message in str(info.value)


@pytest.mark.parametrize(
    "url",
    ["file:///etc/shadow", "/etc/shadow", "file:///tmp/../etc/shadow", "../../../../../../etc/shadow"],
)
def test_content_outside_the_content_roots_is_refused(url: str, tmp_path: Path) -> None:
    cfg = config(url, iformat="RAW")
    with pytest.raises(ConfigError) as info:
        ContentResolver(base_dir=tmp_path).source(cfg, cfg.volumes[0])
    assert info.value.path == "contentInfo[0].URL"
    assert "outside the content roots" in str(info.value) or "may not climb out" in str(info.value)


def test_a_link_out_of_the_content_root_is_refused(tmp_path: Path) -> None:
    (tmp_path / "os.raw").symlink_to("/etc/shadow")
    cfg = config("os.raw", iformat="RAW")
    with pytest.raises(ConfigError, match="outside the content roots"):
        ContentResolver(base_dir=tmp_path).source(cfg, cfg.volumes[0])


def test_configured_content_roots_allow_only_themselves(tmp_path: Path) -> None:
    store = tmp_path / "downloads"
    store.mkdir()
    (store / "os.raw").write_bytes(b"raw")
    (tmp_path / "beside.raw").write_bytes(b"raw")
    resolver = ContentResolver(base_dir=tmp_path, roots=(store,))
    cfg = config(file_url(store / "os.raw"), iformat="RAW")
    assert resolver.source(cfg, cfg.volumes[0]) is not None
    beside = config("beside.raw", iformat="RAW")  # beside the config: not a root any more
    with pytest.raises(ConfigError, match="outside the content roots"):
        resolver.source(beside, beside.volumes[0])
