"""Discovery through real installed distributions: what loads, what is refused and why."""

from __future__ import annotations

import json

from .conftest import PluginVenv


def test_good_backend_loads_with_its_distribution(plugin_venv: PluginVenv) -> None:
    records = plugin_venv.discover()
    good = records["good"]
    assert good["status"] == "loaded"
    assert good["distribution"] == "evesnap-test-good"
    assert good["version"] == "1.2.3"
    assert good["plugin_api_version"] == 1


def test_import_failure_is_reported_and_others_keep_working(plugin_venv: PluginVenv) -> None:
    records = plugin_venv.discover()
    broken = records["broken-import"]
    assert broken["status"] == "failed"
    assert "deliberately broken at import" in broken["error"]
    assert broken["distribution"] == "evesnap-test-broken-import"
    assert records["good"]["status"] == "loaded"


def test_too_new_backend_is_refused_naming_versions(plugin_venv: PluginVenv) -> None:
    records = plugin_venv.discover()
    api2 = records["api2"]
    assert api2["status"] == "failed"
    assert "'api2'" in api2["error"] and "evesnap-test-api2" in api2["error"]
    assert "plugin API 2" in api2["error"] and "(1)" in api2["error"]


def test_version_window_refuses_old_and_warns_on_accepted_old(plugin_venv: PluginVenv) -> None:
    records = plugin_venv.discover(version=3, age=1)
    assert records["good"]["status"] == "failed"  # API 1 < 3 - 1
    assert "older than this evesnap-core accepts (2..3)" in records["good"]["error"]
    assert records["api2"]["status"] == "loaded"
    assert "still accepted" in records["api2"]["warning"]
    assert records["api3"]["status"] == "loaded" and records["api3"]["warning"] == ""
    assert records["api4"]["status"] == "failed"
    assert "newer than this evesnap-core accepts (2..3)" in records["api4"]["error"]


def test_blocked_backend_is_not_even_imported(plugin_venv: PluginVenv) -> None:
    records = plugin_venv.discover(env={"EVESNAP_BLOCK_PLUGINS": "broken-import, good"})
    assert records["broken-import"]["status"] == "blocked"
    assert "deliberately broken" not in records["broken-import"]["error"]
    assert records["good"]["status"] == "blocked"
    assert records["api3"]["status"] == "failed"  # unaffected: refused for its own reason


def test_misspelt_hook_is_caught(plugin_venv: PluginVenv) -> None:
    misspelt = plugin_venv.discover()["misspelt"]
    assert misspelt["status"] == "failed"
    assert "evesnap_snapshot_volumes" in misspelt["error"]


def test_capability_without_hooks_is_refused(plugin_venv: PluginVenv) -> None:
    liar = plugin_venv.discover()["liar"]
    assert liar["status"] == "failed"
    assert "declares clone but does not implement evesnap_clone_snapshot" in liar["error"]


def test_backend_calling_itself_by_another_name_is_refused(plugin_venv: PluginVenv) -> None:
    wrong = plugin_venv.discover()["wrongname"]
    assert wrong["status"] == "failed"
    assert "'somebody'" in wrong["error"]


def test_cli_lists_backends_and_exits_3_on_failures(plugin_venv: PluginVenv) -> None:
    result = plugin_venv.run("evesnap", "plugins", "--json")
    assert result.returncode == 3, result.stderr
    listing = json.loads(result.stdout)
    by_name = {b["name"]: b for b in listing["backends"]}
    assert by_name["good"]["status"] == "loaded"
    assert listing["plugin_api"] == {"version": 1, "age": 0}
    table = plugin_venv.run("evesnap", "plugins")
    assert "evesnap-test-good" in table.stdout and "loaded" in table.stdout


def test_uninstalling_a_backend_leaves_the_others_working(plugin_venv: PluginVenv) -> None:
    plugin_venv.pip("uninstall", "-y", "-q", "evesnap-test-api3")
    try:
        records = plugin_venv.discover(version=3, age=1)
        assert "api3" not in records
        assert records["api2"]["status"] == "loaded"
    finally:
        assert plugin_venv.wheels is not None
        plugin_venv.pip("install", "-q", *map(str, plugin_venv.wheels.glob("evesnap_test_api3-*.whl")))
