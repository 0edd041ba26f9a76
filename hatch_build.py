"""Wheel build hook: a wheel built from a checkout whose compiled modules match the source carries them.

``scripts/native.py`` (``make setup``) compiles the hot modules in place; the files are not in git, so
hatchling would leave them out. When the build present is current (``telemetry._native``'s own check),
they go into the wheel with their stamp and the wheel is tagged for this Python and platform; otherwise
the wheel is pure Python, as before, and runs the source. Editable installs use the checkout as it is.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

ROOT = Path(__file__).resolve().parent


def _native_module() -> Any:
    # By path, not ``import telemetry``: the package's import would set a stale build aside in this process.
    spec = importlib.util.spec_from_file_location("_telemetry_native_build", ROOT / "telemetry" / "_native.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class NativeBuildHook(BuildHookInterface):  # type: ignore[type-arg]
    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        if self.target_name != "wheel" or version == "editable":
            return
        native = _native_module()
        built = native._extensions()
        if not built or native._stale_reason(built) is not None:
            return
        include = build_data.setdefault("force_include", {})
        for path in built:
            include[str(path)] = str(path.relative_to(ROOT))
        for lib in native.libraries():
            include[str(lib)] = lib.name
        include[str(native.STAMP)] = str(native.STAMP.relative_to(ROOT))
        build_data["pure_python"] = False
        build_data["infer_tag"] = True
        print(f"wheel: with {len(built)} compiled modules ({sys.implementation.cache_tag})", file=sys.stderr)
