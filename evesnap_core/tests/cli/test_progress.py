"""Progress shows on a terminal, never in --json mode or into a pipe."""

from __future__ import annotations

import io

from evesnap_core.cli.progress import terminal_progress


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_on_a_terminal_ends_with_a_newline() -> None:
    out = Tty()
    show = terminal_progress(as_json=False, stream=out)
    assert show is not None
    show(0, 4 << 20)
    show(4 << 20, 4 << 20)
    assert "copying   0% (0/4 MiB)" in out.getvalue()
    assert out.getvalue().endswith("copying 100% (4/4 MiB)\n")


def test_no_progress_in_json_mode_or_into_a_pipe() -> None:
    assert terminal_progress(as_json=True, stream=Tty()) is None
    assert terminal_progress(as_json=False, stream=io.StringIO()) is None
