"""Security after real runs of the `evesnap` command:

- every folder evesnap made in the persist folder is 0700 and every file 0600,
  after apply (qcow2 and purgeable volumes, snapshots), rollback, delete and a
  local snapshot;
- a persist folder writable by group or others is refused by every command
  that opens it, naming ``--persist``, and nothing is written into it;
- backends load only from the ``evesnap.volume_handlers`` entry-point group: a
  module on the path, or one registered under any other group (pluggy's own
  project name included), is never imported; ``EVESNAP_BLOCK_PLUGINS`` keeps a
  real bundled backend from being imported at all.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from evesnap_core.discovery import load_backends

from ..support import EVESNAP, MIB, Cli

pytestmark = pytest.mark.qemu

APP = "6ba7b810-9dad-41d1-80b4-00c04fd430c8"
VOL = "6ba7b814-9dad-41d1-80b4-00c04fd430c8"
VOL2 = "6ba7b815-9dad-41d1-80b4-00c04fd430c8"
TREE = "6ba7b816-9dad-41d1-80b4-00c04fd430c8"


@pytest.fixture
def cli(tmp_path: Path) -> Iterator[Cli]:
    if "qcow2" not in load_backends(tmp_path / "probe").backends:
        pytest.skip("evesnap-qcow2 is not installed (run scripts/setup)")
    made = Cli(tmp_path)
    made.env["EVESNAP_RUNTIME"] = "embedded"
    try:
        yield made
    finally:
        subprocess.run(["rm", "-rf", str(made.run_dir)], check=False)


def config(snapshots: list[str], counter: int = 0, active: str = "") -> str:
    return json.dumps(
        {
            "apps": [
                {
                    "uuidandversion": {"uuid": APP, "version": "1"},
                    "displayname": "secure",
                    "activate": True,
                    "volumeRefList": [{"uuid": VOL}, {"uuid": VOL2}],
                    "snapshot": {
                        "maxSnapshots": 3,
                        "snapshots": [{"id": s, "type": 2} for s in snapshots],
                        "rollbackCmd": {"counter": counter},
                        "activeSnapshot": active,
                    },
                }
            ],
            "volumes": [
                {
                    "uuid": VOL,
                    "maxsizebytes": str(MIB),
                    "origin": {"type": "VCOT_DOWNLOAD", "downloadContentTreeID": TREE},
                },
                {"uuid": VOL2, "maxsizebytes": str(MIB), "origin": {"type": "VCOT_BLANK"}},
            ],
            "contentInfo": [{"uuid": TREE, "URL": "os.raw", "iformat": "RAW"}],
        }
    )


def modes(persist: Path) -> dict[str, str]:
    """Every path below `persist` whose mode is not 0700 (folders) or 0600 (files)."""
    wrong = {}
    for dirpath, dirnames, filenames in os.walk(persist):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            st = os.lstat(path)
            mode = stat.S_IMODE(st.st_mode)
            want = 0o700 if stat.S_ISDIR(st.st_mode) else 0o600
            if stat.S_ISLNK(st.st_mode) or stat.S_ISSOCK(st.st_mode):
                continue
            if mode != want:
                wrong[str(path.relative_to(persist))] = f"{mode:04o}"
    return wrong


def test_state_folders_are_0700_and_files_0600_after_a_run(cli: Cli) -> None:
    old = os.umask(0o022)  # the usual umask: evesnap must not rely on a strict one
    try:
        (cli.root / "os.raw").write_bytes(b"\x11" * MIB)
        snap, snap2 = str(uuid.uuid4()), str(uuid.uuid4())
        steps = [
            config([snap]),  # deploy and snapshot
            config([snap, snap2], counter=1, active=snap),  # another, and a rollback
            config([snap2], counter=1, active=snap),  # a deletion
        ]
        for i, text in enumerate(steps):
            path = cli.root / f"step-{i}.json"
            path.write_text(text)
            out = cli("apply", str(path))
            assert out.returncode == 0, out.stderr
        assert cli("snapshot", "create", APP).returncode == 0
        assert cli("status", "--json").returncode == 0
    finally:
        os.umask(old)
    persist = cli.root / "persist"
    assert sum(1 for _ in persist.rglob("*")) > 10, "the run made the state it should have"
    assert modes(persist) == {}


COMMANDS = [
    ["apply", "{config}"],
    ["status"],
    ["snapshot", "list", APP],
    ["snapshot", "create", APP],
    ["agent", "--config", "{config}", "--interval", "0.1"],
]


MODES = [0o777, 0o720, 0o702, 0o770, 0o707]


def test_persist_writable_by_others_is_refused_by_every_command(cli: Cli) -> None:
    persist = cli.root / "persist"
    persist.mkdir(mode=0o700)
    path = cli.root / "config.json"
    path.write_text(config([]))
    for command, mode in zip(COMMANDS, MODES, strict=True):
        persist.chmod(mode)
        out = cli(*(a.format(config=path) for a in command))
        assert out.returncode == 2, (command, out.returncode, out.stderr)
        assert "--persist" in out.stderr and "writable by group or others" in out.stderr, out.stderr
        assert list(persist.iterdir()) == [], f"{command} wrote into a persist folder it refused"


ROGUE = """
from pathlib import Path
Path({marker!r}).write_text("imported")

