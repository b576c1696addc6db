"""evesnap-purgeable backend."""
