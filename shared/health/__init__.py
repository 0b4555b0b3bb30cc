"""Replication health: the error catalog, the pure rules, and the only code that writes a machine's health.

What other packages call is re-exported here; inside the package, modules import each other directly.

- `rules`: pure decisions on a `shared.domain.health.HealthState` (failures, successes, heartbeats, time)
- `writer`: stores the rules' decisions on the machine, writes failure and health events, starts resyncs
- `appliance_failures`: an appliance's `CycleFailed` and `CycleStarted` reports
- `timeouts`: the upload deadline (1011) and the disposal deadline (181008)
- `monitor`: the timer that raises RPO, appliance- and agent-silence errors, and the reverse RPO
- `repair`: the operator's "Repair replication"
- `event_texts`: event types and the texts of the events operators read
- `events`: the machine event log; `settings`: the HEALTH_* settings
"""

from shared.health.appliance_failures import record_appliance_failure, record_cycle_started
from shared.health.event_texts import CYCLE_COMPLETED, REPAIR_COMPLETED, health_event
from shared.health.monitor import MonitorReport, monitor_health
from shared.health.repair import RepairStarted, complete_repair_start, start_repair
from shared.health.rules import AgentContact, HealthRules, Transition
from shared.health.settings import HealthSettings
from shared.health.timeouts import (
    clear_upload_watch,
    report_dispose_timeout,
    report_upload_timeouts,
    watch_cycle_uploads,
)
from shared.health.writer import (
    Failure,
    FailuresRecorded,
    flag_source_disks_changed,
    record_cycle_success,
    record_failures,
    record_reverse_point_health,
    reset_health,
)

__all__ = [
    "CYCLE_COMPLETED",
    "REPAIR_COMPLETED",
    "AgentContact",
    "Failure",
    "FailuresRecorded",
    "HealthRules",
    "HealthSettings",
    "MonitorReport",
    "RepairStarted",
    "Transition",
    "clear_upload_watch",
    "complete_repair_start",
    "flag_source_disks_changed",
    "health_event",
    "monitor_health",
    "record_appliance_failure",
    "record_cycle_started",
    "record_cycle_success",
    "record_failures",
    "record_reverse_point_health",
    "report_dispose_timeout",
    "report_upload_timeouts",
    "reset_health",
    "start_repair",
    "watch_cycle_uploads",
]
