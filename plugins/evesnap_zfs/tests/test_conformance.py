"""evesnap-zfs against the conformance suite, on a real pool in the ZFS VM."""

import pytest

from evesnap_core.testing.conformance.suite import *  # noqa: F403

pytestmark = pytest.mark.zfs
