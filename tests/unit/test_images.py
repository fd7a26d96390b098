"""The Dockerfiles, checked without a Docker engine: every COPY source exists and is not excluded
from the build context, the entrypoint is one of the package's console scripts, dependencies are
pinned by constraints.txt, the final stage runs as the uid the chart and the serving pods expect,
and the OCI labels are there."""

from __future__ import annotations

import fnmatch
import importlib
import json
import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from localcluster import images
from modelrollout.workloads import CONTAINER_SECURITY
from tests.conftest import ROOT

pytestmark = pytest.mark.unit

DOCKERFILES = {"operator": ROOT / "operator" / "Dockerfile", "modelserver": ROOT / "serving" / "Dockerfile"}
# Each image installs its own distribution and the metrics contract (docs/install.md, "Images and distributions").
PROJECTS = {"operator": ["serving/contract", "operator"], "modelserver": ["serving/contract", "serving"]}
OCI_LABELS = ("title", "description", "source", "licenses", "version", "revision", "created")


@dataclass
class Stage:
    base: str
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [arg for kw, arg in self.instructions if kw == keyword]


def parse(path: Path) -> list[Stage]:
    """Dockerfile -> stages of (KEYWORD, argument) with continuations joined and comments dropped.

    >>> [s.base for s in parse(ROOT / "operator" / "Dockerfile")]
    ['${PYTHON_IMAGE}', '${PYTHON_IMAGE}']
    """
    text = re.sub(r"\\\n\s*", " ", "\n".join(ln for ln in path.read_text().splitlines()
                                              if not ln.lstrip().startswith("#")))
    stages: list[Stage] = []
    for line in filter(None, (ln.strip() for ln in text.splitlines())):
        keyword, _, arg = line.partition(" ")
        if keyword.upper() == "FROM":
            stages.append(Stage(arg.split()[0]))
        elif stages:
            stages[-1].instructions.append((keyword.upper(), arg.strip()))
    return stages


def copy_sources(arg: str) -> list[str]:
    parts = [p for p in arg.split() if not p.startswith("--")]
    return parts[:-1]


def is_ignored(path: str, patterns: list[str]) -> bool:
    return any(fnmatch.fnmatch(path, p.rstrip("/")) or path.startswith(p.rstrip("/") + "/") for p in patterns)


@pytest.mark.parametrize("name", DOCKERFILES)
def test_every_copied_file_exists_and_is_in_the_build_context(name: str) -> None:
    ignored = [ln.strip() for ln in (ROOT / ".dockerignore").read_text().splitlines()
               if ln.strip() and not ln.startswith("#")]
    copied = [src for stage in parse(DOCKERFILES[name]) for arg in stage.all("COPY")
              if "--from=" not in arg for src in copy_sources(arg)]
    assert copied
    for src in copied:
        assert (ROOT / src).exists(), f"{name}: COPY {src} - no such file in the repository"
        assert not is_ignored(src, ignored), f"{name}: COPY {src} is excluded by .dockerignore"
    # pip installs the image's own projects, each copied whole with the sources its pyproject.toml names.
    assert installed_projects(DOCKERFILES[name]) == PROJECTS[name]
    for project in PROJECTS[name]:
        assert is_copied(project, copied) and (ROOT / project / "pyproject.toml").exists()
        setuptools = tomllib.loads((ROOT / project / "pyproject.toml").read_text())["tool"]["setuptools"]
        for module in setuptools.get("py-modules", []):
            package, _, leaf = module.rpartition(".")
            source = Path(project, setuptools["package-dir"][package], leaf + ".py")
            init = source.with_name("__init__.py")
            assert all(is_copied(os.path.normpath(f), copied) for f in (source, init)), f"{name}: COPY {source}"


def is_copied(path: str, copied: list[str]) -> bool:
    return any(path == c.rstrip("/") or path.startswith(c.rstrip("/") + "/") for c in copied)


def installed_projects(dockerfile: Path) -> list[str]:
    """The local projects the build stage's `pip install` names, as repository paths."""
    [install] = [a for s in parse(dockerfile) for a in s.all("RUN") if "pip install" in a]
    return [w.removeprefix("./") for w in install.split("&&")[0].split() if w.startswith("./")]


@pytest.mark.parametrize(("name", "script"), [("operator", "modelrollout-operator"), ("modelserver", "modelserver")])
def test_entrypoint_is_a_console_script_of_the_package(name: str, script: str) -> None:
    final = parse(DOCKERFILES[name])[-1]
    [entrypoint] = final.all("ENTRYPOINT")
    assert json.loads(entrypoint) == [script]
    scripts = tomllib.loads((ROOT / PROJECTS[name][-1] / "pyproject.toml").read_text())["project"]["scripts"]
    module, _, function = scripts[script].partition(":")
    assert callable(getattr(importlib.import_module(module), function))
    # The local cluster stands in for the same image with `python -m <package>` of that script.
    local = images.resolve(f"ghcr.io/modelrollout/{name}:test").entrypoint
    assert local[1:] == ("-m", module.split(".")[0])


@pytest.mark.parametrize("name", DOCKERFILES)
def test_multi_stage_slim_pinned_and_labelled(name: str) -> None:
    text = DOCKERFILES[name].read_text()
    stages = parse(DOCKERFILES[name])
    assert len(stages) >= 2, "multi-stage: build tools stay out of the final image"
    assert re.search(r"ARG PYTHON_IMAGE=python:3\.11-slim", text)
    installs = [a for s in stages for a in s.all("RUN") if "pip install" in a]
    assert installs and all("-c constraints.txt" in a for a in installs), "pin dependencies with constraints.txt"
    labels = " ".join(stages[-1].all("LABEL"))
    for label in OCI_LABELS:
        assert f"org.opencontainers.image.{label}=" in labels, f"{name}: missing OCI label {label}"
    assert not stages[-1].all("COPY") or all("--from=build" in a for a in stages[-1].all("COPY"))


def test_images_run_as_the_uid_the_pods_are_given() -> None:
    values = yaml.safe_load((ROOT / "charts" / "modelrollout" / "values.yaml").read_text())
    expected = {"operator": values["podSecurityContext"]["runAsUser"],
                "modelserver": CONTAINER_SECURITY["runAsUser"]}
    for name, path in DOCKERFILES.items():
        [user] = parse(path)[-1].all("USER")
        uid = int(user.split(":")[0])
        assert uid != 0 and uid == expected[name], f"{name}: USER {user}, pods run as {expected[name]}"
