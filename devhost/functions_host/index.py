"""Load a function app (function_app.py) and index its functions by trigger, as the real host does."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class FunctionAppLoadError(RuntimeError):
    """function_app.py is missing, fails to import, or does not expose `app`."""


@dataclass(frozen=True)
class IndexedFunction:
    name: str
    trigger_type: (
        str  # httpTrigger, orchestrationTrigger, activityTrigger, entityTrigger, eventGridTrigger, ...
    )
    trigger: dict[str, Any]  # the trigger binding as in function.json
    bindings: list[dict[str, Any]]  # all bindings as in function.json
    user_function: Callable[..., Any]

    def binding_of_type(self, binding_type: str) -> dict[str, Any] | None:
        return next((b for b in self.bindings if b.get("type") == binding_type), None)


@dataclass
class FunctionIndex:
    app_dir: Path
    functions: dict[str, IndexedFunction] = field(default_factory=dict)

    def by_trigger(self, trigger_type: str) -> list[IndexedFunction]:
        return [f for f in self.functions.values() if f.trigger_type == trigger_type]

    def get(self, name: str, trigger_type: str) -> IndexedFunction:
        fn = self.functions.get(name)
        if fn is None or fn.trigger_type != trigger_type:
            known = ", ".join(sorted(f.name for f in self.by_trigger(trigger_type))) or "none"
            raise KeyError(f"no {trigger_type} function named {name!r} (registered: {known})")
        return fn


def load_function_app(app_dir: Path, module_name: str = "function_app") -> FunctionIndex:
    """Import `<app_dir>/function_app.py` with app_dir on sys.path (as the Python worker does) and index it."""
    app_dir = app_dir.resolve()
    script = app_dir / f"{module_name}.py"
    if not script.exists():
        raise FunctionAppLoadError(
            f"{script} not found: point the host at the folder holding function_app.py"
        )
    if str(app_dir) not in sys.path:
        # Appended, not prepended: an in-process test that loads a test app must not shadow the product's
        # own `function_app` (or its packages) for the rest of the process.
        sys.path.append(str(app_dir))
    # A name of its own per app folder: the same process may index several apps (contract tests), and
    # `get_functions()` on an app indexed twice refuses every name as a duplicate.
    unique_name = f"_devhost_app_{hashlib.sha1(str(script).encode()).hexdigest()[:12]}"
    spec = importlib.util.spec_from_file_location(unique_name, script)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[unique_name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        raise FunctionAppLoadError(f"importing {script} failed: {exc!r}") from exc
    app = getattr(module, "app", None)
    if app is None or not hasattr(app, "get_functions"):
        raise FunctionAppLoadError(f"{script} defines no `app` (a FunctionApp or DFApp)")
    index = FunctionIndex(app_dir=app_dir)
    for function in app.get_functions():
        spec_json = json.loads(function.get_function_json())
        trigger = function.get_trigger()
        trigger_binding = next(b for b in spec_json["bindings"] if b.get("type") == trigger.type)
        name = function.get_function_name()
        index.functions[name] = IndexedFunction(
            name=name,
            trigger_type=trigger.type,
            trigger=trigger_binding,
            bindings=spec_json["bindings"],
            user_function=function.get_user_function(),
        )
    return index
