"""Recovery-point retention as a pure decision: count, age, the newest point, protected points."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from shared.domain.cycle import Consistency
from shared.replication.replica_disks import RecoveryPointSnapshot, RetentionPolicy, select_expired

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def point(sequence: int, hours_ago: float) -> RecoveryPointSnapshot:
    created = NOW - timedelta(hours=hours_ago)
    return RecoveryPointSnapshot(
        blob_name="vm/disk.vhd",
        snapshot=created.strftime("%Y-%m-%dT%H:%M:%S.0000000Z"),
        cycle_id=f"c{sequence}",
        sequence=sequence,
        consistency=Consistency.CRASH,
        created_at=created,
    )


def cycles(points: list[RecoveryPointSnapshot]) -> list[str]:
    return [p.cycle_id for p in points]


def test_count_keeps_the_newest_n() -> None:
    points = [point(i, 10 - i) for i in range(6)]
    expired = select_expired(points, RetentionPolicy(max_count=3, max_age=timedelta(days=7)), now=NOW)
    assert cycles(expired) == ["c0", "c1", "c2"]


def test_age_prunes_old_points_even_within_the_count() -> None:
    points = [point(0, 80), point(1, 73), point(2, 1)]
    expired = select_expired(points, RetentionPolicy(max_count=24, max_age=timedelta(hours=72)), now=NOW)
    assert cycles(expired) == ["c0", "c1"]


def test_the_newest_point_survives_any_policy() -> None:
    points = [point(0, 500), point(1, 400)]
    expired = select_expired(points, RetentionPolicy(max_count=1, max_age=timedelta(hours=1)), now=NOW)
    assert cycles(expired) == ["c0"]
    assert select_expired([], RetentionPolicy(max_count=1, max_age=timedelta(hours=1)), now=NOW) == []


def test_protected_points_are_never_pruned_and_order_is_by_sequence() -> None:
    points = [point(3, 1), point(1, 3), point(2, 2), point(0, 4)]  # listed out of order
    protected = frozenset({points[1].snapshot})  # c1, e.g. a test migration's point
    expired = select_expired(
        points, RetentionPolicy(max_count=1, max_age=timedelta(days=1)), now=NOW, protected=protected
    )
    assert cycles(expired) == ["c0", "c2"]


def test_policy_is_validated() -> None:
    with pytest.raises(ValidationError):
        RetentionPolicy(max_count=0, max_age=timedelta(hours=1))
    with pytest.raises(ValidationError):
        RetentionPolicy(max_count=3, max_age=timedelta(0))
