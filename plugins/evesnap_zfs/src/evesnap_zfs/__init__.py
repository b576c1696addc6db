"""evesnap-zfs: ZFS zvol snapshots for evesnap through libzfs_core (pyzfs)."""
