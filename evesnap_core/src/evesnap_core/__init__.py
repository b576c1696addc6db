"""evesnap-core: application snapshots for edge devices.

The public API for backend authors is what this module exports: the hookimpl
marker, the types that cross the plugin boundary, the typed errors, and the
plugin API version. Everything else is the core's own business.
"""

from importlib.metadata import PackageNotFoundError, version

from evesnap_core.errors import (
    AlreadyExists,
    BackendUnavailable,
    CommandFailed,
    CommandTimeout,
    ConfigError,
    CorruptVolume,
    EvesnapError,
    FormatError,
    InUse,
    InvalidName,
    NoBackendFor,
    NoSpace,
    NotFound,
    NotSupported,
    RollbackBlocked,
    SnapshotInUse,
    SnapshotNotFound,
    UnsafePath,
    VolumeLocked,
    VolumeNotFound,
)
from evesnap_core.handler_types import (
    BackendContext,
    BackendInfo,
    Capability,
    ContentSource,
    LiveAttachment,
    ProgressCallback,
    ReadOnlyExport,
    RollbackCheck,
    RollbackResult,
    SnapshotInfo,
    VolumeDetails,
    VolumeHandle,
    VolumeSpec,
)
from evesnap_core.hookspecs import hookimpl
from evesnap_core.plugin_api import ENTRY_POINT_GROUP, PLUGIN_API_AGE, PLUGIN_API_VERSION

try:
    __version__ = version("evesnap-core")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"

__all__ = [
    "ENTRY_POINT_GROUP",
    "PLUGIN_API_AGE",
    "PLUGIN_API_VERSION",
    "AlreadyExists",
    "BackendContext",
    "BackendInfo",
    "BackendUnavailable",
    "Capability",
    "CommandFailed",
    "CommandTimeout",
    "ConfigError",
    "ContentSource",
    "CorruptVolume",
    "EvesnapError",
    "FormatError",
    "InUse",
    "InvalidName",
    "LiveAttachment",
    "NoBackendFor",
    "NoSpace",
    "NotFound",
    "NotSupported",
    "ProgressCallback",
    "ReadOnlyExport",
    "RollbackBlocked",
    "RollbackCheck",
    "RollbackResult",
    "SnapshotInUse",
    "SnapshotInfo",
    "SnapshotNotFound",
    "UnsafePath",
    "VolumeDetails",
    "VolumeHandle",
    "VolumeLocked",
    "VolumeNotFound",
    "VolumeSpec",
    "__version__",
    "hookimpl",
]
