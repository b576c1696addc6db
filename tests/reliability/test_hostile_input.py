"""Hostile input: the config parser fuzzed, and hostile ids, names and content
URLs through the real `evesnap` command and straight into every bundled backend.

- The parser (``parse_model(DeviceConfig, ...)``) takes thousands of generated
  documents (valid configs mutated: wrong types, missing and extra fields, huge
  numbers, deep nesting, lone surrogates, a field under both its proto names,
  invalid UTF-8 bytes; and raw bytes): it raises nothing but ``ConfigError``,
  and every ``ConfigError`` names a field path or says the document is not JSON.
- Hostile strings (path separators, ``..``, NUL, shell metacharacters, a
  leading ``-``, unicode, more than 255 bytes) as ids, display names and
  content file names: refused naming the field, or handled without a file
  outside the persist folder, without a shell, and without an argument that
  qemu-img reads as an option (a logging ``qemu-img`` wrapper sits first on PATH).
- No ``shell=True`` (nor ``os.system``/``os.popen``) anywhere in the shipped source.
"""

from __future__ import annotations

import ast
import copy
import json
import os
import re
import stat
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from evesnap_core.discovery import load_backends
from evesnap_core.errors import ConfigError, InvalidName
from evesnap_core.model.config import DeviceConfig
from evesnap_core.model.validation import parse_model

from ..support import Cli, volume_rows

pytestmark = pytest.mark.qemu

REPO = Path(__file__).resolve().parents[2]
APP = "6ba7b810-9dad-41d1-80b4-00c04fd430c8"
VOL = "6ba7b814-9dad-41d1-80b4-00c04fd430c8"
VOL2 = "6ba7b815-9dad-41d1-80b4-00c04fd430c8"
TREE = "6ba7b816-9dad-41d1-80b4-00c04fd430c8"
SNAP = "6ba7b817-9dad-41d1-80b4-00c04fd430c8"

# ================================================================ the parser, fuzzed

# (original name, JSON name) of every field the model reads under two names
TWO_NAMES = {
    "volumeRefList": "volume_ref_list",
    "generationCount": "generation_count",
    "maxSnapshots": "max_snapshots",
    "rollbackCmd": "rollback_cmd",
    "activeSnapshot": "active_snapshot",
    "contentInfo": "content_info",
    "displayName": "display_name",
    "downloadContentTreeID": "download_content_tree_ID",
    "opsTime": "ops_time",
    "mountDir": "mount_dir",
    "clearText": "clear_text",
    "maxSizeBytes": "max_size_bytes",
    "dsId": "ds_id",
}


@st.composite
def valid_configs(draw: st.DrawFn) -> dict[str, Any]:
    """A valid DeviceConfig document; each field under one of its two names."""

    def name(json_name: str) -> str:
        other = TWO_NAMES.get(json_name)
        return other if other and draw(st.booleans()) else json_name

    ids = st.uuids().map(str)
    n_vols = draw(st.integers(1, 3))
    vols = draw(st.lists(ids, min_size=n_vols, max_size=n_vols, unique=True))
    tree = draw(ids)
    volumes = []
    for i, v in enumerate(vols):
        volume: dict[str, Any] = {"uuid": v, "maxsizebytes": draw(st.sampled_from([4096, "1048576", 0]))}
        if i == 0 and draw(st.booleans()):
            volume["origin"] = {"type": "VCOT_DOWNLOAD", name("downloadContentTreeID"): tree}
        else:
            volume["origin"] = {"type": draw(st.sampled_from([1, "VCOT_BLANK", "1"]))}
        volume[name("generationCount")] = draw(st.integers(0, 5))
        volume[name("displayName")] = draw(st.text(max_size=10))
        volumes.append(volume)
    snaps = draw(st.lists(ids, max_size=3, unique=True))
    app = {
        "uuidandversion": {"uuid": draw(ids), "version": draw(st.text(max_size=4))},
        "displayname": draw(st.text(max_size=10)),
        "activate": draw(st.booleans()),
        name("volumeRefList"): [{"uuid": v} for v in vols],
        "snapshot": {
            name("maxSnapshots"): draw(st.integers(0, 10)),
            name("rollbackCmd"): {"counter": draw(st.integers(0, 2**32 - 1))},
            name("activeSnapshot"): draw(st.sampled_from(["", *snaps])),
            "snapshots": [
                {"id": s, "type": draw(st.sampled_from([1, 2, "SNAPSHOT_TYPE_IMMEDIATE"]))} for s in snaps
            ],
        },
    }
    return {
        "apps": [app],
        "volumes": volumes,
        name("contentInfo"): [{"uuid": tree, "URL": "file:///images/os.qcow2", "iformat": "QCOW2"}],
    }


