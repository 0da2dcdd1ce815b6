"""The README's install commands install this version of antflow, with extras that exist.

The package index serves the published antflow 0.10.0 under the same name, so every
``pip install`` of the README's Install section must install from the clone (``.``) or from
the wheel that ``make dist`` writes into ``dist/``. The last test runs each command, in the
README's order, in a fresh virtual environment and checks which antflow it got.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from email.parser import Parser
from pathlib import Path

import pytest
from _helpers import dist_wheel, venv_without_antflow

import antflow

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10 (pytest depends on tomli there)
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
VERSION = PROJECT["version"]
EXTRAS = set(PROJECT["optional-dependencies"])
# Extras for working on antflow (make test, make bench, make lint), not for its users.
DEVELOPMENT_EXTRAS = {"test", "dev", "bench"}
SHELL_FENCES = {"sh", "console", "bash", "shell"}

# Which antflow a Python in a fresh environment imports, from a folder outside the repo.
WHICH = "import antflow, importlib.metadata as m; print(antflow.__version__, m.version('antflow'))"


@dataclass(frozen=True)
class Install:
    """One target of a ``pip install`` line: a path and the extras in brackets after it."""

    line: str
    options: tuple[str, ...]
    path: str
    extras: frozenset[str]

    @property
    def from_wheel(self) -> bool:
        return self.path.endswith(".whl")


def install_section() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    match = re.search(r"^## Install\n(.*?)(?=^## )", text, re.MULTILINE | re.DOTALL)
    assert match, "README.md has no '## Install' section followed by another section"
    return match.group(1)


def shell_lines() -> list[str]:
    """The lines of the Install section's shell code blocks."""
    lines: list[str] = []
    fence: str | None = None
    for line in install_section().splitlines():
        if line.startswith("```"):
            fence = line[3:].strip() if fence is None else None
        elif fence in SHELL_FENCES and line.strip():
            lines.append(line)
    return lines


def installs() -> list[Install]:
    found = []
    for line in shell_lines():
        words = shlex.split(line, comments=True)
        if words[:2] != ["pip", "install"]:
            continue
        options = tuple(word for word in words[2:] if word.startswith("-"))
        targets = [word for word in words[2:] if not word.startswith("-")]
        assert targets, f"nothing to install in {line!r}"
        for target in targets:
            match = re.fullmatch(r"(?P<path>[^\[\]]+)(?:\[(?P<extras>[^\]]*)\])?", target)
            assert match, f"cannot read the target {target!r} of {line!r}"
            extras = frozenset(e.strip() for e in (match["extras"] or "").split(",") if e.strip())
            found.append(Install(line, options, match["path"], extras))
    return found


def version_checks() -> list[tuple[str, str]]:
    """``python -c`` lines of the section, each with the output its comment promises."""
    checks = []
    for line in shell_lines():
        if line.startswith("python -c"):
            command, _, promised = line.rpartition("#")
            words = shlex.split(command)
            assert words[:2] == ["python", "-c"] and len(words) == 3, line
            checks.append((words[2], promised.strip()))
    return checks


def test_every_readme_install_installs_from_the_clone_or_the_dist_wheel_never_the_index() -> None:
    found = installs()
    assert {i.path for i in found if not i.from_wheel} == {"."}, [i.line for i in found]
    wheels = {i.path for i in found if i.from_wheel}
    assert wheels == {f"dist/antflow-{VERSION}-py3-none-any.whl"}, [i.line for i in found]


def test_the_readme_names_exactly_the_extras_pyproject_defines_for_users() -> None:
    for install in installs():
        assert install.extras <= EXTRAS, f"{install.line}: an extra pyproject.toml lacks"
    named = set().union(*(i.extras for i in installs()))
    assert named == EXTRAS - DEVELOPMENT_EXTRAS


def test_the_readme_promises_the_version_pyproject_and_the_package_declare() -> None:
    checks = version_checks()
    assert checks, "the Install section shows no way to check the installed version"
    assert all(promised == VERSION for _, promised in checks)
    assert antflow.__version__ == VERSION


def test_make_dist_writes_its_wheel_into_the_dist_folder_the_readme_installs_from() -> None:
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    recipe = re.search(r"^dist:.*\n((?:\t.*\n)+)", makefile, re.MULTILINE)
    assert recipe, "the Makefile has no dist target"
    assert re.search(r"-m build --outdir dist\b", recipe.group(1)), recipe.group(1)


def test_the_dist_wheel_declares_this_version_and_the_extras_the_readme_names(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    wheel = dist_wheel(tmp_path_factory)
    with zipfile.ZipFile(wheel) as archive:
        metadata = Parser().parsestr(
            archive.read(f"antflow-{VERSION}.dist-info/METADATA").decode("utf-8")
        )
    assert metadata["Version"] == VERSION
    provided = set(metadata.get_all("Provides-Extra") or [])
    assert set().union(*(i.extras for i in installs())) <= provided


@pytest.mark.timeout(300)
def test_each_readme_install_command_installs_this_version_into_a_fresh_venv(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    wheel = dist_wheel(tmp_path_factory)
    python = venv_without_antflow(tmp_path / "venv")
    outside = tmp_path / "elsewhere"  # the working folder: the repo's source must not shadow
    outside.mkdir()

    def run(*args: str | Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [python, *args], cwd=outside, capture_output=True, text=True, timeout=120
        )

    absent = run("-c", "import antflow")
    assert absent.returncode != 0 and "No module named 'antflow'" in absent.stderr

    for install in installs():
        removed = run("-m", "pip", "uninstall", "--yes", "--quiet", "antflow")
        assert removed.returncode == 0, removed.stderr  # each command starts from no antflow
        # "." is the clone, and dist/ holds what make dist built; any other target runs as
        # written (pip install antflow would fetch 0.10.0, and fail the version check).
        path = {".": ROOT, f"dist/{wheel.name}": wheel}.get(install.path, install.path)
        target = f"{path}[{','.join(sorted(install.extras))}]" if install.extras else str(path)
        # From the wheel, nothing may come from an index: every requirement of the extras must
        # already be met. From the clone, pip needs the index for the build backend only.
        offline = ("--no-index",) if install.from_wheel else ()
        done = run("-m", "pip", "install", *install.options, *offline, target)
        assert done.returncode == 0, f"{install.line}\n{done.stdout}\n{done.stderr}"
        assert "does not provide the extra" not in done.stderr, install.line
        which = run("-c", WHICH + "; print(antflow.__file__)")
        assert which.returncode == 0, f"{install.line}\n{which.stderr}"
        versions, location = which.stdout.splitlines()
        assert versions == f"{VERSION} {VERSION}", install.line
        assert Path(location).is_relative_to(tmp_path / "venv"), (install.line, location)

    for code, promised in version_checks():
        shown = run("-c", code)
        assert shown.returncode == 0, shown.stderr
        assert shown.stdout.strip() == promised
