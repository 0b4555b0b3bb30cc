"""Typed Functions blueprints for the orchestrations (orchestrators/) and the triggers (functions/).

azure-functions leaves `Blueprint()` unannotated and azure-functions-durable ships no type information,
so every trigger decorator would erase the signature of the function it registers and `mypy --strict`
could not check a trigger, an orchestrator or an activity. These factories return the SDK's own
blueprints, typed by the decorators the app uses. They live here, not in shared/, because shared/
never imports the Functions runtime; functions/ may import orchestrators/.

A decorated function stays callable with its own signature: the SDK replaces it by a FunctionBuilder,
whose `__call__` forwards to the function, and `call_activity` takes it as the activity's name.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Protocol, TypeVar, cast

import azure.durable_functions as df
import azure.functions as func

F = TypeVar("F", bound=Callable[..., Any])


class DurableBlueprint(Protocol):
    """The decorators of `azure.durable_functions.Blueprint` that the app uses, typed."""

    def route(
        self,
        route: str | None = None,
        methods: Iterable[str] | None = None,
        auth_level: func.AuthLevel | None = None,
    ) -> Callable[[F], F]: ...

    def durable_client_input(self, client_name: str) -> Callable[[F], F]: ...

    def event_grid_trigger(self, arg_name: str) -> Callable[[F], F]: ...

    def timer_trigger(
        self,
        arg_name: str,
        schedule: str,
        run_on_startup: bool | None = None,
        use_monitor: bool | None = None,
    ) -> Callable[[F], F]: ...

    def orchestration_trigger(
        self, context_name: str, orchestration: str | None = None
    ) -> Callable[[F], F]: ...

    def activity_trigger(self, input_name: str, activity: str | None = None) -> Callable[[F], F]: ...


def durable_blueprint() -> DurableBlueprint:
    """A blueprint for orchestrations, activities and triggers that take a durable client."""
    return cast(DurableBlueprint, df.Blueprint())


def blueprint() -> func.Blueprint:
    """A blueprint for plain HTTP and timer triggers."""
    return func.Blueprint()  # type: ignore[no-untyped-call]  # the SDK's __init__ takes untyped **kwargs
