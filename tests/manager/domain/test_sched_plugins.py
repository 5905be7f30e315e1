"""Scheduler and agent-selector plugins on their own: queue orders, agent choices, loading by
entry point, slot types."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from bai.manager.domain import slots
from bai.manager.domain.errors import InvalidSlots
from bai.manager.domain.model import AgentRecord, AgentStatus, Slots
from bai.manager.domain.scheduling import (
    SCHEDULER_GROUP,
    SELECTOR_GROUP,
    Allocation,
    PendingSession,
    PluginNotFound,
    PluginRegistry,
    QueueContext,
    ResourceGroup,
    UsageSample,
)
from bai.manager.domain.scheduling.policies import (
    DrfPolicy,
    FairSharePolicy,
    FifoPolicy,
    LifoPolicy,
    decayed_usage,
)
from bai.manager.domain.scheduling.pool import AgentIndex
from bai.manager.domain.scheduling.queue import in_order
from bai.manager.domain.scheduling.selectors import (
    ConcentratedSelector,
    DispersedSelector,
    RoundRobinSelector,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)
GIB = 1 << 30


def pending(name: str, *, minute: int, key: str = "AK1", user: str = "a@x", project: str = "p",
            cpu: str = "1", priority: int = 10) -> PendingSession:
    return PendingSession(
        id=uuid.uuid4(), name=name, access_key=key, user=user, domain="default",
        project=project, resource_group="default", image="img",
        resources={"cpu": Decimal(cpu), "mem": Decimal(GIB)}, cluster_size=1,
        priority=priority, created_at=T0 + timedelta(minutes=minute))


def ctx(capacity: Slots | None = None, **kw: object) -> QueueContext:
    return QueueContext(group=ResourceGroup("default"), now=T0 + timedelta(hours=1),
                        capacity=capacity or {"cpu": Decimal(10), "mem": Decimal(100 * GIB)},
                        **kw)  # type: ignore[arg-type]


def names(order: list[PendingSession]) -> list[str]:
    return [s.name for s in order]


def test_fifo_and_lifo_order_by_age() -> None:
    queue = [pending("b", minute=2), pending("a", minute=1), pending("c", minute=3)]
    assert names(FifoPolicy().order(queue, ctx())) == ["a", "b", "c"]
    assert names(LifoPolicy().order(queue, ctx())) == ["c", "b", "a"]


def test_priority_tiers_come_before_the_policy_order() -> None:
    queue = [pending("old-low", minute=1, priority=5), pending("new-high", minute=9, priority=50),
             pending("mid", minute=5)]
    assert names(in_order(FifoPolicy(), queue, ctx())) == ["new-high", "mid", "old-low"]
    assert names(in_order(LifoPolicy(), queue, ctx())) == ["new-high", "mid", "old-low"]


def test_drf_favours_the_key_with_the_smallest_dominant_share() -> None:
    # AK1 already holds 6 of 10 cpus (dominant share 0.6); AK2 holds 20% of memory only.
    held = [Allocation("AK1", "a@x", "default/p", "default", {"cpu": Decimal(6)}),
            Allocation("AK2", "b@x", "default/p", "default", {"mem": Decimal(20 * GIB)})]
    queue = [pending("k1-first", minute=1, key="AK1"), pending("k1-second", minute=2, key="AK1"),
             pending("k2-first", minute=3, key="AK2"), pending("k2-second", minute=4, key="AK2")]
    order = names(DrfPolicy().order(queue, ctx(allocations=held)))
    # AK2 (0.2) goes until its share passes AK1's 0.6: each 1-cpu session adds 0.1 cpu share
    assert order == ["k2-first", "k2-second", "k1-first", "k1-second"]


def test_drf_progressive_filling_alternates_between_equal_keys() -> None:
    queue = [pending(f"a{i}", minute=i, key="AK1") for i in range(3)] + [
        pending(f"b{i}", minute=10 + i, key="AK2") for i in range(3)]
    assert names(DrfPolicy().order(queue, ctx())) == ["a0", "b0", "a1", "b1", "a2", "b2"]


def test_decayed_usage_halves_per_half_life_and_ignores_the_window_outside() -> None:
    now = T0 + timedelta(days=10)
    capacity = {"cpu": Decimal(10)}
    recent = UsageSample("a@x", "default/p", {"cpu": Decimal(10)}, now - timedelta(hours=1), now)
    old = UsageSample("b@x", "default/p", {"cpu": Decimal(10)}, now - timedelta(days=1, hours=1),
                      now - timedelta(days=1))
    ancient = UsageSample("c@x", "default/q", {"cpu": Decimal(10)}, now - timedelta(days=9),
                          now - timedelta(days=8))
    context = QueueContext(group=ResourceGroup("default"), now=now, capacity=capacity,
                           usage=[recent, old, ancient])
    usage = decayed_usage(context, window_seconds=7 * 86400, half_life_seconds=86400)
    assert usage[("user", "a@x")] == pytest.approx(2 * usage[("user", "b@x")], rel=0.01)
    assert usage[("user", "a@x")] == pytest.approx(3600, rel=0.02)  # whole cluster for ~1 h
    assert ("user", "c@x") not in usage  # outside the 7-day window


def test_fair_share_prefers_light_users_and_honours_weights() -> None:
    now = T0 + timedelta(hours=1)
    heavy = UsageSample("heavy@x", "default/p", {"cpu": Decimal(10)}, T0, now)
    medium = UsageSample("medium@x", "default/q", {"cpu": Decimal(2)}, T0, now)
    queue = [pending("heavy-1", minute=1, user="heavy@x", key="AKH", project="p"),
             pending("medium-1", minute=2, user="medium@x", key="AKM", project="q"),
             pending("light-1", minute=3, user="light@x", key="AKL", project="r"),
             pending("light-2", minute=4, user="light@x", key="AKL", project="r")]
    order = names(FairSharePolicy({"charge_seconds": 60}).order(queue, ctx(usage=[heavy, medium])))
    assert order == ["light-1", "light-2", "medium-1", "heavy-1"]
    # weight 10 on the heavy user and its project: 10x the usage counts as 1x, less than 2x
    weights = {("user", "heavy@x"): Decimal(10), ("project", "default/p"): Decimal(10)}
    order = names(FairSharePolicy({"charge_seconds": 60}).order(
        queue, ctx(usage=[heavy, medium], weights=weights)))
    assert order.index("heavy-1") < order.index("medium-1")


def agent(agent_id: str, cpu: int, used: int = 0, group: str = "default") -> tuple[
        AgentRecord, frozenset[str]]:
    return (AgentRecord(id=agent_id, address="127.0.0.1:1", status=AgentStatus.ALIVE,
                        capacity={"cpu": Decimal(cpu), "mem": Decimal(64 * GIB)},
                        occupied={"cpu": Decimal(used)} if used else {},
                        architecture="x86_64", resource_group=group, version="t",
                        first_contact=T0, last_heartbeat=T0), frozenset({"img"}))


ONE = {"cpu": Decimal(1), "mem": Decimal(GIB)}


def test_dispersed_takes_the_most_free_and_concentrated_the_least_free_that_fits() -> None:
    index = AgentIndex([agent("a", 8, used=6), agent("b", 8, used=1), agent("c", 8, used=7),
                        agent("d", 8, used=8)])
    pool = index.pool("default", "img")
    chosen = index.pick(pool, DispersedSelector(), ONE)
    assert chosen is not None and chosen.id == "b"
    chosen = index.pick(pool, ConcentratedSelector(), ONE)
    assert chosen is not None and chosen.id == "c"  # d is full
    two = {"cpu": Decimal(2)}
    chosen = index.pick(pool, ConcentratedSelector(), two)
    assert chosen is not None and chosen.id == "a"
    assert index.pick(pool, DispersedSelector(), {"cpu": Decimal(8)}) is None


def test_selections_follow_the_free_space_as_it_is_taken() -> None:
    index = AgentIndex([agent("a", 4), agent("b", 4)])
    pool = index.pool("default", "img")
    dispersed, concentrated = [], []
    for _ in range(4):
        cand = index.pick(pool, DispersedSelector(), ONE)
        assert cand is not None
        index.take(cand, ONE)
        dispersed.append(cand.id)
    assert dispersed == ["a", "b", "a", "b"]
    index = AgentIndex([agent("a", 4), agent("b", 4)])
    pool = index.pool("default", "img")
    for _ in range(5):
        cand = index.pick(pool, ConcentratedSelector(), ONE)
        assert cand is not None
        index.take(cand, ONE)
        concentrated.append(cand.id)
    assert concentrated[:4] == [concentrated[0]] * 4 and concentrated[4] != concentrated[0]


def test_round_robin_cycles_in_id_order_and_skips_full_agents() -> None:
    index = AgentIndex([agent("a", 1), agent("b", 8), agent("c", 8)])
    pool = index.pool("default", "img")
    rr = RoundRobinSelector()
    picks = []
    for _ in range(5):
        cand = index.pick(pool, rr, ONE)
        assert cand is not None
        index.take(cand, ONE)
        picks.append(cand.id)
    assert picks == ["a", "b", "c", "b", "c"]  # a had room for one


def test_pools_are_per_group_and_image() -> None:
    index = AgentIndex([agent("a", 8), agent("g", 8, group="gpu")])
    assert [c.id for c in index.pool("gpu", "img").members] == ["g"]
    assert len(index.pool("default", "other-image")) == 0


def test_plugins_load_by_name_from_entry_points() -> None:
    registry = PluginRegistry()
    assert set(registry.names(SCHEDULER_GROUP)) >= {"fifo", "lifo", "drf", "fair-share"}
    assert set(registry.names(SELECTOR_GROUP)) >= {"concentrated", "dispersed", "round-robin"}
    assert isinstance(registry.scheduler("drf", {}), DrfPolicy)
    assert isinstance(registry.selector("round-robin", {}), RoundRobinSelector)
    # one instance per (name, options): round-robin keeps its cursor between passes
    assert registry.selector("round-robin", {}) is registry.selector("round-robin", {})
    fair = registry.scheduler("fair-share", {"half_life_seconds": 60})
    assert isinstance(fair, FairSharePolicy) and fair.half_life_seconds == 60
    with pytest.raises(PluginNotFound, match="no backendai_scheduler_v10 plugin named 'nope'"):
        registry.scheduler("nope", {})


def test_slot_types_by_name() -> None:
    assert slots.slot_type("mem") is slots.SlotType.BYTES
    assert slots.slot_type("cuda.mem") is slots.SlotType.BYTES
    assert slots.slot_type("cuda.device") is slots.SlotType.UNIQUE
    assert slots.slot_type("cuda.shares") is slots.SlotType.COUNT
    assert slots.slot_type("cpu") is slots.SlotType.COUNT
    parsed = slots.parse_request({"cuda.device": "2", "cuda.shares": "0.5", "cuda.mem": "2g"})
    assert parsed == {"cuda.device": 2, "cuda.shares": Decimal("0.5"), "cuda.mem": 2 * GIB}
    with pytest.raises(InvalidSlots) as exc:
        slots.parse_request({"cuda.device": "0.5"})
    assert exc.value.reason == "FRACTIONAL_UNIQUE_SLOT"
    assert slots.scale({"cpu": Decimal(2)}, 3) == {"cpu": Decimal(6)}
