"""evesnap-purgeable against the conformance suite (raw volumes, real files)."""

from evesnap_core.testing.conformance.suite import *  # noqa: F403
