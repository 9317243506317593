"""Lambda SnapStart's runtime hooks (``leadflow.kernel.snapshot``), run locally the way Lambda runs
them, through ``snapshot_restore_py``'s registries: every function registers them when its module
is imported; the before-snapshot hooks build the tracer and the clients of rare paths; after a restore, two environments restored
from one snapshot draw different backoff jitter, and a secret cached before the snapshot is fetched
again."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest
from aws_lambda_powertools.utilities import parameters
from snapshot_restore_py import get_after_restore

from leadflow.local.system import FUNCTIONS, LocalSystem
from tests.helpers import last_line_printed
from tests.unit.test_cold_start import lambda_env

SNAPSHOT_AND_TWO_RESTORES = """
import importlib.util, json, random, sys
name = sys.argv[1]
spec = importlib.util.spec_from_file_location("fn_" + name, f"functions/{name}/app.py")
function = importlib.util.module_from_spec(spec)  # kept, as Lambda keeps the handler's module
spec.loader.exec_module(function)
from snapshot_restore_py import get_after_restore, get_before_snapshot
from leadflow.platform import aws
before = [f.__name__ for f, _, _ in get_before_snapshot()]
after = [f.__name__ for f, _, _ in get_after_restore()]
clients_at_init = aws.client.cache_info().currsize
for hook, args, kwargs in reversed(get_before_snapshot()):  # Lambda: in reverse order of registration
    hook(*args, **kwargs)
traced = "aws_xray_sdk" in sys.modules
clients_in_snapshot = aws.client.cache_info().currsize
lazy = sorted({c.service for c in aws._LAZY_CLIENTS})
for c in list(aws._LAZY_CLIENTS):  # a rare path after the restore: its client is already there
    c.build()
clients_after_rare_paths = aws.client.cache_info().currsize
snapshot = random.getstate()
draws = []
for _ in range(2):  # two execution environments restored from the same snapshot
    random.setstate(snapshot)
    for hook, args, kwargs in get_after_restore():
        hook(*args, **kwargs)
    draws.append(random.random())
print(json.dumps({"before": before, "after": after, "traced": traced, "draws": draws, "lazy": lazy,
    "clients": [clients_at_init, clients_in_snapshot, clients_after_rare_paths]}))
"""


def run_after_restore_hooks() -> None:
    for hook, args, kwargs in get_after_restore():
        hook(*args, **kwargs)


@pytest.mark.parametrize("function", FUNCTIONS)
def test_every_function_registers_the_hooks_and_restored_environments_differ(function: str) -> None:
    found: dict[str, Any] = json.loads(
        last_line_printed(SNAPSHOT_AND_TWO_RESTORES, function, env=lambda_env())
    )
    assert "build_tracer" in found["before"]
    assert {"reseed_random", "forget_cached_parameters"} <= set(found["after"])
    assert found["traced"], "the X-Ray SDK is loaded before the snapshot, not at the first sampled call"
    at_init, in_snapshot, after_rare_paths = found["clients"]
    assert in_snapshot == after_rare_paths, "a rare path built a client after the restore"
    assert in_snapshot >= at_init + (1 if found["lazy"] else 0)
    first, second = found["draws"]
    assert first != second, "two environments restored from one snapshot drew the same jitter"


def test_without_the_hooks_restored_environments_would_draw_the_same_jitter() -> None:
    """Why ``reseed_random`` exists: the same state in two environments gives the same draws."""
    snapshot = random.getstate()
    draws = []
    for _ in range(2):
        random.setstate(snapshot)
        draws.append(random.random())
    assert draws[0] == draws[1]
    random.setstate(snapshot)
    run_after_restore_hooks()
    assert random.random() != draws[0]


def test_a_secret_cached_before_the_snapshot_is_fetched_again_after_a_restore(system: LocalSystem) -> None:
    secrets = system.client("secretsmanager")
    secrets.create_secret(Name="snapstart-probe", SecretString="before the snapshot")
    parameters.clear_caches()  # type: ignore[no-untyped-call]
    assert parameters.get_secret("snapstart-probe", max_age=300) == "before the snapshot"
    secrets.put_secret_value(SecretId="snapstart-probe", SecretString="rotated since")
    assert parameters.get_secret("snapstart-probe", max_age=300) == "before the snapshot"  # cached
    run_after_restore_hooks()
    assert parameters.get_secret("snapstart-probe", max_age=300) == "rotated since"
