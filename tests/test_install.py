"""The repository root is the ``rdengine`` package: from it, no top-level name of ours may hide an
installed distribution (``python -m ...``, ``python -c`` and notebooks put the working directory first
on ``sys.path``)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

import rdengine

ROOT = Path(rdengine.__file__).resolve().parent
OUR_TOP_LEVEL = sorted({p.name for p in ROOT.iterdir() if p.is_dir() and not p.name.startswith((".", "_"))}
                       | {p.stem for p in ROOT.glob("*.py") if p.stem != "__init__"})


def requirement_closure(name: str) -> set[str]:
    """Installed distributions ``name`` needs, transitively (extras only where installed)."""
    seen: set[str] = set()
    todo = [name]
    while todo:
        dist_name = re.split(r"[\s\[<>=!~;(]", todo.pop(), maxsplit=1)[0].lower().replace("_", "-")
        if dist_name in seen:
            continue
        try:
            dist = metadata.distribution(dist_name)
        except metadata.PackageNotFoundError:
            continue
        seen.add(dist_name)
        for requirement in dist.requires or []:
            if "extra ==" not in requirement:
                todo.append(requirement)
    return seen


def top_level_modules(dist_names: set[str]) -> dict[str, str]:
    """Top-level importable name -> distribution, for ``dist_names``."""
    names = {}
    for module, dists in metadata.packages_distributions().items():
        for dist in dists:
            if dist.lower().replace("_", "-") in dist_names and module.isidentifier() and not module.startswith("_"):
                names[module] = dist
    return names


def find_from_repo_root(modules: list[str]) -> dict[str, str | None]:
    """Where each module is found by a Python started in the repository root (``python -c``: the
    working directory first on ``sys.path``), without running the modules."""
    script = ("import importlib.util, json, sys\n"
              "out = {}\n"
              "for name in sys.argv[1:]:\n"
              "    spec = importlib.util.find_spec(name)\n"
              "    out[name] = None if spec is None else (spec.origin or list(spec.submodule_search_locations or []))\n"
              "print(json.dumps(out))\n")
    done = subprocess.run([sys.executable, "-c", script, *modules], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, check=True)
    return json.loads(done.stdout)


def in_repository(where: str | list[str] | None) -> bool:
    """Whether a module found at ``where`` (a file, or a namespace package's folders) lies in the clone."""
    places = [where] if isinstance(where, str) else where or []
    return any(Path(place).resolve().is_relative_to(ROOT.resolve()) for place in places)


def test_no_top_level_folder_of_ours_is_a_regular_package():
    """A folder without ``__init__.py`` is a namespace portion: any installed package of that name wins."""
    assert {"engine", "kernels", "storage", "benchmarks", "tests", "cli"} <= set(OUR_TOP_LEVEL)
    regular = [name for name in OUR_TOP_LEVEL if (ROOT / name / "__init__.py").exists()]
    assert regular == []


def test_every_dependency_is_found_as_itself_from_the_repository_root():
    dists = requirement_closure("rdengine") - {"rdengine"}
    assert {"torch", "diffusers", "transformers", "zarr"} <= dists
    modules = top_level_modules(dists)
    found = find_from_repo_root(sorted(modules))
    inside = {name: where for name, where in found.items() if in_repository(where)}
    assert inside == {}, f"names of ours hide installed modules: {inside}"
    clashes = {name: modules[name] for name in OUR_TOP_LEVEL if name in modules}
    for name in clashes:  # a clash is harmless only while the installed one is found first
        assert not in_repository(found[name])


@pytest.mark.skipif(not any(d.metadata["Name"] == "kernels" for d in metadata.distributions()),
                    reason="the registry package 'kernels' is not installed")
def test_kernels_and_the_diffusers_models_import_from_the_repository_root():
    """transformers (5.x) imports the registry package ``kernels``, whose name our folder shares."""
    script = ("import kernels, sys\n"
              "from diffusers import AutoencoderKL, UNet2DConditionModel\n"
              "from transformers import CLIPTextModel\n"
              "import rdengine.kernels.attention\n"
              "print(kernels.__file__)\n")
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert not in_repository(done.stdout.strip())
