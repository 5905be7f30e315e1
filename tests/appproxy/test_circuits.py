"""The circuit registry and its state file (real files, no Envoy)."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
from bai.appproxy.adapters.state_file import StateFile
from bai.appproxy.domain.circuits import CircuitRegistry
from bai.appproxy.domain.model import CircuitSpec, FrontendMode, Protocol
from bai.common.errors import AlreadyExists, InvalidArgument, NotFound, ResourceExhausted


def _spec(**kw: object) -> CircuitSpec:
    fields: dict[str, object] = {
        "session_id": str(uuid.uuid4()),
        "kernel_id": str(uuid.uuid4()),
        "app": "jupyter",
        "protocol": Protocol.HTTP,
        "upstream_socket_path": "/tmp/k/jupyter.sock",
        "frontend_mode": FrontendMode.PORT,
        "owner_access_key": "AKIATEST",
    }
    fields.update(kw)
    return CircuitSpec(**fields)  # type: ignore[arg-type]


def _registry(
    tmp_path: Path, *, busy: frozenset[int] = frozenset(), size: int = 3
) -> CircuitRegistry:
    return CircuitRegistry(
        store=StateFile(tmp_path / "state.json"),
        port_range=(20000, 20000 + size - 1),
        port_probe=lambda port: port not in busy,
        upstream_roots=("/tmp/k",),
    )


async def test_create_allocates_ports_and_secrets(tmp_path: Path) -> None:
    registry = _registry(tmp_path, busy=frozenset({20000}))
    await registry.start()
    http, reused = await registry.create(_spec())
    assert not reused and http.frontend_port == 20001
    assert len(http.token) >= 32 and len(http.permit) >= 32 and http.token != http.permit
    tcp, _ = await registry.create(_spec(app="sshd", protocol=Protocol.TCP))
    assert tcp.frontend_port == 20002 and tcp.token == ""
    sub, _ = await registry.create(_spec(app="web", frontend_mode=FrontendMode.SUBDOMAIN))
    assert sub.frontend_port is None
    with pytest.raises(ResourceExhausted) as exc:
        await registry.create(_spec(app="more"))
    assert exc.value.reason == "NO_FREE_PORT"


async def test_same_spec_is_reused_and_different_spec_conflicts(tmp_path: Path) -> None:
    registry = _registry(tmp_path)
    await registry.start()
    spec = _spec()
    first, _ = await registry.create(spec)
    again, reused = await registry.create(spec)
    assert reused and again == first
    with pytest.raises(AlreadyExists):
        await registry.create(_spec(kernel_id=spec.kernel_id, upstream_socket_path="/tmp/k/o.sock"))


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"session_id": "nope"}, "INVALID_ARGUMENT"),
        ({"app": "bad name"}, "INVALID_ARGUMENT"),
        ({"owner_access_key": ""}, "INVALID_ARGUMENT"),
        ({"upstream_socket_path": "relative.sock"}, "INVALID_ARGUMENT"),
        ({"upstream_socket_path": "/tmp/k/../../etc/x.sock"}, "INVALID_ARGUMENT"),
        ({"upstream_socket_path": "/tmp/k/" + "x" * 110}, "INVALID_ARGUMENT"),
        ({"upstream_socket_path": "/var/run/docker.sock"}, "UPSTREAM_OUTSIDE_ROOTS"),
        (
            {"protocol": Protocol.TCP, "frontend_mode": FrontendMode.SUBDOMAIN},
            "TCP_NEEDS_PORT_MODE",
        ),
    ],
)
async def test_invalid_specs_are_refused(
    tmp_path: Path, change: dict[str, object], reason: str
) -> None:
    registry = _registry(tmp_path)
    await registry.start()
    with pytest.raises(InvalidArgument) as exc:
        await registry.create(_spec(**change))
    assert exc.value.reason == reason
    assert registry.all() == ()


async def test_pages_survive_deletions(tmp_path: Path) -> None:
    registry = _registry(tmp_path, size=10)
    await registry.start()
    session = str(uuid.uuid4())
    made = [
        (
            await registry.create(
                _spec(app=f"a{i}", session_id=session if i % 2 else str(uuid.uuid4()))
            )
        )[0]
        for i in range(7)
    ]
    page = registry.list_page(page_size=3)
    assert [c.id for c in page.circuits] == [c.id for c in made[:3]]
    await registry.delete(made[2].id)  # the page's last item: the token must still work
    rest = registry.list_page(page_size=10, page_token=page.next_page_token)
    assert [c.id for c in rest.circuits] == [c.id for c in made[3:]]
    assert rest.next_page_token == ""
    mine = registry.list_page(session_id=session)
    assert [c.id for c in mine.circuits] == [made[1].id, made[3].id, made[5].id]
    with pytest.raises(InvalidArgument):
        registry.list_page(page_token="!!not-a-token")


async def test_delete_and_delete_for_session(tmp_path: Path) -> None:
    registry = _registry(tmp_path, size=5)
    await registry.start()
    session = str(uuid.uuid4())
    a, _ = await registry.create(_spec(app="a", session_id=session))
    b, _ = await registry.create(_spec(app="b", session_id=session))
    c, _ = await registry.create(_spec(app="c"))
    with pytest.raises(NotFound):
        await registry.delete(str(uuid.uuid4()))
    assert await registry.delete(str(uuid.uuid4()), allow_missing=True) is False
    assert sorted(await registry.delete_for_session(session)) == sorted([a.id, b.id])
    assert await registry.delete_for_session(session) == []
    assert registry.all() == (c,)
    assert await registry.delete(c.id) is True
    again, _ = await registry.create(_spec(app="d"))
    assert again.frontend_port == 20000  # freed ports are reused


async def test_state_file_round_trip_and_change_notifications(tmp_path: Path) -> None:
    registry = _registry(tmp_path)
    await registry.start()
    changes: list[int] = []
    unsubscribe = registry.on_change(lambda: changes.append(len(registry.all())))
    made = [(await registry.create(_spec(app=f"x{i}")))[0] for i in range(2)]
    await registry.create(made[0].spec)  # reused: no change
    assert changes == [1, 2]
    unsubscribe()
    state = tmp_path / "state.json"
    assert state.stat().st_mode & 0o777 == 0o600
    assert json.loads(state.read_text())["version"] == 1
    reloaded = _registry(tmp_path)
    await reloaded.start()
    assert reloaded.all() == tuple(made)


async def test_corrupt_state_file_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "state.json").write_text("{not json")
    with pytest.raises(Exception, match="cannot read the state file"):
        await _registry(tmp_path).start()
