"""How an orchestration waits for something outside it (an appliance's answer, a cycle another
orchestration applies): ask with an activity, wait with a durable timer, ask again, until the answer or
the deadline.

Every ask and every timer is history that each later episode replays. Asking at a fixed interval for the
whole timeout (every 15 s for the 240-minute final-cycle wait: 960 asks, ~6,000 events in one execution)
makes an absent appliance cost quadratically. So the interval is `poll_seconds` for the first
`STEADY_PHASE`, where the answers of a connected appliance come, and then grows with the time already
waited (`GROWTH` of it, so geometrically) up to `LONGEST_INTERVAL`; the last ask is at the deadline. A
4-hour wait asks 75 times at the production 15 s (a few hundred events; 187 times at the tests' 1 s),
and an answer is seen at most an eighth of the time waited, and never more than 5 minutes, after it
came.

Why not the others (docs/reliability.md): an external event raised by the appliance's acknowledgement
would need the ack route to know which instance waits (sub-orchestrations have their own ids) and an
event name per command (a wait that lost the race stays open, and an event no wait took is buffered for
the next wait on its name); `continue_as_new` cannot restart a step in the middle of a job or a
sub-orchestration. Everything here is computed from the
orchestration's own clock (`context.current_utc_datetime`), so replay takes the same decisions.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

# A connected appliance polls its commands every few seconds and answers within a minute or two: that
# latency is kept as it was.
STEADY_PHASE: Final = timedelta(minutes=2)
GROWTH: Final = 0.125
# After hours away, 5 minutes more does not matter to the operator; it bounds the asks to 12 an hour.
LONGEST_INTERVAL: Final = timedelta(minutes=5)


def poll_interval(waited: timedelta, poll_seconds: float) -> timedelta:
    """The durable timer's length after `waited` of a wait that asks every `poll_seconds` at first."""
    steady = timedelta(seconds=poll_seconds)
    if waited < STEADY_PHASE:
        return steady
    return max(steady, min(LONGEST_INTERVAL, waited * GROWTH))


@dataclass(frozen=True)
class Wait:
    """One bounded wait, from the orchestration's clock at its start."""

    started: datetime
    deadline: datetime
    poll_seconds: float

    @classmethod
    def starting(cls, now: datetime, *, timeout_seconds: float, poll_seconds: float) -> Wait:
        return cls(started=now, deadline=now + timedelta(seconds=timeout_seconds), poll_seconds=poll_seconds)

    def over(self, now: datetime) -> bool:
        return now >= self.deadline

    def next_ask(self, now: datetime) -> datetime:
        """When the durable timer before the next ask fires: never past the deadline, so the last ask
        is at it."""
        return min(self.deadline, now + poll_interval(now - self.started, self.poll_seconds))