json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=10), inner, max_size=3),
    max_leaves=12,
)
hostile_values = st.one_of(
    json_values,
    st.integers(min_value=2**31, max_value=2**200) | st.integers(min_value=-(2**200), max_value=-1),
    st.sampled_from(["9" * 30, "-1", "18446744073709551616", " 42 ", "0x10", "1e3", "", "\x00"]),
    st.floats(),  # NaN and infinities too
    st.text(alphabet=st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF), min_size=1, max_size=3),
    st.text(max_size=3).map(lambda s: s + "\udc80"),  # a lone surrogate inside a string
    st.integers(1, 400).map(lambda depth: _nest(depth)),
    st.sampled_from([[], {}, [None], {"": None}, True, False]),
)


def _nest(depth: int) -> Any:
    value: Any = 1
    for i in range(depth):
        value = [value] if i % 2 else {"x": value}
    return value


def _nodes(data: Any) -> list[tuple[Any, Any]]:
    """(container, key) of every value in the document, in document order."""
    found: list[tuple[Any, Any]] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key in list(node):
                found.append((node, key))
                walk(node[key])
        elif isinstance(node, list):
            for i in range(len(node)):
                found.append((node, i))
                walk(node[i])

    walk(data)
    return found


MUTATIONS = ["replace", "delete", "extra", "both_names", "nest"]


@st.composite
def mutated_configs(draw: st.DrawFn) -> dict[str, Any]:
    data = copy.deepcopy(draw(valid_configs()))
    for _ in range(draw(st.integers(1, 3))):
        nodes = _nodes(data)
        container, key = nodes[draw(st.integers(0, len(nodes) - 1))]
        kind = draw(st.sampled_from(MUTATIONS))
        if kind == "replace":
            container[key] = draw(hostile_values)
        elif kind == "delete":
            del container[key]
        elif kind == "extra" and isinstance(container, dict):
            container[draw(st.text(max_size=12) | st.sampled_from(["uuid", "id", "x\udc80"]))] = draw(
                hostile_values
            )
        elif kind == "both_names" and isinstance(container, dict) and isinstance(key, str):
            other = TWO_NAMES.get(key) or {v: k for k, v in TWO_NAMES.items()}.get(key)
            if other:
                container[other] = copy.deepcopy(container[key])
        elif kind == "nest":
            container[key] = _nest(draw(st.integers(50, 300)))
    return data


def _check_refusal(exc: ConfigError) -> None:
    assert exc.path or exc.reason.startswith("not valid JSON"), f"refusal without a field path: {exc}"
    if exc.path:
        assert str(exc).startswith(exc.path + ": ")


def _parse_checked(data: Any) -> None:
    """Parse; a refusal must name a field; an accepted config must store and print again."""
    try:
        config = parse_model(DeviceConfig, data)
    except ConfigError as exc:
        _check_refusal(exc)
        return
    printed = config.to_json_dict()
    text = json.dumps(printed, ensure_ascii=False, allow_nan=False)
    text.encode("utf-8")  # what the state store writes
    assert parse_model(DeviceConfig, text).to_json_dict() == printed


FUZZ = settings(max_examples=1200, deadline=None, suppress_health_check=list(HealthCheck))


@FUZZ
@given(mutated_configs())
def test_mutated_configs_as_objects(data: dict[str, Any]) -> None:
    _parse_checked(data)


@settings(max_examples=500, deadline=None, suppress_health_check=list(HealthCheck))
@given(mutated_configs(), st.integers(0, 10**6), st.binary(min_size=1, max_size=4))
def test_mutated_configs_as_bytes_with_invalid_utf8(data: dict[str, Any], where: int, junk: bytes) -> None:
    text = json.dumps(data, allow_nan=True)  # NaN and Infinity as Python writes them
    _parse_checked(text)
    raw = text.encode("utf-8", "surrogatepass")  # lone surrogates as invalid UTF-8
    _parse_checked(raw)
    at = where % (len(raw) + 1)
    _parse_checked(raw[:at] + junk + raw[at:])  # any bytes spliced in anywhere


