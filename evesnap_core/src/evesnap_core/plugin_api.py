"""The plugin API version window (like Proxmox's APIVER/APIAGE).

The core implements API version ``PLUGIN_API_VERSION`` and still accepts
backends written for the ``PLUGIN_API_AGE`` versions before it. A backend newer
than the core, or older than the window, is refused: its hooks may have a
meaning this core does not know.
"""

from __future__ import annotations

from dataclasses import dataclass

PLUGIN_API_VERSION = 1
PLUGIN_API_AGE = 0
ENTRY_POINT_GROUP = "evesnap.volume_handlers"


@dataclass(frozen=True)
class ApiWindow:
    version: int = PLUGIN_API_VERSION
    age: int = PLUGIN_API_AGE

    @property
    def oldest(self) -> int:
        return self.version - self.age

    def describe(self) -> str:
        if self.age == 0:
            return f"{self.version}"
        return f"{self.oldest}..{self.version}"

    def verdict(self, backend: str, distribution: str, api_version: int) -> tuple[bool, str]:
        """(accepted, message): why a backend of `api_version` loads or not.

        The message names the backend, its distribution and version, and the
        accepted range, so that an operator knows which package to upgrade.
        """
        who = f"backend {backend!r} ({distribution}) implements plugin API {api_version}"
        if api_version > self.version:
            return (
                False,
                f"{who}, newer than this evesnap-core accepts ({self.describe()}): upgrade evesnap-core",
            )
        if api_version < self.oldest:
            return (
                False,
                f"{who}, older than this evesnap-core accepts ({self.describe()}): upgrade the backend",
            )
        if api_version < self.version:
            return (
                True,
                f"{who}, older than the current {self.version} but still accepted ({self.describe()})",
            )
        return True, ""
