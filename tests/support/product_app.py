"""The product's registered functions, indexed once per test process.

`app.get_functions()` validates names against what it already indexed, so a second call in the same
process reports every function as a duplicate; every test that needs the index shares this one.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any


@lru_cache(maxsize=1)
def product_functions() -> tuple[Any, ...]:
    import function_app

    return tuple(function_app.app.get_functions())
