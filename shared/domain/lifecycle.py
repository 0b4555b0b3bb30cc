"""The machine lifecycle as data: the states, the allowed moves, and one function that enforces them.

Migration (Azure Migrate): Discovered -> EnablingReplication -> InitialReplication -> Replicating
  -> TestMigrating -> TestMigrated -> CleaningUpTestMigration -> Replicating
  -> Migrating -> Migrated -> MigrationCompleted.
Disaster recovery (Site Recovery): Replicating -> FailingOver -> FailedOver -> FailoverCommitted.
Reverse protection (Azure -> on-premises): FailoverCommitted -> ReverseReprotecting -> ReverseReplicating;
  a reprotect that fails returns to FailoverCommitted.
Failback: ReverseReplicating -> PlannedFailingBack -> FailedBack (the on-premises VM runs; waiting for
  commit or cancel) -> CommittingFailback -> FailbackCommitted (on-premises, unprotected) -> Reprotecting
  (forward again, sending only what changed on-premises) -> Replicating. A planned failback that fails
  or is cancelled goes through CancellingPlannedFailback back to ReverseReplicating, and a cancel that
  fails leaves PlannedFailbackCancelFailed for the operator to cancel again.
Repair: InitialReplication/Replicating -> Resyncing -> Replicating. Stop: -> ReplicationStopped,
from which replication can be enabled again.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol, TypeVar

from shared.domain.errors import Conflict


class MachineState(StrEnum):
    DISCOVERED = "Discovered"
    ENABLING_REPLICATION = "EnablingReplication"
    INITIAL_REPLICATION = "InitialReplication"
    REPLICATING = "Replicating"
    RESYNCING = "Resyncing"
    TEST_MIGRATING = "TestMigrating"
    TEST_MIGRATED = "TestMigrated"
    CLEANING_UP_TEST_MIGRATION = "CleaningUpTestMigration"
    MIGRATING = "Migrating"
    MIGRATED = "Migrated"
    MIGRATION_COMPLETED = "MigrationCompleted"
    REPLICATION_STOPPED = "ReplicationStopped"
    FAILING_OVER = "FailingOver"
    FAILED_OVER = "FailedOver"
    FAILOVER_COMMITTED = "FailoverCommitted"
    PLANNED_FAILING_BACK = "PlannedFailingBack"
    CANCELLING_PLANNED_FAILBACK = "CancellingPlannedFailback"
    PLANNED_FAILBACK_CANCEL_FAILED = "PlannedFailbackCancelFailed"
    FAILED_BACK = "FailedBack"
    COMMITTING_FAILBACK = "CommittingFailback"
    FAILBACK_COMMITTED = "FailbackCommitted"
    REPROTECTING = "Reprotecting"
    REVERSE_REPROTECTING = "ReverseReprotecting"
    REVERSE_REPLICATING = "ReverseReplicating"


S = MachineState

# Every allowed move, and only those. Failure paths are listed too: a failed test migration is
# cleaned up, a failed cutover or failover leaves the replica untouched so replication carries on.
TRANSITIONS: Mapping[MachineState, frozenset[MachineState]] = {
    S.DISCOVERED: frozenset({S.ENABLING_REPLICATION}),
    S.ENABLING_REPLICATION: frozenset({S.INITIAL_REPLICATION, S.REPLICATION_STOPPED}),
    S.INITIAL_REPLICATION: frozenset({S.REPLICATING, S.RESYNCING, S.REPLICATION_STOPPED}),
    S.REPLICATING: frozenset(
        {S.RESYNCING, S.TEST_MIGRATING, S.MIGRATING, S.FAILING_OVER, S.REPLICATION_STOPPED}
    ),
    S.RESYNCING: frozenset({S.REPLICATING, S.REPLICATION_STOPPED}),
    S.TEST_MIGRATING: frozenset({S.TEST_MIGRATED, S.CLEANING_UP_TEST_MIGRATION}),
    S.TEST_MIGRATED: frozenset({S.CLEANING_UP_TEST_MIGRATION}),
    # A clean-up that failed leaves the test migration in place: it may be cleaned up again.
    S.CLEANING_UP_TEST_MIGRATION: frozenset({S.REPLICATING, S.TEST_MIGRATED}),
    S.MIGRATING: frozenset({S.MIGRATED, S.REPLICATING}),
    S.MIGRATED: frozenset({S.MIGRATION_COMPLETED}),
    S.MIGRATION_COMPLETED: frozenset(),
    S.REPLICATION_STOPPED: frozenset({S.ENABLING_REPLICATION}),
    S.FAILING_OVER: frozenset({S.FAILED_OVER, S.REPLICATING}),
    S.FAILED_OVER: frozenset({S.FAILOVER_COMMITTED}),
    S.FAILOVER_COMMITTED: frozenset({S.REVERSE_REPROTECTING, S.REPLICATION_STOPPED}),
    # A reprotect that fails leaves the machine running in Azure, unprotected, as before it was asked.
    S.REVERSE_REPROTECTING: frozenset({S.REVERSE_REPLICATING, S.FAILOVER_COMMITTED}),
    # Reverse cycles run here until a planned failback brings the machine home.
    S.REVERSE_REPLICATING: frozenset({S.PLANNED_FAILING_BACK}),
    # A planned failback that fails is cancelled at once (CancellingPlannedFailback), never left halfway.
    S.PLANNED_FAILING_BACK: frozenset({S.FAILED_BACK, S.CANCELLING_PLANNED_FAILBACK}),
    S.CANCELLING_PLANNED_FAILBACK: frozenset({S.REVERSE_REPLICATING, S.PLANNED_FAILBACK_CANCEL_FAILED}),
    S.PLANNED_FAILBACK_CANCEL_FAILED: frozenset({S.CANCELLING_PLANNED_FAILBACK}),
    # Until commit the operator may still cancel: the Azure VM, its disks and the final snapshots remain.
    S.FAILED_BACK: frozenset({S.CANCELLING_PLANNED_FAILBACK, S.COMMITTING_FAILBACK}),
    # A commit that fails before it deletes anything returns to FailedBack; past that it stays here and the
    # operator commits again (every deletion is idempotent).
    S.COMMITTING_FAILBACK: frozenset({S.FAILBACK_COMMITTED, S.FAILED_BACK, S.COMMITTING_FAILBACK}),
    S.FAILBACK_COMMITTED: frozenset({S.REPROTECTING, S.REPLICATION_STOPPED}),
    # A forward reprotect that fails leaves the machine on-premises, unprotected, as before it was asked.
    S.REPROTECTING: frozenset({S.INITIAL_REPLICATION, S.REPLICATING, S.FAILBACK_COMMITTED}),
}

# States in which the per-machine orchestration owns replica disks that receive cycles.
REPLICATING_STATES = frozenset({S.INITIAL_REPLICATION, S.REPLICATING, S.RESYNCING})
# States in which replication is in place (enabled and not stopped or finished).
PROTECTED_STATES = frozenset(TRANSITIONS) - {
    S.DISCOVERED,
    S.REPLICATION_STOPPED,
    S.MIGRATION_COMPLETED,
    S.MIGRATED,
    S.FAILBACK_COMMITTED,
}


class Location(StrEnum):
    """Where the machine's active copy runs (`activeLocation`): the direction replication follows."""

    AZURE = "azure"
    ON_PREMISES = "onPremises"


