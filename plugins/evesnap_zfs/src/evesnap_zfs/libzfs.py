"""Finding libzfs_core (Debian's python3-pyzfs), which is not a PyPI package.

pyzfs is installed for Debian's /usr/bin/python3; another CPython 3.11 can use
it from /usr/lib/python3/dist-packages. The backend must load and say why it
is unavailable when the library or the kernel module is missing.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from types import ModuleType

DEBIAN_DIST_PACKAGES = "/usr/lib/python3/dist-packages"


def libzfs_core_missing() -> str:
    """Why libzfs_core cannot be imported ("" when it is there), found without
    importing it: its import builds its C bindings (~60-75 ms here), which a
    command that never reaches ZFS (no zfs module loaded) need not pay."""
    if importlib.util.find_spec("libzfs_core") is not None:
        return ""
    if DEBIAN_DIST_PACKAGES not in sys.path:
        sys.path.append(DEBIAN_DIST_PACKAGES)
        if importlib.util.find_spec("libzfs_core") is not None:
            return ""
    return (
        "libzfs_core is not importable (No module named 'libzfs_core'); install Debian's "
        "python3-pyzfs and the zfs kernel module (zfs-dkms)"
    )


def load_libzfs_core() -> tuple[ModuleType | None, str]:
    """(module, "") when libzfs_core imports, else (None, the reason)."""
    try:
        return importlib.import_module("libzfs_core"), ""
    except ImportError as first:
        if DEBIAN_DIST_PACKAGES not in sys.path:
            sys.path.append(DEBIAN_DIST_PACKAGES)
            try:
                return importlib.import_module("libzfs_core"), ""
            except ImportError:
                pass
        return None, (
            f"libzfs_core is not importable ({first}); install Debian's python3-pyzfs "
            "and the zfs kernel module (zfs-dkms)"
        )
    except OSError as exc:  # libzfs_core.so or /dev/zfs missing
        return None, f"libzfs_core failed to load: {exc}"
