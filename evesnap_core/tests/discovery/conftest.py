"""A throwaway virtualenv with evesnap-core and small test backends installed as
REAL distributions (wheels built and pip-installed), so that discovery is tested
through entry points exactly as on a device."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[3]

GOOD_BODY = """
    @hookimpl
    def evesnap_claim_volume(self, volume):
        return None

    @hookimpl
    def evesnap_destroy_volume(self, volume):
        return None

    @hookimpl
    def evesnap_volume_details(self, volume):
        raise NotImplementedError
"""


@dataclass(frozen=True)
class TestDist:
    """One test backend distribution: its entry-point name and its module body."""

    name: str
    api: int = 1
    capabilities: tuple[str, ...] = ()
    extra: str = ""
    import_error: bool = False
    info_name: str | None = None

    @property
    def dist(self) -> str:
        return f"evesnap-test-{self.name}"

    @property
    def module(self) -> str:
        return f"evesnap_test_{self.name.replace('-', '_')}"

    def source(self) -> str:
        head = "raise RuntimeError('deliberately broken at import')\n" if self.import_error else ""
        caps = ", ".join(f"Capability({c!r})" for c in self.capabilities)
        return (
            head
            + textwrap.dedent(f"""
            from evesnap_core import BackendInfo, Capability, hookimpl

            class Backend:
                def __init__(self, context):
                    self.context = context

                @hookimpl
                def evesnap_backend_info(self):
                    return BackendInfo(name={self.info_name or self.name!r},
                                       plugin_api_version={self.api},
                                       capabilities=frozenset([{caps}]))
            """)
            + GOOD_BODY
            + self.extra
        )

    def write(self, parent: Path) -> Path:
        folder = parent / self.dist
        (folder / self.module).mkdir(parents=True)
        (folder / self.module / "__init__.py").write_text(self.source())
        (folder / "pyproject.toml").write_text(
            textwrap.dedent(f'''
            [build-system]
            requires = ["hatchling"]
            build-backend = "hatchling.build"
            [project]
            name = "{self.dist}"
            version = "{self.api}.2.3"
            dependencies = ["evesnap-core"]
            [project.entry-points."evesnap.volume_handlers"]
            {self.name} = "{self.module}:Backend"
            [tool.hatch.build.targets.wheel]
            packages = ["{self.module}"]
            ''')
        )
        return folder


TEST_DISTS = [
    TestDist("good", capabilities=()),
    TestDist("broken-import", import_error=True),
    TestDist("api2", api=2),
    TestDist("api3", api=3),
    TestDist("api4", api=4),
    TestDist(
        "misspelt",
        extra="""
    @hookimpl
    def evesnap_snapshot_volumes(self, volume):
        return None
""",
    ),
    TestDist("liar", capabilities=("clone",)),
    TestDist("wrongname", info_name="somebody"),
]


def _run(argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=600, check=False, **kwargs)


@dataclass
class PluginVenv:
    path: Path
    wheels: Path | None = None

    @property
    def python(self) -> str:
        return str(self.path / "bin" / "python")

    def run(self, *argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        full_env = {
            k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV" and not k.startswith("EVESNAP_")
        }
        full_env.update(env or {})
        full_env["PATH"] = f"{self.path / 'bin'}:{full_env.get('PATH', '')}"
        return _run(list(argv), env=full_env)

    def discover(self, version: int = 1, age: int = 0, env: dict[str, str] | None = None) -> dict[str, Any]:
        """Run discovery inside the venv with an API window; records by name."""
        code = textwrap.dedent(f"""
            import json, tempfile
            from pathlib import Path
            from evesnap_core.discovery import load_backends
            from evesnap_core.plugin_api import ApiWindow
            with tempfile.TemporaryDirectory() as tmp:
                reg = load_backends(Path(tmp), window=ApiWindow({version}, {age}))
            print(json.dumps({{n: r.as_dict() for n, r in reg.records.items()}}))
            """)
        result = self.run(self.python, "-c", code, env=env)
        assert result.returncode == 0, result.stderr
        return dict(json.loads(result.stdout))

    def pip(self, *args: str) -> subprocess.CompletedProcess[str]:
        result = self.run(self.python, "-m", "pip", "--disable-pip-version-check", *args)
        assert result.returncode == 0, result.stdout + result.stderr
        return result


def make_venv(where: Path) -> PluginVenv:
    result = _run([sys.executable, "-m", "venv", str(where)])
    assert result.returncode == 0, result.stderr
    return PluginVenv(where)


@pytest.fixture(scope="session")
def plugin_venv(tmp_path_factory: pytest.TempPathFactory) -> PluginVenv:
    base = tmp_path_factory.mktemp("plugin-venv")
    wheels = base / "wheels"
    sources = base / "src"
    venv = make_venv(base / "venv")
    folders = [ROOT / "evesnap_core"] + [d.write(sources) for d in TEST_DISTS]
    venv.pip("wheel", "-q", "--no-deps", "-w", str(wheels), *map(str, folders))
    venv.pip("install", "-q", *sorted(str(w) for w in wheels.glob("*.whl")))
    venv.wheels = wheels
    return venv
