"""evesnap-reflink: raw image volumes with reflink snapshots on XFS or btrfs.

A third-party evesnap backend (entry point ``reflink``) that uses only
evesnap-core's public API. See README.md for what it does and where it refuses.
"""

NAME = "reflink"
"""The entry-point name: the backend's name everywhere (plugins list, options, specs)."""
