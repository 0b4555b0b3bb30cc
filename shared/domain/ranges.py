"""Bounded integers whose error names the allowed range in the user's units, and still show in the schema."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import GetCoreSchemaHandler, GetJsonSchemaHandler
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import core_schema


@dataclass(frozen=True)
class IntRange:
    """Annotated[int, IntRange(low, high)]: an int in [low, high] (or 0 when `zero_means` says what 0 is).

    pydantic's ge/le messages ("greater than or equal to 512") say neither the unit nor the other bound,
    so the check is ours; the JSON schema still carries minimum/maximum for clients.
    """

    low: int
    high: int
    describe: Callable[[int], str] = field(default=str, compare=False)
    zero_means: str | None = None

    def check(self, value: int) -> int:
        if self.zero_means is not None and value == 0:
            return value
        if not self.low <= value <= self.high:
            allowed = f"between {self.describe(self.low)} and {self.describe(self.high)}"
            if self.zero_means is not None:
                allowed += f", or 0 ({self.zero_means})"
            raise ValueError(f"must be {allowed}; got {self.describe(value)}")
        return value

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        return core_schema.no_info_after_validator_function(self.check, handler(source))

    def __get_pydantic_json_schema__(
        self, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        json_schema = handler(schema)
        if self.zero_means is None:
            json_schema["maximum"] = self.high
            json_schema["minimum"] = self.low
            return json_schema
        # 0 or the range, exactly: min 0 / max high alone would promise 1..low-1 too.
        json_schema["anyOf"] = [{"const": 0}, {"minimum": self.low, "maximum": self.high}]
        json_schema["description"] = (
            f"{self.describe(self.low)}..{self.describe(self.high)}, or 0 = {self.zero_means}"
        )
        return json_schema
