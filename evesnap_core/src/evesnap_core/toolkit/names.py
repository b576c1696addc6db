"""Safe native names for snapshot ids: any string in, a short ASCII name out.

A snapshot id is the core's key and may hold anything (``..``, slashes,
newlines, 1,000 characters, lone surrogates). A backend never builds a path, a
tag or a command-line word from it: it uses :func:`safe_name`, which is

- injective: a canonical lowercase UUID (what controllers send) stands for
  itself; anything else is ``h`` plus 40 hex digits of its SHA-256 (160 bits;
  ``h`` is not a hex digit, so the two kinds never meet). Ids a naive sanitiser
  merges (``a/b`` and ``a_b``) get different names;
- bounded: at most 41 characters, whatever the id's length;
- never numeric, never starting with ``-`` or ``.``, the same after a restart.

The id itself is kept by the backend in its own records (a file, a property).
"""

from __future__ import annotations

import hashlib
import re

UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
MAX_LENGTH = 41
"""The longest name :func:`safe_name` returns."""
MAX_SNAPSHOT_ID = 1024
"""The longest snapshot id (in characters) a backend must take; the conformance
suite tests it, with 3-byte characters too."""


def safe_name(snapshot_id: str) -> str:
    """The safe name of `snapshot_id` (see the module docstring)."""
    if UUID_RE.match(snapshot_id):
        return snapshot_id
    return "h" + hashlib.sha256(snapshot_id.encode("utf-8", "surrogatepass")).hexdigest()[:40]


def id_from_name(name: str) -> str | None:
    """The snapshot id a name stands for when it is the id itself; else None."""
    return name if UUID_RE.match(name) else None
