"""state.usage: pushes and pulls recorded once per event id, in any order; coverage."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from regprune.state import State, UsageEvent

T0 = datetime(2026, 11, 1, tzinfo=UTC)
DIGEST = "sha256:" + "a" * 64
HEARTBEAT = timedelta(seconds=30)
MAX_GAP = timedelta(minutes=10)


def pull(n: int, minutes: int, agent: str = "containerd/1.7", tag: str | None = "v1") -> UsageEvent:
    return UsageEvent(
        id=f"pull-{n}",
        action="pull",
        repository="app",
        digest=DIGEST,
        timestamp=T0 + timedelta(minutes=minutes),
        tag=tag,
        agent=agent,
    )


def push(n: int, minutes: int) -> UsageEvent:
    return UsageEvent(
        id=f"push-{n}",
        action="push",
        repository="app",
        digest=DIGEST,
        timestamp=T0 + timedelta(minutes=minutes),
        tag="v1",
    )


def test_a_pull_and_a_push_are_recorded(tmp_path):
    state = State(tmp_path / "s.db")
    result = state.usage.record("main", [push(1, 0), pull(2, 5)], T0)
    assert (result.recorded, result.duplicates) == (2, 0)
    usage = state.usage.get("main", "app", [DIGEST])[DIGEST]
    assert usage.first_push == T0
    assert usage.last_pull == T0 + timedelta(minutes=5)
    assert (usage.last_pull_tag, usage.last_pull_agent, usage.pulls) == ("v1", "containerd/1.7", 1)
    assert state.usage.get("other", "app", [DIGEST]) == {}


def test_a_redelivered_event_changes_nothing(tmp_path):
    state = State(tmp_path / "s.db")
    state.usage.record("main", [pull(1, 5)], T0)
    again = state.usage.record("main", [pull(1, 5), pull(1, 5)], T0)
    assert (again.recorded, again.duplicates) == (0, 2)
    assert state.usage.get("main", "app", [DIGEST])[DIGEST].pulls == 1
    # Event ids are per registry: the same id from another registry is another event.
    assert state.usage.record("other", [pull(1, 5)], T0).recorded == 1


def test_an_older_pull_arriving_late_does_not_move_the_last_pull_back(tmp_path):
    state = State(tmp_path / "s.db")
    state.usage.record("main", [pull(1, 50, agent="new/1", tag="v2")], T0)
    state.usage.record("main", [pull(2, 10, agent="old/1", tag="v1"), push(3, 20), push(4, 1)], T0)
    usage = state.usage.get("main", "app", [DIGEST])[DIGEST]
    assert usage.last_pull == T0 + timedelta(minutes=50)
    assert (usage.last_pull_tag, usage.last_pull_agent) == ("v2", "new/1")
    assert usage.first_push == T0 + timedelta(minutes=1)
    assert usage.pulls == 2
    assert usage.agents == ("new/1", "old/1")


def test_old_event_ids_are_forgotten_but_usage_stays(tmp_path):
    state = State(tmp_path / "s.db")
    state.usage.record("main", [pull(1, 5)], T0)
    assert state.usage.forget_old_event_ids(T0 + timedelta(days=15)) == 1
    assert state.usage.event_count("main") == 0
    assert state.usage.get("main", "app", [DIGEST])[DIGEST].pulls == 1


EVENTS = st.lists(
    st.builds(
        lambda n, minutes, kind, agent: pull(n, minutes, agent) if kind else push(n, minutes),
        st.integers(0, 30),
        st.integers(0, 10_000),
        st.booleans(),
        st.sampled_from(["a/1", "b/2", "c/3"]),
    ),
    max_size=25,
)


@settings(max_examples=60, deadline=None)
@given(events=EVENTS, order=st.randoms(use_true_random=False), split=st.integers(1, 5))
def test_any_order_and_any_redelivery_gives_the_same_usage(events, order, split):
    shuffled = State(":memory:")
    delivered = [*events, *events[: len(events) // 2]]  # some redelivered
    order.shuffle(delivered)
    # Only the first delivery of an id counts, whatever its content says after.
    firsts = {}
    for event in delivered:
        firsts.setdefault(event.id, event)
    reference = State(":memory:")
    reference.usage.record("main", list(firsts.values()), T0)
    for start in range(0, len(delivered), split):
        shuffled.usage.record("main", delivered[start : start + split], T0)

    got = shuffled.usage.get("main", "app", [DIGEST]).get(DIGEST)
    want = reference.usage.get("main", "app", [DIGEST]).get(DIGEST)
    if want is None:
        assert got is None
        return
    assert got is not None
    assert (got.first_push, got.last_pull, got.pulls) == (
        want.first_push,
        want.last_pull,
        want.pulls,
    )
    assert set(got.agents) == set(want.agents)
    pulls = [e for e in firsts.values() if e.action == "pull"]
    assert got.pulls == len(pulls)
    if pulls:
        assert got.last_pull == max(e.timestamp for e in pulls)


# -- coverage --------------------------------------------------------------------------------


def minutes(n: float) -> datetime:
    return T0 + timedelta(minutes=n)


def coverage(state: State, at: float):
    return state.usage.coverage("main", minutes(at), heartbeat=HEARTBEAT, max_gap=MAX_GAP)


def test_a_session_counts_from_its_first_event_while_it_is_live(tmp_path):
    state = State(tmp_path / "s.db")
    session = state.usage.start_session("main", minutes(0))
    assert coverage(state, 5).since is None  # nothing proves delivery yet
    state.usage.heard(session, minutes(3), event=True)
    state.usage.heard(session, minutes(100))
    assert coverage(state, 100.2).since == minutes(3)
    assert coverage(state, 100.2).covers(timedelta(minutes=97))
    assert not coverage(state, 100.2).covers(timedelta(minutes=98))


def test_a_short_restart_is_bridged_and_a_long_one_breaks_coverage(tmp_path):
    state = State(tmp_path / "s.db")
    first = state.usage.start_session("main", minutes(0))
    state.usage.heard(first, minutes(1), event=True)
    state.usage.end_session(first, minutes(60))
    second = state.usage.start_session("main", minutes(62))
    state.usage.heard(second, minutes(63), event=True)
    state.usage.heard(second, minutes(200))
    assert coverage(state, 200).since == minutes(1)
    state.usage.end_session(second, minutes(200))
    third = state.usage.start_session("main", minutes(300))
    state.usage.heard(third, minutes(301), event=True)
    state.usage.heard(third, minutes(400))
    found = coverage(state, 400)
    assert found.since == minutes(301)
    assert found.gaps == [(minutes(200), minutes(301))]


def test_a_listener_that_died_without_ending_covers_until_last_heard(tmp_path):
    state = State(tmp_path / "s.db")
    session = state.usage.start_session("main", minutes(0))
    state.usage.heard(session, minutes(1), event=True)
    state.usage.heard(session, minutes(30))  # then SIGKILL: never ended
    assert coverage(state, 30.5).since == minutes(1)
    dead = coverage(state, 120)
    assert dead.since is None
    assert dead.gaps[0] == (minutes(30), minutes(120))
