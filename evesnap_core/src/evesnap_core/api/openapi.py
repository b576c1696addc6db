"""The OpenAPI document of the agent's API, generated from its pydantic models.

``python -m evesnap_core.api.openapi > docs/api/openapi.json`` writes the copy
kept in docs/ (a test checks that the two agree).
"""

from __future__ import annotations

import json
from typing import Any


def document() -> dict[str, Any]:
    from evesnap_core.api.server import make_app

    return make_app(None).openapi()


def text() -> str:
    return json.dumps(document(), indent=2, sort_keys=True) + "\n"


if __name__ == "__main__":
    print(text(), end="")
