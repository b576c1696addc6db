"""The exit codes of every evesnap command: one rule, documented in
docs/operator-guide.md and tested per command (tests/cli/test_exit_codes.py).

- 0 done, and no report holds an error;
- 1 an operation failed, or a report holds an error (an `appErr` of severity
  error, a `snapErr`, a `volumeErr`); the message or the reports say where;
- 2 invalid input, changed nothing: a config or policy file (under --strict,
  one with an unknown field), an argument, an app, snapshot or clone that
  evesnap does not know, a setting or a folder (persist, runtime, HOME) it
  cannot use; the message names it;
- 3 `evesnap plugins` only: an installed backend failed to load;
- 4 the persist folder is held by another evesnap process;
- 130 interrupted (SIGINT, Ctrl-C); 143 terminated (SIGTERM).
`evesnap conformance` reads 1 as "a case failed" and 2 as "the suite could not run".
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_INVALID = 2
EXIT_BACKEND_LOAD = 3
EXIT_LOCKED = 4
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143