# From the moment a failover's VM is up until a failback brings the machine home, Azure runs it; a
# migrated machine runs there for good. Every other state is the on-premises machine's.
ACTIVE_IN_AZURE = frozenset(
    {
        S.FAILED_OVER,
        S.FAILOVER_COMMITTED,
        S.PLANNED_FAILING_BACK,
        S.CANCELLING_PLANNED_FAILBACK,
        S.PLANNED_FAILBACK_CANCEL_FAILED,
        S.REVERSE_REPROTECTING,
        S.REVERSE_REPLICATING,
        S.MIGRATED,
        S.MIGRATION_COMPLETED,
    }
)


def active_location(state: MachineState) -> Location:
    return Location.AZURE if state in ACTIVE_IN_AZURE else Location.ON_PREMISES


class Operation(StrEnum):
    """What an operator can ask of a machine, as named on the wire (`allowedOperations`)."""

    ENABLE_REPLICATION = "enableReplication"  # PUT /machines/{id}/replication
    STOP_REPLICATION = "stopReplication"  # DELETE /machines/{id}/replication
    COMPLETE_MIGRATION = "completeMigration"  # DELETE /machines/{id}/replication on a Migrated machine
    REPAIR = "repair"  # POST /machines/{id}/repair
    TEST_MIGRATE = "testMigrate"  # POST /machines/{id}/test-migrate
    TEST_MIGRATE_CLEANUP = "testMigrateCleanup"  # POST /machines/{id}/test-migrate/cleanup
    MIGRATE = "migrate"  # POST /machines/{id}/migrate
    FAILOVER = "failover"  # POST /machines/{id}/failover
    CHANGE_RECOVERY_POINT = "changeRecoveryPoint"  # POST /machines/{id}/change-recovery-point
    COMMIT = "commit"  # POST /machines/{id}/commit: a failover's, or a planned failback's
    REPROTECT = "reprotect"  # POST /machines/{id}/reprotect: toward whichever side is not active
    PLANNED_FAILOVER = "plannedFailover"  # POST /machines/{id}/planned-failover: Azure -> on-premises
    CANCEL_PLANNED_FAILOVER = "cancelPlannedFailover"  # POST /machines/{id}/cancel-planned-failover


