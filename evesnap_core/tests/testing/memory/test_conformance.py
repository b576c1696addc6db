"""The in-memory backend against the conformance suite, in two configurations
(copy-on-write with every capability; whole copies, rollback of the latest only).
The cases it cannot serve are skipped naming the requirement (test_requirements.py)."""

from evesnap_core.testing.conformance.suite import *  # noqa: F403
