"""Comfy Registry readiness, checked with comfy-cli's own code (PyPI
`comfy-cli`): what `comfy node validate` / `comfy node publish` validate
(extract_node_configuration, the ruff security rules) and the zip that
`comfy node pack` / `publish` upload (zip_files: git-tracked files minus
.comfyignore, plus [tool.comfy] includes). Nothing is published.
Needs PyPI for the venv (comfy-cli without its unrelated heavy dependencies)."""
import os
import struct
import subprocess
import sys
import zipfile

import pytest

from test_install import pack_copy
from test_integration import ROOT

# What comfy_cli.registry.config_parser and comfy_cli.file_utils import, and ruff for the security rules.
COMFY_CLI_IMPORTS = ["tomlkit>=0.13,<0.16", "typer>=0.12.5", "PyYAML", "pathspec", "ruff", "rich", "requests"]


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    """(python with comfy-cli, a git repo of the pack's tracked files, the config comfy-cli extracted, the zip)."""
    base = tmp_path_factory.mktemp("registry")
    subprocess.run([sys.executable, "-m", "venv", str(base / "venv")], check=True)
    py = str(base / "venv" / "bin" / "python")
    pip = [py, "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    subprocess.run(pip + COMFY_CLI_IMPORTS, check=True)
    subprocess.run(pip + ["--no-deps", "comfy-cli"], check=True)
    repo = pack_copy(base / "comfy-credits")
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-C", str(repo)]
    subprocess.run(git + ["init", "-q"], check=True)
    subprocess.run(git + ["add", "-A"], check=True)
    subprocess.run(git + ["commit", "-q", "-m", "snapshot"], check=True)
    code = r"""
import json, subprocess, sys
from comfy_cli.registry.config_parser import extract_node_configuration
from comfy_cli.file_utils import zip_files
c = extract_node_configuration()
assert c is not None, "comfy-cli could not read pyproject.toml"
# comfy_cli/command/custom_nodes/command.py validate_node_for_publishing: the same ruff call
r = subprocess.run([sys.executable, "-m", "ruff", "check", ".", "-q", "--select", "S102,S307,E702", "--exit-zero"],
                   capture_output=True, text=True)
zip_files("node.zip", includes=c.tool_comfy.includes or [])
print(json.dumps({"name": c.project.name, "version": c.project.version, "description": c.project.description,
                  "license": [c.project.license.file, c.project.license.text], "repository": c.project.urls.repository,
                  "publisher": c.tool_comfy.publisher_id, "display": c.tool_comfy.display_name,
                  "icon": c.tool_comfy.icon, "includes": c.tool_comfy.includes,
                  "os": c.project.supported_os, "ruff": r.stdout}))
"""
    out = subprocess.run([py, "-c", code], cwd=repo, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    import json
    return repo, json.loads(out.stdout.strip().splitlines()[-1]), repo / "node.zip"


def test_pyproject_passes_comfy_cli_validation(registry):
    repo, c, _ = registry
    assert c["name"] == "comfy-credits" and c["version"] == "0.1.0" and c["description"]
    assert c["license"][0] == "LICENSE" and (repo / "LICENSE").read_text().startswith("MIT License")
    assert c["repository"].startswith("https://github.com/")
    assert c["publisher"] == "comfy-credits" and c["display"] == "Comfy Credits"
    assert c["ruff"] == "", c["ruff"]  # no exec/eval/multi-statement warnings
    assert c["includes"] == []


def test_icon_exists_and_fits_the_registry(registry):
    _, c, _ = registry
    prefix = "https://raw.githubusercontent.com/comfy-credits/comfy-credits/main/"
    assert c["icon"].startswith(prefix)
    with open(os.path.join(ROOT, c["icon"][len(prefix):]), "rb") as f:
        head = f.read(24)
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    w, h = struct.unpack(">II", head[16:24])
    assert 0 < w <= 800 and 0 < h <= 400  # Registry: Icon at most 800x400


def test_registry_zip_has_what_manager_needs_and_no_tests(registry):
    _, _, z = registry
    names = zipfile.ZipFile(z).namelist()
    for need in ("__init__.py", "prestartup_script.py", "requirements.txt", "install.py", "setup.py", "LICENSE",
                 "pyproject.toml", "comfy_credits_ext/__init__.py", "comfy_credits_ext/native_help.py",
                 "packaging/native_build.py", "src/py_module.c", "web/comfy_credits.js"):
        assert need in names, need
    assert not [n for n in names if n.startswith(("tests/", "bench/", "scripts/", ".ci/", ".github/"))]
    assert not [n for n in names if n.endswith((".so", ".pyd", ".o"))]  # nothing built: the module comes from PyPI
