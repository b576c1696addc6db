"""evesnap-qcow2 against the conformance suite, with real qemu-img and QEMU."""

from evesnap_core.testing.conformance.suite import *  # noqa: F403
