"""The machine lifecycle: every allowed move works, anything else is a 409 that says what is allowed."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest

from functions.http_errors import error_response
from shared.domain.lifecycle import (
    OPERATIONS,
    PROTECTED_STATES,
    TRANSITIONS,
    ForbiddenTransition,
    Location,
    MachineState,
    Operation,
    active_location,
    allowed_operations,
    can_transition,
    transition,
)

S = MachineState


@dataclass
class Subject:
    id: str
    state: MachineState


ALLOWED = sorted((src, dst) for src, targets in TRANSITIONS.items() for dst in targets)
FORBIDDEN = sorted((src, dst) for src in MachineState for dst in MachineState if dst not in TRANSITIONS[src])


def test_every_state_has_a_row() -> None:
    assert set(TRANSITIONS) == set(MachineState)


@pytest.mark.parametrize(("src", "dst"), ALLOWED, ids=[f"{a}->{b}" for a, b in ALLOWED])
def test_allowed_transition(src: MachineState, dst: MachineState) -> None:
    machine = Subject("m1", src)
    assert transition(machine, dst) is machine
    assert machine.state is dst


@pytest.mark.parametrize(("src", "dst"), FORBIDDEN, ids=[f"{a}->{b}" for a, b in FORBIDDEN])
def test_forbidden_transition_leaves_state_unchanged(src: MachineState, dst: MachineState) -> None:
    machine = Subject("m1", src)
    with pytest.raises(ForbiddenTransition) as caught:
        transition(machine, dst)
    assert machine.state is src
    assert caught.value.current is src and caught.value.target is dst
    assert caught.value.allowed == sorted(TRANSITIONS[src])


def test_documented_paths_are_walkable() -> None:
    migration = [
        S.ENABLING_REPLICATION,
        S.INITIAL_REPLICATION,
        S.REPLICATING,
        S.TEST_MIGRATING,
        S.TEST_MIGRATED,
        S.CLEANING_UP_TEST_MIGRATION,
        S.REPLICATING,
        S.MIGRATING,
        S.MIGRATED,
        S.MIGRATION_COMPLETED,
    ]
    disaster_recovery = [
        S.ENABLING_REPLICATION,
        S.INITIAL_REPLICATION,
        S.REPLICATING,
        S.FAILING_OVER,
        S.FAILED_OVER,
        S.FAILOVER_COMMITTED,
        S.REVERSE_REPROTECTING,
        S.REVERSE_REPLICATING,
        S.PLANNED_FAILING_BACK,
        S.CANCELLING_PLANNED_FAILBACK,
        S.PLANNED_FAILBACK_CANCEL_FAILED,
        S.CANCELLING_PLANNED_FAILBACK,
        S.REVERSE_REPLICATING,
        S.PLANNED_FAILING_BACK,
        S.FAILED_BACK,
        S.COMMITTING_FAILBACK,
        S.FAILBACK_COMMITTED,
        S.REPROTECTING,
        S.REPLICATING,
    ]
    for path in (migration, disaster_recovery):
        machine = Subject("m1", S.DISCOVERED)
        for state in path:
            transition(machine, state)
        assert machine.state is path[-1]


def test_migration_completed_is_final_and_says_so() -> None:
    with pytest.raises(ForbiddenTransition, match="MigrationCompleted, which is final"):
        transition(Subject("m9", S.MIGRATION_COMPLETED), S.REPLICATING, action="enable replication")


def test_failover_cannot_be_cancelled_back_to_replicating_once_failed_over() -> None:
    assert not can_transition(S.FAILED_OVER, S.REPLICATING)
    assert can_transition(S.PLANNED_FAILING_BACK, S.CANCELLING_PLANNED_FAILBACK)


def test_forbidden_transition_is_a_409_with_a_clear_message() -> None:
    with pytest.raises(ForbiddenTransition) as caught:
        transition(Subject("web-01", S.DISCOVERED), S.MIGRATING, action="migrate")
    response = error_response(caught.value)
    body = json.loads(response.get_body())
    assert response.status_code == 409
    assert body["error"]["code"] == "ForbiddenTransition"
    assert body["error"]["message"] == (
        "cannot migrate: machine web-01 is Discovered, and from Discovered it can only go to EnablingReplication"
    )
    assert body["error"]["details"] == [
        {
            "machineId": "web-01",
            "from": "Discovered",
            "to": "Migrating",
            "allowed": ["EnablingReplication"],
            "allowedOperations": ["enableReplication"],
        }
    ]


def test_protected_states_exclude_the_unprotected_ones() -> None:
    assert S.REPLICATING in PROTECTED_STATES and S.FAILED_OVER in PROTECTED_STATES
    assert not {S.DISCOVERED, S.REPLICATION_STOPPED, S.MIGRATED, S.MIGRATION_COMPLETED} & PROTECTED_STATES


def test_allowed_operations_follow_the_transition_table() -> None:
    ops = {state: [o.value for o in allowed_operations(state)] for state in S}
    assert ops[S.DISCOVERED] == ["enableReplication"]
    assert ops[S.REPLICATING] == ["stopReplication", "repair", "testMigrate", "migrate", "failover"]
    # The table's moves for a flow's own failure path are not the operator's.
    assert ops[S.TEST_MIGRATING] == [] and ops[S.MIGRATING] == [] and ops[S.FAILING_OVER] == []
    assert ops[S.TEST_MIGRATED] == ["testMigrateCleanup"]
    assert ops[S.MIGRATED] == ["completeMigration"]
    assert ops[S.FAILED_OVER] == ["changeRecoveryPoint", "commit"]
    assert ops[S.CANCELLING_PLANNED_FAILBACK] == []
    # A planned failback cancels itself when it fails; the operator cancels or commits once it is done.
    assert ops[S.REVERSE_REPLICATING] == ["plannedFailover"]
    assert ops[S.PLANNED_FAILING_BACK] == []
    assert ops[S.FAILED_BACK] == ["commit", "cancelPlannedFailover"]
    assert ops[S.PLANNED_FAILBACK_CANCEL_FAILED] == ["cancelPlannedFailover"]
    assert ops[S.FAILBACK_COMMITTED] == ["stopReplication", "reprotect"]
    assert ops[S.MIGRATION_COMPLETED] == []
    # Every operation that moves the machine is a move the table allows from where it is listed.
    for state, allowed in ops.items():
        for name in allowed:
            rule = OPERATIONS[Operation(name)]
            assert rule.stays or can_transition(state, rule.target_from(state)), (state, name)


def test_reprotect_is_offered_on_a_committed_failover_and_leads_to_reverse_replication() -> None:
    assert allowed_operations(S.FAILOVER_COMMITTED) == [Operation.STOP_REPLICATION, Operation.REPROTECT]
    machine = transition(Subject("web-01", S.FAILOVER_COMMITTED), S.REVERSE_REPROTECTING, action="reprotect")
    assert allowed_operations(machine.state) == []
    transition(machine, S.REVERSE_REPLICATING)
    assert machine.state is S.REVERSE_REPLICATING
    assert can_transition(S.REVERSE_REPLICATING, S.PLANNED_FAILING_BACK)


def test_a_failed_reprotect_returns_to_failover_committed_and_is_not_a_commit() -> None:
    assert can_transition(S.REVERSE_REPROTECTING, S.FAILOVER_COMMITTED)
    assert Operation.COMMIT not in allowed_operations(S.REVERSE_REPROTECTING)
    # Reprotect is asked only of a committed failover or failback: not before commit, not twice.
    for state in S:
        if state not in {S.FAILOVER_COMMITTED, S.FAILBACK_COMMITTED}:
            assert Operation.REPROTECT not in allowed_operations(state), state


def test_reprotect_is_refused_before_the_failover_is_committed() -> None:
    with pytest.raises(ForbiddenTransition) as caught:
        transition(Subject("web-01", S.FAILED_OVER), S.REVERSE_REPROTECTING, action="reprotect")
    assert caught.value.allowed_operations == [Operation.CHANGE_RECOVERY_POINT, Operation.COMMIT]


@pytest.mark.parametrize(
    ("state", "location"),
    [
        (S.DISCOVERED, Location.ON_PREMISES),
        (S.REPLICATING, Location.ON_PREMISES),
        (S.FAILING_OVER, Location.ON_PREMISES),
        (S.FAILED_OVER, Location.AZURE),
        (S.FAILOVER_COMMITTED, Location.AZURE),
        (S.REVERSE_REPROTECTING, Location.AZURE),
        (S.REVERSE_REPLICATING, Location.AZURE),
        (S.PLANNED_FAILING_BACK, Location.AZURE),
        (S.FAILED_BACK, Location.ON_PREMISES),
        (S.REPROTECTING, Location.ON_PREMISES),
        (S.MIGRATED, Location.AZURE),
    ],
)
def test_active_location_follows_the_state(state: MachineState, location: Location) -> None:
    assert active_location(state) is location


def test_reverse_states_are_protected() -> None:
    assert {S.REVERSE_REPROTECTING, S.REVERSE_REPLICATING} <= PROTECTED_STATES