@settings(max_examples=1000, deadline=None)
@given(st.binary(max_size=200) | st.text(max_size=100))
def test_raw_bytes_and_text(raw: bytes | str) -> None:
    _parse_checked(raw)


@pytest.mark.parametrize(
    "raw",
    [
        b"[" * 100_000,
        b'{"apps": [' * 5000,
        b'{"apps": [], "x": ' + b"[" * 900 + b"]" * 900 + b"}",
        b'{"apps": [{"uuidandversion": {"uuid": "%s"}, "displayname": "\\ud800"}]}' % APP.encode(),
        b'{"apps": [], "volumes": [{"uuid": "%s", "maxsizebytes": NaN}]}' % VOL.encode(),
        b'{"volumes": [{"uuid": "%s", "maxsizebytes": %s}]}' % (VOL.encode(), b"9" * 5000),
        b'{"apps": [], "\\udc80": 1}',
        b"\xef\xbb\xbf{}",
        b"\xff\xfe{\x00}\x00",
        b"",
    ],
    ids=lambda r: repr(r[:20]),
)
def test_known_hostile_documents(raw: bytes) -> None:
    """Each once made the parser raise something else, or accepted what could not be stored."""
    _parse_checked(raw)


# ================================================================ hostile strings

HOSTILE = [
    "../../../evesnap-escape",
    "a/b\\c",
    "..",
    "$(touch {marker})",
    "; touch {marker}; #",
    "`touch {marker}`",
    "| touch {marker}",
    "-rf",
    "--help",
    "-",
    "nul\x00byte",
    "ünïcödé-名前-🚀",
    "\n\twhite space ",
    "'\"quotes\"'",
    "x" * 300,
    "é" * 200,  # 400 bytes in UTF-8
]
OPTIONS_LIKE = [h for h in HOSTILE if h.startswith("-")]


def hostile(marker: Path) -> list[str]:
    return [h.replace("{marker}", str(marker)) for h in HOSTILE]


