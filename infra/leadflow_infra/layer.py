"""The shared Lambda layer — the ``leadflow`` package, its third-party dependencies and the content
(journeys, templates) — built on this machine without Docker (``ILocalBundling``).

The build validates the content once and writes its precompiled artifacts next to it
(``leadflow.precompiled``): an invalid journey, segment or ``leads.yaml`` fails the build, and the
functions restore the validated content at cold start instead of validating it again."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsii
from aws_cdk import AssetHashType, BundlingOptions, DockerImage, ILocalBundling
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from leadflow.precompiled import write_artifacts

ROOT = Path(__file__).resolve().parents[2]
PIP_TARGET = {
    "PIP_PLATFORMS": "manylinux2014_aarch64 manylinux_2_17_aarch64",
    "PIP_IMPLEMENTATION": "cp",
    "PIP_PYTHON_VERSION": "3.13",
}
CONTENT_FOLDERS = ("journeys", "templates", "segments")
CONTENT_FILES = ("leads.yaml",)
"""What marketers write, shipped in the layer under /opt/content (``LEADFLOW_CONTENT_DIR``)."""
EXCLUDED_PACKAGES = ("boto3", "botocore", "s3transfer", "jmespath")
PACKAGE = ROOT / "layers" / "leadflow"
DEV_ONLY = (
    "local",
    "ops/cli.py",
    "ops/redrive.py",
    "ops/smoke.py",
    "ops/versions.py",
    "journeys/graph.py",
    "reporting/render.py",
)
"""Parts of the ``leadflow`` package no function runs (relative to it): the local runtime, the
operator CLI and its ``ops`` commands, journey diagrams and report charts. They stay out of the
layer; ``ops/changes.py`` ships: the deploy's ``journey_changes`` function runs it; ``tests/infra/test_layer_bundle.py`` imports every handler from the bundle alone."""


def _inputs() -> list[Path]:
    files = [ROOT / "layers" / "requirements.txt"]
    for folder in (ROOT / "layers" / "leadflow", *(ROOT / name for name in CONTENT_FOLDERS)):
        files += sorted(p for p in folder.rglob("*") if p.is_file() and "__pycache__" not in p.parts)
    files += [ROOT / name for name in CONTENT_FILES if (ROOT / name).is_file()]
    return [p for p in files if not is_dev_only(p)]


def is_dev_only(path: Path) -> bool:
    return any(path.is_relative_to(PACKAGE / part) for part in DEV_ONLY)


def _ignore_for_layer(folder: str, names: list[str]) -> set[str]:
    """``shutil.copytree``'s ignore: caches and the dev-only parts."""
    return {
        name
        for name in names
        if name == "__pycache__" or name.endswith(".pyc") or is_dev_only(Path(folder) / name)
    }


def content_hash() -> str:
    """Changes whenever anything that goes into the layer (or how it is built) changes."""
    digest = hashlib.sha256()
    for key, value in sorted(PIP_TARGET.items()):
        digest.update(f"{key}={value}\n".encode())
    for path in _inputs():
        digest.update(str(path.relative_to(ROOT)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


@jsii.implements(ILocalBundling)
class LocalLayerBundling:
    """pip for the Lambda platform, then copy the package and the content; never Docker."""

    def try_bundle(self, output_dir: str, options: Any = None, **_: Any) -> bool:
        build(Path(output_dir))
        return True


def build(out: Path) -> None:
    python = out / "python"
    python.mkdir(parents=True, exist_ok=True)
    platforms = [arg for platform in PIP_TARGET["PIP_PLATFORMS"].split() for arg in ("--platform", platform)]
    subprocess.run(  # noqa: S603 - fixed arguments
        [
            sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
            "-r", str(ROOT / "layers" / "requirements.txt"),
            "--target", str(python), *platforms,
            "--implementation", PIP_TARGET["PIP_IMPLEMENTATION"],
            "--python-version", PIP_TARGET["PIP_PYTHON_VERSION"],
            "--only-binary=:all:", "--no-compile",
        ],
        check=True,
    )  # fmt: skip
    for name in EXCLUDED_PACKAGES:  # the Lambda runtime provides these
        for match in python.glob(f"{name}*"):
            shutil.rmtree(match) if match.is_dir() else match.unlink()
    shutil.copytree(PACKAGE, python / "leadflow", ignore=_ignore_for_layer, dirs_exist_ok=True)
    for folder in (f for f in CONTENT_FOLDERS if (ROOT / f).is_dir()):
        shutil.copytree(ROOT / folder, out / "content" / folder, dirs_exist_ok=True)
    for name in CONTENT_FILES:
        if (ROOT / name).is_file():
            shutil.copy2(ROOT / name, out / "content" / name)
    precompile_content(out / "content")


def precompile_content(content: Path) -> list[Path]:
    """The precompiled artifacts of the layer's content, made by the ``leadflow`` package this
    layer ships (the same models, the same code: ``leadflow.precompiled``)."""
    content.mkdir(parents=True, exist_ok=True)
    return write_artifacts(content)


class SharedLayer(Construct):
    def __init__(self, scope: Construct, construct_id: str) -> None:
        super().__init__(scope, construct_id)
        self.layer = lambda_.LayerVersion(
            self,
            "Layer",
            description="leadflow domain package, dependencies, journeys and templates",
            compatible_runtimes=[lambda_.Runtime.PYTHON_3_13],
            compatible_architectures=[lambda_.Architecture.ARM_64],
            code=lambda_.Code.from_asset(
                str(ROOT / "layers"),
                asset_hash_type=AssetHashType.CUSTOM,
                asset_hash=content_hash(),
                bundling=BundlingOptions(
                    image=DockerImage.from_registry("local-bundling-only"),
                    local=LocalLayerBundling(),
                    environment=dict(PIP_TARGET),
                ),
            ),
        )
