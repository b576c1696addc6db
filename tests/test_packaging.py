"""The four distributions as a user installs them: real wheels into a fresh venv."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = ["evesnap_core", "plugins/evesnap_qcow2", "plugins/evesnap_zfs", "plugins/evesnap_purgeable"]


def run(argv: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(argv, capture_output=True, text=True, timeout=900, env=env, check=False)
    assert result.returncode in (0, 3), f"{argv} failed:\n{result.stdout}\n{result.stderr}"
    return result


def test_fresh_venv_install_wheels_and_uninstall(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", str(venv)])
    pip = [str(venv / "bin" / "python"), "-m", "pip", "--disable-pip-version-check", "-q"]
    run([*pip, "install", *(str(ROOT / f) for f in FOLDERS)])
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EVESNAP_", "VIRTUAL_ENV"))}
    env["EVESNAP_PERSIST"] = str(tmp_path / "persist")

    def plugins() -> dict[str, dict[str, object]]:
        out = run([str(venv / "bin" / "evesnap"), "plugins", "--json"], env=env)
        return {b["name"]: b for b in json.loads(out.stdout)["backends"]}

    listed = plugins()
    assert {"qcow2", "zfs", "purgeable"} <= set(listed)
    for name in ("qcow2", "zfs", "purgeable"):
        assert listed[name]["version"] == "0.1.0" and listed[name]["distribution"] == f"evesnap-{name}"
    assert listed["qcow2"]["status"] == "loaded" and listed["purgeable"]["status"] == "loaded"
    # evesnap-zfs imports without a usable libzfs_core and says why
    assert listed["zfs"]["status"] == "unavailable" and listed["zfs"]["error"]

    wheels = tmp_path / "wheels"
    for folder in FOLDERS:
        run([*pip, "wheel", "--no-deps", "-w", str(wheels), str(ROOT / folder)])
    assert len(list(wheels.glob("evesnap_*.whl"))) == 4

    run([*pip, "uninstall", "-y", "evesnap-purgeable"])
    listed = plugins()
    assert "purgeable" not in listed and listed["qcow2"]["status"] == "loaded"
    assert listed["zfs"]["status"] == "unavailable"


def test_one_line_install_of_the_core_with_an_extra(tmp_path: Path) -> None:
    """An image builder's one line: `pip install 'evesnap-core[qcow2]'` from a folder of
    wheels (the distributions are not on PyPI) brings a working backend, `pip check` is
    clean, every wheel carries its license, and `evesnap conformance` without the
    [conformance] extra says in one line what to install."""
    wheels = tmp_path / "wheels"
    base = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    for folder in [*FOLDERS, "contrib/evesnap_reflink"]:
        run([*base, "wheel", "--no-deps", "-w", str(wheels), str(ROOT / folder)])
    for wheel in wheels.glob("evesnap_*.whl"):
        with zipfile.ZipFile(wheel) as zf:
            names = zf.namelist()
            licenses = [n for n in names if n.endswith(".dist-info/licenses/LICENSE")]
            assert licenses, f"{wheel.name} carries no LICENSE: {names}"
            assert "Apache License" in zf.read(licenses[0]).decode()
            meta = zf.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
        assert "License-Expression: Apache-2.0" in meta and "Classifier: " in meta, wheel.name
        assert "Project-URL: " in meta and "Keywords: " in meta and "Author: " in meta, wheel.name

    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", str(venv)])
    pip = [str(venv / "bin" / "python"), "-m", "pip", "--disable-pip-version-check", "-q"]
    run([*pip, "install", "--find-links", str(wheels), "evesnap-core[qcow2]"])
    run([*pip, "check"])
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EVESNAP_", "VIRTUAL_ENV"))}
    env["EVESNAP_PERSIST"] = str(tmp_path / "persist")
    listed = json.loads(run([str(venv / "bin" / "evesnap"), "plugins", "--json"], env=env).stdout)
    backends = {b["name"]: b for b in listed["backends"]}
    assert set(backends) == {"qcow2"} and backends["qcow2"]["status"] == "loaded"

    out = subprocess.run(
        [str(venv / "bin" / "evesnap"), "conformance", "qcow2"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [
        "evesnap: error: the conformance suite needs pytest, which is not installed "
        "(pip install 'evesnap-core[conformance]')"
    ]
