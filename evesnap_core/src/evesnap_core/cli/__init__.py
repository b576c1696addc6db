"""The `evesnap` command line."""
