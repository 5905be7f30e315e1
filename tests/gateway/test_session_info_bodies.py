"""``GET /session/{ref}`` bodies memoized per manager reply equal ``session_info`` as JSON.

The fast path (SessionInfoFastPath) renders its body with SessionInfoBodies; the FastAPI route
returns ``convert.session_info``. Both must send the same JSON for every reply, ``age`` included.
"""

from __future__ import annotations

import json
import random
import uuid
from datetime import UTC, datetime, timedelta

from bai.gateway.convert import SessionInfoBodies, session_info
from bai.pb.manager.v1 import session_pb2 as spb
from bai.pb.manager.v1 import session_service_pb2 as sspb

NOW = datetime(2026, 11, 27, 3, 0, 0, 123456, tzinfo=UTC)
_SLOTS = ({}, {"cpu": "1", "mem": "268435456"}, {"cpu": "1.50", "cuda.shares": "0.5"},
          {"cpu": "not-a-number"}, {"mem": "1E+3", "cpu": "2"})


def _session(rng: random.Random) -> spb.Session:
    states = list(spb.Session.State.values())
    kernels = [
        spb.KernelInfo(id=str(uuid.UUID(int=rng.getrandbits(128))),
                       agent_id=rng.choice(["", "i-a"]), container_id=rng.choice(["", "c1"]),
                       state=rng.choice(states), cluster_role=rng.choice(["main", "sub", ""]),
                       cluster_idx=index, occupied_slots=rng.choice(_SLOTS))
        for index in range(rng.choice([0, 1, 1, 2, 3]))
    ]
    session = spb.Session(
        id=str(uuid.UUID(int=rng.getrandbits(128))), name=rng.choice(["s", "séance 😀", 'q"\\']),
        kernels=kernels,
        status=spb.SessionStatus(state=rng.choice(states), exit_code=rng.randint(-3, 3),
                                 reason=rng.choice(["", "UserRequested"])),
        spec=spb.SessionSpec(image="bai/python:3.11-debian12",
                             environ=rng.choice([{}, {"A": "1", "é": "\u2028"}]),
                             resources={"cpu": "1"}),
    )
    if rng.random() < 0.9:
        created = NOW - timedelta(seconds=rng.randint(0, 10**6))
        session.create_time.FromDatetime(created)
        session.create_time.nanos = rng.randint(0, 999_999_999)
        if rng.random() < 0.5:
            session.terminate_time.FromDatetime(created + timedelta(seconds=rng.randint(1, 9999)))
            session.terminate_time.nanos = rng.randint(0, 999_999_999)
    return session


def _reply(session: spb.Session) -> bytes:
    return sspb.GetSessionResponse(session=session).SerializeToString()


def test_memoized_bodies_are_session_info_as_json() -> None:
    rng = random.Random(7)
    bodies = SessionInfoBodies()
    for _ in range(400):
        session = _session(rng)
        expected = session_info(session, NOW)
        for _ in range(2):  # the second render comes from the memo
            body = bodies.render(_reply(session), NOW)
            assert json.loads(body) == expected
            assert body == json.dumps(expected, ensure_ascii=False,
                                      separators=(",", ":")).encode()


def test_age_follows_the_clock_until_the_session_ends() -> None:
    session = spb.Session(id="s1", name="s1")
    session.create_time.FromDatetime(NOW - timedelta(seconds=2))
    bodies = SessionInfoBodies()
    assert json.loads(bodies.render(_reply(session), NOW))["age"] == 2000
    assert json.loads(bodies.render(_reply(session), NOW + timedelta(seconds=1)))["age"] == 3000
    session.terminate_time.FromDatetime(NOW)
    ended = _reply(session)
    assert json.loads(bodies.render(ended, NOW + timedelta(hours=1)))["age"] == 2000
    unset = spb.Session(id="s2", name="s2")
    assert json.loads(bodies.render(_reply(unset), NOW))["age"] is None


def test_a_changed_reply_is_a_new_body_and_the_memo_is_bounded() -> None:
    bodies = SessionInfoBodies(max_entries=3)
    running = spb.Session(id="s1", name="s1",
                          status=spb.SessionStatus(state=spb.Session.STATE_RUNNING))
    assert json.loads(bodies.render(_reply(running), NOW))["status"] == "RUNNING"
    running.status.state = spb.Session.STATE_TERMINATING
    assert json.loads(bodies.render(_reply(running), NOW))["status"] == "TERMINATING"
    for index in range(10):
        named = spb.Session(id=f"n{index}", name=f"n{index}")
        assert json.loads(bodies.render(_reply(named), NOW))["sessionName"] == f"n{index}"
    assert len(bodies) <= 3
