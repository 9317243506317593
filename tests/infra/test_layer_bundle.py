"""The shared layer, built the way CDK's local bundling builds it (pip for arm64/cp313, no Docker)."""

from __future__ import annotations

from pathlib import Path

from leadflow_infra.layer import ROOT, build, content_hash


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


UNZIPPED_LIMIT = 250 * 1024 * 1024
"""Lambda: a function's code and all its layers, unzipped, at most 250 MB (262,144,000 bytes)."""


def _unzipped_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and "__pycache__" not in p.parts)


def test_layer_plus_each_function_fits_lambdas_250_mb_unzipped(tmp_path: Path) -> None:
    """The bundled layer (as CDK's local bundling builds it) plus each function's code asset."""
    build(tmp_path)
    layer = _unzipped_bytes(tmp_path)
    functions = ROOT / "functions"
    for function in sorted(p for p in functions.iterdir() if (p / "app.py").is_file()):
        total = layer + _unzipped_bytes(function)
        assert total <= UNZIPPED_LIMIT, (
            f"{function.name}: layer + code is {total} bytes unzipped, Lambda allows {UNZIPPED_LIMIT} (250 MB)"
        )
    assert layer > 1024 * 1024  # the dependencies are really in it
