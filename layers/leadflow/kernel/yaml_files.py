"""Reading the content files (journeys, segments, ``leads.yaml``): YAML through libyaml's C parser
when the installed PyYAML has it (the layer's manylinux wheels do), else PyYAML's pure-Python one.

Both are the *safe* loader (plain data only, no Python objects) and give the same data; the C one
parses a journey file ~10x faster, which functions that load content at cold start feel."""

from __future__ import annotations

from typing import Any

import yaml

SAFE_LOADER: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def safe_load(text: str) -> Any:
    """``yaml.safe_load`` with the fastest safe loader; raises ``yaml.YAMLError`` as it does."""
    return yaml.load(text, Loader=SAFE_LOADER)  # noqa: S506 - a safe loader
