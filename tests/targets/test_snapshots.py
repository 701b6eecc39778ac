"""Snapshots of every artifact of every example, and the properties all artifacts share.

Each snapshot under `__snapshots__/test_snapshots/` is the artifact file
itself, so a change to the output shows up as a reviewable diff of that
file. `pytest --snapshot-update` rewrites them; syrupy fails the run on a
snapshot that no test uses any more.
"""

from __future__ import annotations

import functools
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
from syrupy.assertion import SnapshotAssertion
from syrupy.extensions.single_file import SingleFileSnapshotExtension, WriteMode

from compiler.diagnostics import DiagnosticSink
from compiler.loader import load_project
from compiler.version import __version__
from runtime.commands.compile import build_artifacts
from targets.render import ARTIFACTS
from tests.conftest import EXAMPLES

_SECRET_REFERENCE = re.compile(r'secret\("([^"]+)"\)')
_DIGEST = re.compile(r"sha256:([0-9a-f]{64})")


class _TextSnapshot(SingleFileSnapshotExtension):
    _write_mode = WriteMode.TEXT


class YmlSnapshot(_TextSnapshot):
    file_extension = "yml"


class YamlSnapshot(_TextSnapshot):
    file_extension = "yaml"


class JsonSnapshot(_TextSnapshot):
    file_extension = "json"


_EXTENSIONS = {"yml": YmlSnapshot, "yaml": YamlSnapshot, "json": JsonSnapshot}


def _example_folders() -> list[Path]:
    return sorted(path for path in EXAMPLES.iterdir() if path.is_dir() and any(path.glob("*.irules")))


def _environments(folder: Path) -> list[str | None]:
    return [None, *load_project(folder, None, DiagnosticSink(), with_stdlib=False).environment_names]


def _builds() -> list[Any]:
    return [
        pytest.param(folder, environment, id=f"{folder.name}-{environment or 'base'}")
        for folder in _example_folders()
        for environment in _environments(folder)
    ]


@functools.cache
def compiled(folder: Path, environment: str | None) -> dict[str, str]:
    return build_artifacts(folder, environment)


def _artifact_cases() -> list[Any]:
    return [
        pytest.param(folder, environment, name, id=f"{folder.name}-{environment or 'base'}-{name.rsplit('.', 1)[0]}")
        for folder in _example_folders()
        for environment in _environments(folder)
        for name in ARTIFACTS
    ]


@pytest.mark.parametrize(("folder", "environment", "name"), _artifact_cases())
def test_artifact(folder: Path, environment: str | None, name: str, snapshot: SnapshotAssertion) -> None:
    artifacts = compiled(folder, environment)
    if name in ("slack-manifest.yaml", "slack-blocks.json") and name not in artifacts:
        return  # the example declares no Slack app, so there is nothing to snapshot
    extension = _EXTENSIONS[name.rsplit(".", 1)[1]]
    assert artifacts[name] == snapshot(extension_class=extension)


# ---------------------------------------------------------------- header


@pytest.mark.parametrize(("folder", "environment"), _builds())
def test_artifact_headers_name_version_and_digest(folder: Path, environment: str | None) -> None:
    artifacts = compiled(folder, environment)
    digests = set()
    for name, text in artifacts.items():
        head = "\n".join(text.splitlines()[:5])
        assert __version__ in head, name
        found = _DIGEST.search(head) or re.search(r'"source_digest": "([0-9a-f]{64})"', head)
        assert found is not None, name
        digests.add(found.group(1))
    assert len(digests) == 1


def test_digest_changes_with_sources(tmp_path: Path) -> None:
    folder = EXAMPLES / "production"
    copy = tmp_path / "production"
    shutil.copytree(folder, copy)
    routes = copy / "routes.irules"
    routes.write_text(routes.read_text(encoding="utf-8") + "\n# a comment changes the digest\n", encoding="utf-8")
    original = _DIGEST.search(compiled(folder, "production")["alertmanager.yml"])
    changed = _DIGEST.search(build_artifacts(copy, "production")["alertmanager.yml"])
    assert original is not None
    assert changed is not None
    assert original.group(1) != changed.group(1)


