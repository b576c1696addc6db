from evesnap_core.testing.conformance.suite import *  # noqa: F403
