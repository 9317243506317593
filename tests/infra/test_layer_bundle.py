"""The shared layer, built the way CDK's local bundling builds it (pip for arm64/cp313, no Docker)."""

from __future__ import annotations

from pathlib import Path

from leadflow_infra.layer import build, content_hash


def test_layer_contains_the_package_deps_and_content_for_lambda(tmp_path: Path) -> None:
    build(tmp_path)
    python = tmp_path / "python"
    assert (python / "leadflow" / "tracking.py").is_file()
    assert not (python / "leadflow" / "local").exists()
    assert (tmp_path / "content" / "journeys" / "welcome.yaml").is_file()
    assert (tmp_path / "content" / "templates" / "welcome" / "body.html").is_file()
    assert not (python / "boto3").exists()
    assert not (python / "botocore").exists()
    shared_objects = list(python.rglob("*.so"))
    assert shared_objects
    assert all("cpython-313-aarch64" in so.name for so in shared_objects), shared_objects
    assert not list(python.rglob("*.pyc"))


def test_layer_hash_follows_its_inputs() -> None:
    assert content_hash() == content_hash()
    assert len(content_hash()) == 64
