"""A newcomer's path, end to end: every command of docs/tutorial.md's ``sh``
blocks, in order, in bash, on real qcow2 volumes and a real QEMU app, with the
example configs of contrib/examples/; then what the tutorial says each step
shows is checked against what the commands printed."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from evesnap_core.discovery import load_backends
from evesnap_core.testing.conformance.harness import qemu_io_read

ROOT = Path(__file__).resolve().parents[1]
TUTORIAL = ROOT / "docs" / "tutorial.md"
S1, S2, S3 = (f"0b7f9d4e-1c2a-4e6b-9a51-3d2f6c8e0b0{n}" for n in (1, 2, 3))
MARK = "@@@ "

pytestmark = pytest.mark.qemu


def tutorial_commands() -> list[str]:
    blocks = re.findall(r"^```sh\n(.*?)^```", TUTORIAL.read_text(), re.DOTALL | re.MULTILINE)
    lines = [line.strip() for block in blocks for line in block.splitlines() if line.strip()]
    return [line for line in lines if not line.startswith("scripts/")]  # set-up is done already


def test_the_tutorial_runs_and_shows_what_it_says(tmp_path: Path) -> None:
    if "qcow2" not in load_backends(tmp_path).backends:
        pytest.skip("evesnap-qcow2 is not installed (run scripts/setup)")
    tour = tmp_path / "tour"
    run_dir = Path(
        subprocess.run(
            ["mktemp", "-d", "/tmp/es-tour-XXXXXX"], capture_output=True, text=True, check=True
        ).stdout.strip()
    )
    commands = tutorial_commands()
    assert any("04-rollback.json" in c for c in commands) and any("07-purge.json" in c for c in commands)
    script = ["set -euo pipefail"]
    for command in commands:
        command = command.replace("/tmp/evesnap-tour", str(tour))
        command = command.replace("EVESNAP_RUNTIME_DIR=$TOUR/run", f"EVESNAP_RUNTIME_DIR={run_dir}")
        command = command.replace("python contrib/", f"{sys.executable} contrib/")
        script += [f"printf '%s\\n' {shlex.quote(MARK + command)}", command]
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": str(tmp_path), "LANG": "C.UTF-8"}
    # the tutorial's `export PATH="$PWD/.venv/bin:$PATH"` must find this interpreter's venv
    venv_bin = Path(sys.executable).parent
    script = [line.replace('"$PWD/.venv/bin:$PATH"', f'"{venv_bin}:$PATH"') for line in script]
    try:
        out = subprocess.run(
            ["bash", "-c", "\n".join(script)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=900
        )
        assert out.returncode == 0, f"the tutorial stopped:\n{out.stdout[-4000:]}\n{out.stderr[-4000:]}"
        assert not tour.exists(), "the tutorial's clean-up step left its folder"
    finally:
        subprocess.run(
            ["bash", "-c", "echo '{\"apps\": []}' | evesnap apply /dev/stdin"],
            env={
                **env,
                "PATH": f"{venv_bin}:/usr/bin:/bin",
                "EVESNAP_PERSIST": str(tour / "persist"),
                "EVESNAP_RUNTIME_DIR": str(run_dir),
            },
            capture_output=True,
            timeout=120,
            check=False,
        )
        subprocess.run(["rm", "-rf", str(run_dir)], check=False)

    # what each command printed, in order
    steps: list[tuple[str, str]] = []
    for chunk in out.stdout.split(MARK)[1:]:
        command, _, printed = chunk.partition("\n")
        steps.append((command, printed))

    def printed(fragment: str, nth: int = 0) -> str:
        found = [p for c, p in steps if fragment in c]
        assert len(found) > nth, f"no command {fragment!r} (#{nth}) in the tutorial's output"
        return found[nth]

    aa, ee = " ".join(["aa"] * 16), " ".join(["ee"] * 16)
    assert "RUNNING" in printed("01-deploy.json")
    assert printed("guest.py read web 1", 0).strip() == aa
    row = next(line.split() for line in printed("snapshot list web", 0).splitlines() if S1 in line)
    assert row[row.index(S1) + 2] == "1", f"the app-update snapshot holds config version 1: {row}"
    assert S2 in printed("03-immediate-snapshot.json")
    assert printed("guest.py read web 1", 1).strip() == aa, "the rollback did not bring the bytes back"
    assert printed("guest.py read web 1", 1).strip() != ee
    after_delete = printed("snapshot list web", 1)
    row = next(line.split() for line in after_delete.splitlines() if S2 in line)
    assert S1 in after_delete and row[row.index(S2) + 1] == "deleting", after_delete
    assert "Too many snapshots requested. Max allowed: 1" in printed("06-max-snapshots.json")
    after_max = printed("snapshot list web", 2)
    assert S3 in after_max and S1 not in after_max and S2 not in after_max, after_max
    image = qemu_io_read(str(ROOT / "contrib" / "demo" / "os-image.qcow2"), "qcow2", 0, 16)
    assert printed("guest.py read web 0").strip() == " ".join(f"{b:02x}" for b in image)
    assert printed("guest.py read web 1", 2).strip() == aa