class RogueBackend:
    def __init__(self, context):
        pass
"""


def rogue_site(where: Path, groups: list[str], marker: Path) -> Path:
    """A folder for PYTHONPATH holding module `evesnap_rogue` and a distribution
    that registers it under each entry-point group of `groups`."""
    site = where / "site"
    (site / "evesnap_rogue").mkdir(parents=True)
    (site / "evesnap_rogue" / "__init__.py").write_text(ROGUE.format(marker=str(marker)))
    info = site / "evesnap_rogue-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: evesnap-rogue\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(
        "".join(f"[{group}]\nrogue = evesnap_rogue:RogueBackend\n" for group in groups)
    )
    return site


def plugins(cli: Cli, **env: str) -> dict[str, dict[str, str]]:
    out = subprocess.run(
        [EVESNAP, "plugins", "--json"], env={**cli.env, **env}, capture_output=True, text=True, timeout=60
    )
    assert out.returncode in (0, 3), out.stderr
    return {b["name"]: b for b in json.loads(out.stdout)["backends"]}


OTHER_GROUPS = ["evesnap", "evesnap.volume_handler", "evesnap.runtimes", "evesnap.conformance", "pluggy"]


def test_backends_load_only_from_the_entry_point_group(cli: Cli, tmp_path: Path) -> None:
    """Registered under other groups (pluggy's project name, a near miss, evesnap's
    other groups) and importable from PYTHONPATH: never imported as a backend."""
    marker = tmp_path / "imported"
    site = rogue_site(tmp_path, OTHER_GROUPS, marker)
    found = plugins(cli, PYTHONPATH=str(site))
    assert "rogue" not in found and not marker.exists(), "a module outside the group was loaded"


def test_the_rogue_distribution_does_load_under_the_real_group(cli: Cli, tmp_path: Path) -> None:
    """The control for the test above: the same distribution under the real group is imported."""
    marker = tmp_path / "imported-real"
    site = rogue_site(tmp_path / "a", ["evesnap.volume_handlers"], marker)
    found = plugins(cli, PYTHONPATH=str(site))
    assert "rogue" in found and marker.exists()
    assert found["rogue"]["status"] == "failed"  # not a real backend; it was imported all the same
    blocked = tmp_path / "imported-blocked"
    site2 = rogue_site(tmp_path / "b", ["evesnap.volume_handlers"], blocked)
    found = plugins(cli, PYTHONPATH=str(site2), EVESNAP_BLOCK_PLUGINS="rogue")
    assert found["rogue"]["status"] == "blocked" and not blocked.exists()


def test_block_plugins_keeps_a_bundled_backend_from_being_imported(cli: Cli) -> None:
    code = (
        "import sys, json\n"
        "from pathlib import Path\n"
        "from evesnap_core.discovery import load_backends\n"
        "reg = load_backends(Path(sys.argv[1]))\n"
        "print(json.dumps({'status': reg.records['qcow2'].status, 'backends': sorted(reg.backends),"
        " 'imported': 'evesnap_qcow2' in sys.modules or 'evesnap_qcow2.backend' in sys.modules}))\n"
    )
    persist = cli.root / "p"
    persist.mkdir(mode=0o700)
    env = {**cli.env, "EVESNAP_BLOCK_PLUGINS": "zfs, qcow2"}
    out = subprocess.run([sys.executable, "-c", code, str(persist)], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["status"] == "blocked" and "qcow2" not in result["backends"]
    assert result["imported"] is False
    listed = plugins(cli, EVESNAP_BLOCK_PLUGINS="qcow2")
    assert listed["qcow2"]["status"] == "blocked" and listed["purgeable"]["status"] == "loaded"