# ---------------------------------------------------------------- determinism


def _copy_files(folder: Path, target: Path, names: list[str], rename: dict[str, str] | None = None) -> Path:
    target.mkdir()
    for name in names:
        shutil.copyfile(folder / name, target / (rename or {}).get(name, name))
    return target


@pytest.mark.slow
@pytest.mark.parametrize(("folder", "environment"), _builds())
def test_copy_order_keeps_artifacts(folder: Path, environment: str | None, tmp_path: Path) -> None:
    names = sorted(path.name for path in folder.glob("*.irules"))
    forward = _copy_files(folder, tmp_path / "forward", names)
    backward = _copy_files(folder, tmp_path / "backward", list(reversed(names)))
    first, second = build_artifacts(forward, environment), build_artifacts(backward, environment)
    assert first == second
    assert first == compiled(folder, environment)


@pytest.mark.slow
@pytest.mark.parametrize(("folder", "environment"), _builds())
def test_load_order_keeps_artifacts(folder: Path, environment: str | None, tmp_path: Path) -> None:
    # Prefixes reverse the sorted order in which the loader reads the files. Only the
    # file names may differ in the output, and with them the digest over names and contents.
    names = sorted(path.name for path in folder.glob("*.irules"))
    rename = {name: f"{index:02d}-{name}" for index, name in enumerate(reversed(names))}
    renamed = build_artifacts(_copy_files(folder, tmp_path / "renamed", names, rename), environment)
    original = compiled(folder, environment)
    assert set(renamed) == set(original)
    for name, text in renamed.items():
        for original_name, new_name in rename.items():
            text = text.replace(new_name, original_name)
        assert _normalise_digest(text) == _normalise_digest(original[name]), name


def _normalise_digest(text: str) -> str:
    text = _DIGEST.sub("sha256:DIGEST", text)
    return re.sub(r'"source_digest": "[0-9a-f]{64}"', '"source_digest": "DIGEST"', text)


# ---------------------------------------------------------------- secrets


def _secret_names(folder: Path) -> set[str]:
    return {name for path in folder.glob("*.irules") for name in _SECRET_REFERENCE.findall(path.read_text(encoding="utf-8"))}


def _with_secrets_dir(folder: Path, target: Path, secrets_dir: Path) -> Path:
    """Copy the example to `target` with `secrets_dir` pointing at `secrets_dir`."""
    shutil.copytree(folder, target)
    replaced = False
    for path in target.glob("*.irules"):
        text = path.read_text(encoding="utf-8")
        changed = re.sub(r'secrets_dir "[^"]*"', f'secrets_dir "{secrets_dir}"', text)
        replaced = replaced or changed != text
        path.write_text(changed, encoding="utf-8")
    if not replaced:
        (target / "zz-secrets-dir.irules").write_text(f'settings {{\n  secrets_dir "{secrets_dir}"\n}}\n', encoding="utf-8")
    return target


@pytest.mark.slow
@pytest.mark.parametrize(("folder", "environment"), _builds())
def test_artifacts_contain_no_secret_values(
    folder: Path, environment: str | None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secrets_dir = tmp_path / "secrets"
    secrets_dir.mkdir()
    values = {}
    for index, name in enumerate(sorted(_secret_names(folder))):
        value = f"xoxb-{index:012d}-Zq8SECRETvalue-{name.lower()}"
        values[name] = value
        monkeypatch.setenv(name, value)
        (secrets_dir / name).write_text(value, encoding="utf-8")
    assert values, f"{folder.name} references no secrets, so this test proves nothing for it"

    artifacts = build_artifacts(_with_secrets_dir(folder, tmp_path / folder.name, secrets_dir), environment)
    for artifact, text in artifacts.items():
        for name, value in values.items():
            assert value not in text, f"{artifact} contains the value of secret {name}"
    assert f"{secrets_dir}/" in artifacts["alertmanager.yml"]
