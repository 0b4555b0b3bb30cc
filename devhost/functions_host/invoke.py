"""Calling a user function the way the Python worker does: sync functions on a thread pool, async awaited."""

from __future__ import annotations

import asyncio
import functools
import inspect
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

# The Python worker runs sync functions on a pool (PYTHON_THREADPOOL_THREAD_COUNT); match its spirit.
_POOL = ThreadPoolExecutor(max_workers=16, thread_name_prefix="function")


async def call_user_function(fn: Callable[..., Any], kwargs: dict[str, Any]) -> Any:
    if inspect.iscoroutinefunction(fn):
        return await fn(**kwargs)
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(_POOL, functools.partial(fn, **kwargs))
