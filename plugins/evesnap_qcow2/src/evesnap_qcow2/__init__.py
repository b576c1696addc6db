"""evesnap-qcow2 backend."""
