"""The shared layer, built the way CDK's local bundling builds it (pip for arm64/cp313, no Docker)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
from leadflow_infra.layer import DEV_ONLY, ROOT, build, content_hash

from leadflow import precompiled
from leadflow.journeys.model import read_journey_files
from leadflow.leads.model import LeadModel, read_lead_file
from leadflow.local.system import AWS_ENV, settings_env
from leadflow.segments.definitions import read_segment_files


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("layer")
    build(out)
    return out


def test_layer_contains_the_package_deps_and_content_for_lambda(bundle: Path) -> None:
    tmp_path = bundle
    python = tmp_path / "python"
    assert (python / "leadflow" / "capture" / "tracking.py").is_file()
    assert not (python / "leadflow" / "ops" / "cli.py").exists()
    assert not (python / "leadflow" / "local").exists()
    assert (tmp_path / "content" / "journeys" / "welcome.yaml").is_file()
    assert (tmp_path / "content" / "templates" / "welcome" / "body.html").is_file()
    assert not (python / "boto3").exists()
    assert not (python / "botocore").exists()
    shared_objects = list(python.rglob("*.so"))
    assert shared_objects
    assert all("cpython-313-aarch64" in so.name for so in shared_objects), shared_objects
    assert not list(python.rglob("*.pyc"))


def test_the_layer_ships_its_content_precompiled_from_the_same_files(bundle: Path) -> None:
    """The build validated the content once and wrote each artifact next to what it was made from;
    from the layer's own files, each restores equal to what the YAML path reads."""
    content = bundle / "content"
    for source in ("journeys", "segments", "leads.yaml"):
        assert precompiled.artifact_path(content / source).is_file(), source
    journeys = precompiled.load(content / "journeys", list)
    assert journeys is not None
    assert journeys == read_journey_files(ROOT / "journeys")
    assert precompiled.load(content / "segments", list) == read_segment_files(ROOT / "segments")
    assert precompiled.load(content / "leads.yaml", LeadModel) == read_lead_file(ROOT / "leads.yaml")


def test_layer_hash_follows_its_inputs() -> None:
    assert content_hash() == content_hash()
    assert len(content_hash()) == 64


UNZIPPED_LIMIT = 250 * 1024 * 1024
"""Lambda: a function's code and all its layers, unzipped, at most 250 MB (262,144,000 bytes)."""


def _unzipped_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and "__pycache__" not in p.parts)


def test_layer_plus_each_function_fits_lambdas_250_mb_unzipped(bundle: Path) -> None:
    """The bundled layer (as CDK's local bundling builds it) plus each function's code asset."""
    layer = _unzipped_bytes(bundle)
    functions = ROOT / "functions"
    for function in sorted(p for p in functions.iterdir() if (p / "app.py").is_file()):
        total = layer + _unzipped_bytes(function)
        assert total <= UNZIPPED_LIMIT, (
            f"{function.name}: layer + code is {total} bytes unzipped, Lambda allows {UNZIPPED_LIMIT} (250 MB)"
        )
    assert layer > 1024 * 1024  # the dependencies are really in it


def test_the_layer_leaves_out_what_no_function_runs(bundle: Path) -> None:
    package = bundle / "python" / "leadflow"
    for part in DEV_ONLY:
        assert not (package / part).exists(), part
    assert (package / "journeys" / "compiler.py").is_file()  # the rest of a package stays
    assert (package / "reporting" / "api.py").is_file()


IMPORT_EVERY_HANDLER = """
import importlib.util, json, pathlib, sys
for app in sorted(pathlib.Path(sys.argv[1]).glob("*/app.py")):
    sys.path.insert(0, str(app.parent))  # Lambda puts the function's code first (/var/task)
    spec = importlib.util.spec_from_file_location("handler_" + app.parent.name, app)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert callable(module.handler), app
    sys.path.pop(0)
print(json.dumps({m: getattr(sys.modules[m], "__file__", None) for m in sys.modules if m.split(".")[0] == "leadflow"}))
"""


def test_every_handler_imports_with_the_layers_package_alone(bundle: Path, tmp_path: Path) -> None:
    """Each ``functions/*/app.py`` imported as Lambda would: ``leadflow`` only from the bundle.
    The bundle's third-party wheels are for arm64, so those come from this interpreter's
    site-packages, run without ``site`` (``-S``) so the editable install of the source tree (a
    ``.pth`` file) cannot supply a module the layer lacks."""
    only_package = tmp_path / "opt-python"
    only_package.mkdir()
    (only_package / "leadflow").symlink_to(bundle / "python" / "leadflow")
    site_packages = sysconfig.get_paths()["purelib"]
    env = {
        "PATH": os.environ.get("PATH", ""),
        "PYTHONPATH": os.pathsep.join([str(only_package), site_packages, sysconfig.get_paths()["platlib"]]),
        **AWS_ENV,
        **settings_env("https://leadflow.example.com", content_dir=bundle / "content"),
    }
    run = subprocess.run(
        [sys.executable, "-S", "-c", IMPORT_EVERY_HANDLER, str(ROOT / "functions")],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    modules: dict[str, str | None] = json.loads(run.stdout.strip().splitlines()[-1])
    assert "leadflow.wiring" in modules  # it really imported the handlers' modules
    assert "leadflow.capture.tracking" in modules
    bundled = bundle / "python" / "leadflow"
    for name, origin in modules.items():
        assert origin is not None, name
        assert Path(origin).is_relative_to(only_package / "leadflow"), (name, origin)
        assert (bundled / Path(origin).relative_to(only_package / "leadflow")).is_file()
    assert "leadflow.ops.changes" in modules  # the deploy's journey_changes runs it: it ships
    shipped_ops = ("leadflow.ops", "leadflow.ops.changes")
    dev_only = [
        m for m in modules if m.startswith(("leadflow.local", "leadflow.ops")) or m == "leadflow.ops.cli"
    ]
    assert [m for m in dev_only if m not in shipped_ops] == []
