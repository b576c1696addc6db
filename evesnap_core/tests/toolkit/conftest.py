from evesnap_core.testing.loopfs import loop_filesystems  # noqa: F401 (the fixture, offered by name)
