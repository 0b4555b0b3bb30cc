"""Which cycles of the inbox may be applied now: strictly in sequence, bases (initial/resync) reset the chain."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from shared.domain.cycle import Cycle, CycleKind, CycleState
from shared.replication.cycles import plan_ready_cycles

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def cycle(sequence: int, kind: CycleKind = CycleKind.DELTA, cid: str | None = None) -> Cycle:
    return Cycle(
        id=cid or f"c{sequence}-{kind.value}",
        machine_id="m1",
        sequence=sequence,
        kind=kind,
        manifests={"d0": f"m/{sequence}.json"},
        received_at=NOW,
    )


def sequences(cycles: list[Cycle]) -> list[int]:
    return [c.sequence for c in cycles]


def test_empty_inbox_has_nothing_to_do() -> None:
    plan = plan_ready_cycles([], 3)
    assert (plan.ready, plan.superseded, plan.waiting_for, plan.needs_base) == ([], [], None, False)


def test_initial_cycle_starts_the_chain_and_deltas_follow_in_order() -> None:
    plan = plan_ready_cycles([cycle(2), cycle(0, CycleKind.INITIAL), cycle(1)], None)
    assert sequences(plan.ready) == [0, 1, 2]
    assert plan.waiting_for is None


def test_gap_holds_back_later_cycles() -> None:
    plan = plan_ready_cycles([cycle(3), cycle(4), cycle(6)], 2)
    assert sequences(plan.ready) == [3, 4]
    assert plan.waiting_for == 5
    assert plan.buffered == 1


def test_stale_and_duplicate_sequences_are_superseded() -> None:
    plan = plan_ready_cycles([cycle(1), cycle(2, cid="a"), cycle(2, cid="b"), cycle(3)], 1)
    assert sequences(plan.ready) == [2, 3]
    assert sorted(plan.superseded) == ["b", "c1-delta"]


def test_resync_supersedes_older_pending_deltas() -> None:
    plan = plan_ready_cycles([cycle(3), cycle(4), cycle(5, CycleKind.RESYNC), cycle(6)], 2)
    assert sequences(plan.ready) == [5, 6]
    assert sorted(plan.superseded) == ["c3-delta", "c4-delta"]


def test_resync_wins_over_a_delta_with_the_same_sequence() -> None:
    plan = plan_ready_cycles([cycle(3, cid="a-delta"), cycle(3, CycleKind.RESYNC, cid="z-resync")], 2)
    assert [c.id for c in plan.ready] == ["z-resync"]
    assert plan.superseded == ["a-delta"]


def test_a_reprotect_cycle_starts_a_new_chain_without_being_a_whole_copy() -> None:
    # Reprotecting plans without a watermark: deltas the appliance sent before it wait, and go.
    plan = plan_ready_cycles([cycle(7), cycle(9, CycleKind.REPROTECT), cycle(10)], None)
    assert sequences(plan.ready) == [9, 10]
    assert plan.superseded == ["c7-delta"] and not plan.needs_base
    waiting = plan_ready_cycles([cycle(7), cycle(8)], None)
    assert waiting.ready == [] and waiting.needs_base


def test_deltas_without_any_base_wait_for_the_initial_copy() -> None:
    plan = plan_ready_cycles([cycle(1), cycle(2)], None)
    assert plan.ready == []
    assert plan.needs_base is True
    assert plan.buffered == 2


def test_cycles_already_applied_or_rejected_are_ignored() -> None:
    applied = cycle(3).model_copy(update={"state": CycleState.APPLIED})
    assert plan_ready_cycles([applied], 2).ready == []


@given(
    st.lists(st.tuples(st.integers(0, 30), st.sampled_from(list(CycleKind))), max_size=25),
    st.one_of(st.none(), st.integers(0, 30)),
)
def test_ready_cycles_never_go_backwards_and_never_skip(
    items: list[tuple[int, CycleKind]], watermark: int | None
) -> None:
    cycles = [cycle(seq, kind, cid=f"c{i}") for i, (seq, kind) in enumerate(items)]
    plan = plan_ready_cycles(cycles, watermark)
    ready = sequences(plan.ready)
    if ready:
        first = plan.ready[0]
        assert watermark is None or first.sequence > watermark
        if first.kind not in (CycleKind.INITIAL, CycleKind.RESYNC, CycleKind.REPROTECT):
            assert watermark is not None and first.sequence == watermark + 1
        assert ready == list(range(ready[0], ready[0] + len(ready)))
    assert not set(plan.superseded) & {c.id for c in plan.ready}