@dataclass(frozen=True)
class OperationRule:
    """An operation is allowed where the table allows its move, except from the states it must not be
    asked in (moves the table lists for a flow's own failure path, not for the operator)."""

    target: MachineState
    not_from: frozenset[MachineState] = frozenset()
    stays: bool = False  # the machine keeps its state while it runs (allowed in `target` itself)
    # One wire operation may start different flows by direction (commit, reprotect): any target counts.
    also: frozenset[MachineState] = frozenset()

    def allows(self, current: MachineState) -> bool:
        if self.stays:
            return current is self.target
        targets = {self.target, *self.also}
        return bool(targets & TRANSITIONS[current]) and current not in self.not_from

    def target_from(self, current: MachineState) -> MachineState:
        """The state this operation moves `current` to (its first target the table allows)."""
        for target in (self.target, *sorted(self.also)):
            if target in TRANSITIONS[current]:
                return target
        return self.target


OPERATIONS: Mapping[Operation, OperationRule] = {
    Operation.ENABLE_REPLICATION: OperationRule(S.ENABLING_REPLICATION),
    # From Migrated the same route completes the migration instead.
    Operation.STOP_REPLICATION: OperationRule(S.REPLICATION_STOPPED),
    Operation.COMPLETE_MIGRATION: OperationRule(S.MIGRATION_COMPLETED),
    Operation.REPAIR: OperationRule(S.RESYNCING),
    Operation.TEST_MIGRATE: OperationRule(S.TEST_MIGRATING),
    # A running test migration cleans up after itself when it fails; the operator waits for its end.
    Operation.TEST_MIGRATE_CLEANUP: OperationRule(
        S.CLEANING_UP_TEST_MIGRATION, not_from=frozenset({S.TEST_MIGRATING})
    ),
    Operation.MIGRATE: OperationRule(S.MIGRATING),
    Operation.FAILOVER: OperationRule(S.FAILING_OVER),
    # Until commit the failed-over VM can be rebuilt from another point; the machine stays FailedOver.
    Operation.CHANGE_RECOVERY_POINT: OperationRule(S.FAILED_OVER, stays=True),
    # A cancelled planned failback and a failed reprotect also return to FailoverCommitted: those are
    # their flows' ends, not a commit.
    Operation.COMMIT: OperationRule(
        S.FAILOVER_COMMITTED,
        also=frozenset({S.COMMITTING_FAILBACK}),
        not_from=frozenset({S.REVERSE_REPROTECTING}),
    ),
    Operation.REPROTECT: OperationRule(S.REVERSE_REPROTECTING, also=frozenset({S.REPROTECTING})),
    Operation.PLANNED_FAILOVER: OperationRule(S.PLANNED_FAILING_BACK),
    # A planned failback that fails cancels itself; the operator cancels once it waits for commit, or
    # again after a cancel failed.
    Operation.CANCEL_PLANNED_FAILOVER: OperationRule(
        S.CANCELLING_PLANNED_FAILBACK, not_from=frozenset({S.PLANNED_FAILING_BACK})
    ),
}


def allowed_operations(state: MachineState) -> list[Operation]:
    """The operations the state allows, in the order of `Operation`."""
    return [op for op, rule in OPERATIONS.items() if rule.allows(state)]


class ForbiddenTransition(Conflict):
    code = "ForbiddenTransition"

    def __init__(
        self, machine_id: str, current: MachineState, target: MachineState, action: str | None
    ) -> None:
        self.machine_id = machine_id
        self.current = current
        self.target = target
        self.allowed = sorted(TRANSITIONS[current])
        doing = action or f"move to {target}"
        if self.allowed:
            nexts = ", ".join(self.allowed)
            message = f"cannot {doing}: machine {machine_id} is {current}, and from {current} it can only go to {nexts}"
        else:
            message = f"cannot {doing}: machine {machine_id} is {current}, which is final"
        self.allowed_operations = allowed_operations(current)
        super().__init__(
            message,
            details=[
                {
                    "machineId": machine_id,
                    "from": current,
                    "to": target,
                    "allowed": self.allowed,
                    "allowedOperations": [op.value for op in self.allowed_operations],
                }
            ],
        )


class HasLifecycle(Protocol):
    id: str
    state: MachineState


M = TypeVar("M", bound=HasLifecycle)


def can_transition(current: MachineState, target: MachineState) -> bool:
    return target in TRANSITIONS[current]


def transition(machine: M, target: MachineState, *, action: str | None = None) -> M:
    """Move `machine` to `target` in place (and return it) or raise ForbiddenTransition (HTTP 409)."""
    if target not in TRANSITIONS[machine.state]:
        raise ForbiddenTransition(machine.id, machine.state, target, action)
    machine.state = target
    return machine
