"""The other rule version of a backtest: a folder or file as it is, or the rules at a git ref written to a temporary folder.

Git runs with an argument list and no shell. A ref that starts with `-` is
rejected, so it cannot be read as an option.
"""

from __future__ import annotations

import io
import subprocess
import tarfile
from pathlib import Path

GIT_TIMEOUT_S = 60.0


class VersionError(Exception):
    """The other version cannot be found: neither a folder or file nor a git ref of the repository that contains the rules."""


def resolve_version(against: str, rules: Path, scratch: Path) -> Path:
    """Return the path of the rules named by `against`, as `rules` is laid out there.

    A path that exists is used as it is. Otherwise `against` is a git ref of the
    repository that contains `rules`. The rules at that ref are then written below
    `scratch`, and the returned path lies there.

    Raises:
        VersionError: `against` is no existing path and no commit of that repository.
    """
    existing = Path(against)
    if existing.exists():
        return existing
    if against.startswith("-") or not against.strip():
        raise VersionError(f"--against {against!r} is neither an existing path nor a git ref")
    root = _repository_root(rules, against)
    relative = rules.resolve().relative_to(root)
    _verify_ref(root, against)
    archive = _git(root, "archive", "--format=tar", against, "--", str(relative) if relative.parts else ".")
    if archive.returncode != 0:
        problem = archive.stderr.decode("utf-8", "replace").strip()
        raise VersionError(f"cannot read {relative} at git ref {against!r}: {problem}")
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as bundle:
        bundle.extractall(scratch, filter="data")
    extracted = scratch / relative
    if not extracted.exists():
        raise VersionError(f"git ref {against!r} has no {relative}")
    return extracted


def _repository_root(rules: Path, against: str) -> Path:
    folder = rules.resolve() if rules.is_dir() else rules.resolve().parent
    found = _git(folder, "rev-parse", "--show-toplevel")
    if found.returncode != 0:
        raise VersionError(
            f"--against {against!r} is not an existing path, and it cannot be a git ref because {rules} is not in a git repository"
        )
    return Path(found.stdout.decode().strip()).resolve()


def _verify_ref(root: Path, against: str) -> None:
    found = _git(root, "rev-parse", "--verify", "--quiet", "--end-of-options", f"{against}^{{commit}}")
    if found.returncode != 0:
        raise VersionError(f"--against {against!r} is neither an existing path nor a commit of the git repository at {root}")


def _git(folder: Path, *arguments: str) -> subprocess.CompletedProcess[bytes]:
    try:
        return subprocess.run(["git", "-C", str(folder), *arguments], capture_output=True, timeout=GIT_TIMEOUT_S, check=False)
    except FileNotFoundError as error:
        raise VersionError("git is not installed, so --against can name only a folder or a file") from error
    except subprocess.TimeoutExpired as error:
        raise VersionError(f"git {arguments[0]} timed out after {GIT_TIMEOUT_S:.0f} s in {folder}") from error