def tree(root: Path, *skip: Path) -> dict[str, tuple[str, int]]:
    """Every path under `root` (but those in `skip` and below), with its kind and size."""
    found: dict[str, tuple[str, int]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        dirnames[:] = [d for d in dirnames if here / d not in skip]
        for n in dirnames + filenames:
            if here / n in skip:
                continue
            st_ = os.lstat(here / n)
            kind = "d" if stat.S_ISDIR(st_.st_mode) else "f"
            found[str((here / n).relative_to(root))] = (kind, 0 if kind == "d" else st_.st_size)
    return found


def qemu_img_wrapper(where: Path) -> tuple[Path, Path]:
    """A `qemu-img` first on PATH that logs its argv (NUL-separated) and runs the real one."""
    real = next(
        Path(d) / "qemu-img" for d in os.environ["PATH"].split(":") if (Path(d) / "qemu-img").is_file()
    )
    where = where / "qemu-img-wrapper"  # tree() callers skip it
    bindir, log = where / "bin", where / "argv"
    bindir.mkdir(parents=True)
    script = bindir / "qemu-img"
    script.write_text(
        "#!/bin/sh\n"
        f"for a in \"$@\"; do printf '%s\\0' \"$a\" >> '{log}'; done\n"
        f"printf '%s\\0' '<end>' >> '{log}'\n"
        f"exec '{real}' \"$@\"\n"
    )
    script.chmod(0o755)
    return bindir, log


def calls(log: Path) -> list[list[str]]:
    if not log.exists():
        return []
    out: list[list[str]] = [[]]
    for word in log.read_bytes().decode("utf-8", "surrogateescape").split("\0")[:-1]:
        if word == "<end>":
            out.append([])
        else:
            out[-1].append(word)
    return [c for c in out if c]


OPTION = re.compile(r"^--?[A-Za-z][A-Za-z-]*(=[a-z]+)?$")


def assert_no_hostile_option(log: Path, strings: list[str]) -> int:
    """No qemu-img argument is a hostile string or was made from one as an option;
    every argument that starts with '-' is a plain option word. Returns the calls seen."""
    seen = calls(log)
    for argv in seen:
        for arg in argv:
            if arg.startswith("-"):
                assert OPTION.match(arg), f"qemu-img got {arg!r} where an option goes: {argv}"
                assert arg not in strings, f"a hostile name reached qemu-img as an option: {argv}"
            for s in strings:
                if len(s) >= 4 and s in arg:  # distinctive ones: "-" is in every option
                    assert arg.startswith(("/", "driver=", "json:", "file.")), f"{s!r} in {argv}"
    return len(seen)


# ---------------------------------------------------------------- through the CLI


@pytest.fixture
def cli(tmp_path: Path) -> Iterator[Cli]:
    if "qcow2" not in load_backends(tmp_path).backends:
        pytest.skip("evesnap-qcow2 is not installed (run scripts/setup)")
    made = Cli(tmp_path / "device", volumes=(VOL,))
    made.root.mkdir()
    made.env["EVESNAP_RUNTIME"] = "embedded"
    bindir, made.qemu_log = qemu_img_wrapper(tmp_path)  # type: ignore[attr-defined]
    made.env["PATH"] = f"{bindir}:{made.env['PATH']}"
    try:
        yield made
    finally:
        made.cleanup()


def base_config() -> dict[str, Any]:
    return {
        "apps": [
            {
                "uuidandversion": {"uuid": APP, "version": "1"},
                "displayname": "app",
                "activate": True,
                "volumeRefList": [{"uuid": VOL}],
                "snapshot": {"maxSnapshots": 3, "snapshots": [{"id": SNAP, "type": 2}]},
            }
        ],
        "volumes": [
            {
                "uuid": VOL,
                "maxsizebytes": "1048576",
                "origin": {"type": "VCOT_DOWNLOAD", "downloadContentTreeID": TREE},
            }
        ],
        "contentInfo": [{"uuid": TREE, "URL": "content.qcow2", "iformat": "QCOW2"}],
    }


ID_FIELDS = [
    ("apps[0].uuidandversion.uuid", lambda c, h: c["apps"][0]["uuidandversion"].update(uuid=h)),
    ("volumes[0].uuid", lambda c, h: c["volumes"][0].update(uuid=h)),
    ("apps[0].volumeRefList[0].uuid", lambda c, h: c["apps"][0]["volumeRefList"][0].update(uuid=h)),
    ("apps[0].snapshot.snapshots[0].id", lambda c, h: c["apps"][0]["snapshot"]["snapshots"][0].update(id=h)),
    ("contentInfo[0].uuid", lambda c, h: c["contentInfo"][0].update(uuid=h)),
    (
        "volumes[0].origin.downloadContentTreeID",
        lambda c, h: c["volumes"][0]["origin"].update(downloadContentTreeID=h),
    ),
]


def test_hostile_ids_through_the_cli_are_refused_naming_the_field(cli: Cli, tmp_path: Path) -> None:
    """Every hostile string in every id field: exit 2, the field named, nothing written anywhere."""
    marker = tmp_path / "pwned"
    configs = []
    for i, h in enumerate(hostile(marker)):
        field, put = ID_FIELDS[i % len(ID_FIELDS)]
        config = base_config()
        put(config, h)
        path = cli.root / f"bad-{i}.json"
        path.write_text(json.dumps(config))
        configs.append((field, path))
    before = tree(tmp_path.parent, tmp_path / "qemu-img-wrapper")
    for field, path in configs:
        out = cli("apply", str(path))
        assert out.returncode == 2, out.stderr
        assert f": {field}: " in out.stderr and out.stderr.count("\n") == 1, out.stderr
    assert not marker.exists()
    assert tree(tmp_path.parent, tmp_path / "qemu-img-wrapper") == before, "a refused config wrote something"
    assert calls(cli.qemu_log) == []  # type: ignore[attr-defined]


def test_hostile_snapshot_arguments_through_the_cli_are_refused_naming_them(cli: Cli, tmp_path: Path) -> None:
    (cli.root / "content.qcow2").write_bytes(b"\0" * 65536)
    config = base_config()
    config["contentInfo"][0]["iformat"] = "RAW"
    (cli.root / "ok.json").write_text(json.dumps(config))
    assert cli("apply", str(cli.root / "ok.json")).returncode == 0
    marker = tmp_path / "pwned"
    before = tree(tmp_path.parent, cli.root / "persist", tmp_path / "qemu-img-wrapper")
    commands = [
        (["snapshot", "create", APP, "--id"], "--id"),
        (["snapshot", "rollback", APP, "--"], "SNAPSHOT_ID"),
        (["snapshot", "delete", APP, "--"], "SNAPSHOT_ID"),
    ]
    for i, h in enumerate(hostile(marker)):
        if "\x00" in h:
            continue  # an argv cannot carry a NUL
        args, field = commands[i % len(commands)]
        out = cli(*args, h)
        assert out.returncode == 2, (args, h, out.stderr)
        assert f"error: {field}: " in out.stderr, out.stderr
        if i % 3 == 0:  # APP itself
            app_arg = cli("status", "--", h)
            assert app_arg.returncode == 2 and "APP: " in app_arg.stderr, app_arg.stderr
    assert not marker.exists()
    assert tree(tmp_path.parent, cli.root / "persist", tmp_path / "qemu-img-wrapper") == before
    assert [s["id"] for s in cli.status()["apps"][0]["snapshots"]] == [SNAP]


def test_hostile_names_and_content_urls_through_the_cli(cli: Cli, tmp_path: Path) -> None:
    """Display names and content file names from the hostile list, one app each,
    through create, rollback and delete: names kept verbatim, nothing outside the
    persist folder, no shell, no qemu-img option made of a name."""
    marker = tmp_path / "pwned"
    strings = [h for h in hostile(marker) if len(h.encode()) <= 255]  # longer: see the test below
    content = cli.root / "content"
    content.mkdir()
    apps, volumes, trees = [], [], []
    for i, h in enumerate(strings):
        app, vol, vol2, tree_id = (str(uuid.uuid4()) for _ in range(4))
        fname = h.replace("/", "_").replace("\x00", "_")
        if fname in (".", ".."):
            fname += "_"
        image = content / f"{fname}"
        image.write_bytes(bytes([i]) * 65536)
        url = image.as_uri() if i % 2 else f"content/{fname}"  # file:// and relative
        apps.append(
            {
                "uuidandversion": {"uuid": app, "version": "1"},
                "displayname": h,
                "activate": True,
                "volumeRefList": [{"uuid": vol}, {"uuid": vol2}],
                "snapshot": {"maxSnapshots": 3, "snapshots": []},
            }
        )
        volumes += [
            {
                "uuid": vol,
                "displayName": h,
                "maxsizebytes": "1048576",
                "origin": {"type": "VCOT_DOWNLOAD", "downloadContentTreeID": tree_id},
            },
            {"uuid": vol2, "displayName": h, "maxsizebytes": "1048576", "origin": {"type": "VCOT_BLANK"}},
        ]
        trees.append({"uuid": tree_id, "URL": url, "iformat": "RAW", "displayName": h})
    snaps = [str(uuid.uuid4()) for _ in apps]

    def config(step: str) -> Path:
        data = {"apps": copy.deepcopy(apps), "volumes": volumes, "contentInfo": trees}
        for a, s in zip(data["apps"], snaps, strict=True):
            if step != "delete":
                a["snapshot"]["snapshots"] = [{"id": s, "type": 2}]
            if step in ("rollback", "delete"):
                a["snapshot"]["rollbackCmd"] = {"counter": 1}
                a["snapshot"]["activeSnapshot"] = s
        path = cli.root / f"{step}.json"
        path.write_text(json.dumps(data))
        return path

    paths = [config(step) for step in ("create", "snapshot", "rollback", "delete")]
    before = tree(tmp_path.parent, cli.root / "persist", tmp_path / "qemu-img-wrapper")
    for path in paths:
        out = cli("apply", str(path), "--json")
        assert out.returncode == 0, out.stderr[-3000:]
        reports = json.loads(out.stdout)
        assert sorted(a["AppName"] for a in reports["apps"]) == sorted(strings)
        assert all(not a["appErr"] for a in reports["apps"]), reports
    status = cli.status()
    assert sorted(a["AppName"] for a in status["apps"]) == sorted(strings)
    assert sorted(v["displayName"] for v in status["volumes"]) == sorted(strings * 2)
    assert all(a.get("snapshots", []) == [] for a in status["apps"])
    assert not marker.exists(), "a name was run by a shell"
    assert tree(tmp_path.parent, cli.root / "persist", tmp_path / "qemu-img-wrapper") == before, (
        "a file appeared outside persist"
    )
    persist = cli.root / "persist"
    assert all(persist in Path(v["location"]).parents for v in volume_rows(status))
    assert assert_no_hostile_option(cli.qemu_log, strings) > 0  # type: ignore[attr-defined]


def test_content_url_longer_than_a_file_name_is_refused_naming_the_field(cli: Cli) -> None:
    config = base_config()
    config["contentInfo"][0]["URL"] = "content-" + "x" * 300 + ".qcow2"
    path = cli.root / "long.json"
    path.write_text(json.dumps(config))
    out = cli("apply", str(path), "--json")
    assert "Traceback" not in out.stderr, out.stderr[-2000:]
    assert out.returncode in (1, 2)
    assert "contentInfo[0].URL" in out.stdout + out.stderr


# ---------------------------------------------------------------- straight into each backend

BACKENDS = ["qcow2", "purgeable"]


@pytest.fixture(params=BACKENDS)
def harness(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    from evesnap_core.testing.conformance.plugin import harness_for

    if request.param not in load_backends(tmp_path / "probe").backends:
        pytest.skip(f"evesnap-{request.param} is not installed")
    made = harness_for(request.param)(tmp_path / "work")
    try:
        yield made
    finally:
        made.cleanup()


def test_hostile_snapshot_ids_straight_into_each_backend(
    harness: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every hostile string as a snapshot id on a real volume: taken, listed,
    rolled back to and deleted, or refused with InvalidName; nothing outside
    the persist folder; qemu-img never sees one as an option."""
    from evesnap_core import Capability

    bindir, log = qemu_img_wrapper(tmp_path)
    monkeypatch.setenv("PATH", f"{bindir}:{os.environ['PATH']}")
    marker = tmp_path / "pwned"
    backend = harness.load()
    volume = backend.create_volume(harness.volume_spec(size=1024 * 1024))
    harness.write(volume, 0, b"\xa1" * 4096)
    before = tree(tmp_path.parent, harness.persist, tmp_path / "qemu-img-wrapper")
    strings = hostile(marker)
    taken, refused = [], []
    for h in strings:
        try:
            info = backend.snapshot(volume, h)
        except InvalidName as exc:
            refused.append(h)
            assert str(exc), "a refusal says why"
            continue
        taken.append(h)
        assert info.snapshot_id == h
        assert h in {i.snapshot_id for i in backend.list_snapshots(volume)}
        harness.write(volume, 0, b"\xb2" * 4096)
        if backend.has(Capability.ROLLBACK_ANY) or backend.has(Capability.ROLLBACK_LATEST):
            backend.rollback(volume, h)
            assert harness.read(volume, 0, 4096) == b"\xa1" * 4096
    for h in taken:
        backend.delete_snapshot(volume, h)
    assert {i.snapshot_id for i in backend.list_snapshots(volume)} == set()
    backend.destroy_volume(volume)
    assert not marker.exists(), "a snapshot id was run by a shell"
    assert tree(tmp_path.parent, harness.persist, tmp_path / "qemu-img-wrapper") == before, (
        "a file appeared outside persist"
    )
    assert_no_hostile_option(log, strings)
    assert len(taken) >= len(strings) - 2, f"refused: {refused}"


# ================================================================ never a shell

SOURCES = [
    REPO / "evesnap_core" / "src",
    *sorted((REPO / "plugins").glob("*/src")),
    *sorted((REPO / "contrib").glob("*/src")),
    REPO / "contrib" / "demo",
]
SHELL_CALLS = {"system", "popen", "getoutput", "getstatusoutput", "create_subprocess_shell", "spawnlp"}


def test_no_shell_anywhere_in_the_shipped_source() -> None:
    """No call with shell=True, and no os.system / os.popen / subprocess.getoutput."""
    found, files = [], 0
    for root in SOURCES:
        for path in root.rglob("*.py") if root.exists() else []:
            files += 1
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if not isinstance(node, ast.Call):
                    continue
                for kw in node.keywords:
                    if kw.arg == "shell" and not (
                        isinstance(kw.value, ast.Constant) and kw.value.value in (False, None)
                    ):
                        found.append(f"{path}:{node.lineno}: shell={ast.unparse(kw.value)}")
                func = node.func
                if isinstance(func, ast.Attribute) and func.attr in SHELL_CALLS:
                    found.append(f"{path}:{node.lineno}: {ast.unparse(func)}")
    assert files > 50, "the source folders moved: this test checks nothing"
    assert not found, "\n".join(found)
