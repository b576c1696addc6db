"""Test helpers that evesnap ships for backend authors: the conformance suite
(an opt-in pytest plugin) and tooling for real filesystems and QEMU."""
