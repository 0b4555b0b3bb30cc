"""Local Durable Functions extension: drives the real azure-functions-durable replay (see docs/local-durable.md)."""

from devhost.durable.clock import Clock, ManualClock, WallClock
from devhost.durable.engine import DurableEngine

__all__ = ["Clock", "DurableEngine", "ManualClock", "WallClock"]
