"""Workspace-wide pytest set-up.

pytest's importlib mode names a test module after its path from the root
(``evesnap_core.tests...``) and would create a placeholder ``evesnap_core``
module that hides the installed package; importing the package first avoids it.
"""

import evesnap_core  # noqa: F401
