"""Calling a user function the way the Python worker does: sync functions on a thread pool, async awaited."""

from __future__ import annotations

import asyncio
import functools
import inspect
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from devhost.functions_host.index import IndexedFunction

# The Python worker runs sync functions on a pool (PYTHON_THREADPOOL_THREAD_COUNT); match its spirit.
_POOL = ThreadPoolExecutor(max_workers=16, thread_name_prefix="function")


async def call_user_function(fn: Callable[..., Any], kwargs: dict[str, Any]) -> Any:
    if inspect.iscoroutinefunction(fn):
        return await fn(**kwargs)
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(_POOL, functools.partial(fn, **kwargs))


class UnsupportedBinding(RuntimeError):
    pass


def extra_binding_kwargs(
    fn: IndexedFunction, durable_client_json: Callable[[], str] | None
) -> dict[str, Any]:
    """Arguments for a function's non-trigger bindings: only the durable client is provided locally.

    Checked when the host starts, so an unsupported binding fails loudly then, not on the first call.
    """
    kwargs: dict[str, Any] = {}
    for binding in fn.bindings:
        kind = binding.get("type")
        if kind == fn.trigger_type or kind == "http" or binding.get("name") == "$return":
            continue
        if kind == "durableClient" and durable_client_json is not None:
            kwargs[binding["name"]] = durable_client_json
            continue
        raise UnsupportedBinding(
            f"function {fn.name!r} uses a {kind!r} binding, which the local host does not provide; "
            "use the SDKs from the function body instead"
        )
    return kwargs


def resolve_binding_kwargs(kwargs: dict[str, Any]) -> dict[str, Any]:
    """Values that must be fresh per call (the durable client JSON) are produced at call time."""
    return {name: value() if callable(value) else value for name, value in kwargs.items()}
