"""Pure domain rules: slot parsing and arithmetic, request validation, image resolution."""

from __future__ import annotations

from decimal import Decimal

import pytest
from bai.manager.domain import slots
from bai.manager.domain.errors import InvalidSessionRequest, InvalidSlots
from bai.manager.domain.images import aliases_of, min_resources, resolve
from bai.manager.domain.model import ImageRecord, SessionType
from bai.manager.domain.requests import CreateRequest, apply_image_minimums, validate


@pytest.mark.parametrize(("text", "expected"), [
    ("512m", 536870912), ("1g", 1 << 30), ("1G", 1 << 30), ("1.5g", 3 << 29),
    ("2048", 2048), ("64k", 65536), ("1gib", 1 << 30), ("1t", 1 << 40),
])
def test_memory_suffixes(text: str, expected: int) -> None:
    assert slots.parse_amount("mem", text) == expected


@pytest.mark.parametrize("raw", [{"cpu": "0"}, {"cpu": "-1"}, {"cpu": "abc"}, {"mem": "1x"},
                                 {"mem": "0"}, {"cpu": "NaN"}, {"cpu": "inf"}, {"Bad Name": "1"}])
def test_bad_requests(raw: dict[str, str]) -> None:
    with pytest.raises(InvalidSlots):
        slots.parse_request(raw)


def test_request_and_arithmetic_stay_decimal() -> None:
    request = slots.parse_request({"cpu": "0.5", "mem": "512m", "cuda.shares": "0.1"})
    assert request == {"cpu": Decimal("0.5"), "mem": Decimal(536870912),
                       "cuda.shares": Decimal("0.1")}
    total = slots.add(slots.add({}, request), request)
    assert total["cuda.shares"] == Decimal("0.2")  # no float drift
    assert slots.sub(total, request) == request
    assert slots.sub(request, total) == {}  # never negative
    assert slots.missing({"cpu": Decimal(1)}, request) == {"mem": Decimal(536870912),
                                                          "cuda.shares": Decimal("0.1")}
    assert slots.to_strings({"cpu": Decimal("2.000"), "mem": Decimal("1E+3")}) == {
        "cpu": "2", "mem": "1000"}
    assert slots.describe({"cpu": Decimal(2), "mem": Decimal(1 << 30)}) == "cpu=2, mem=1g"


def test_validate_names_types_and_cluster_size() -> None:
    assert validate(CreateRequest(image="x")).name.startswith("bai-")
    assert validate(CreateRequest(image="x", name="a.b_c-1")).name == "a.b_c-1"
    assert validate(CreateRequest(image="x", session_type="BATCH",
                                  startup_command="ls")).session_type is SessionType.BATCH
    for bad in (dict(name="abc"), dict(name="x" * 65), dict(name="no/slash"),
                dict(session_type="batch"), dict(cluster_size=17), dict(image=" "),
                dict(max_wait_seconds=-1), dict(request_id="r" * 200), dict(priority=101),
                dict(priority=-1), dict(dependencies=tuple(f"s{i}" for i in range(17)))):
        with pytest.raises(InvalidSessionRequest):
            validate(CreateRequest(**{"image": "x", **bad}))  # type: ignore[arg-type]


def _image(ref: str, aliases: str = "", agents: tuple[str, ...] = ("i-1",),
           **labels: str) -> ImageRecord:
    all_labels = {"ai.bai.aliases": aliases, **{k.replace("_", "."): v
                                               for k, v in labels.items()}}
    return ImageRecord(ref=ref, digest="", labels=all_labels, size_bytes=0, architecture="",
                       aliases=aliases_of(all_labels), agent_ids=agents)


def test_image_resolution_exact_alias_suffix_and_held_only() -> None:
    images = [_image("bai/python:3.11-debian12", "python, python:3.11"),
              _image("bai/r:4", "r"), _image("bai/gone:1", "gone", agents=())]
    assert resolve("bai/r:4", images) is images[1]
    assert resolve("python:3.11", images) is images[0]
    assert resolve("python:3.11-debian12", images) is images[0]
    assert resolve("gone", images) is None
    assert resolve("python:3.12", images) is None


def test_image_minimums_fill_defaults_and_reject_less() -> None:
    image = _image("big", ai_backend_resource_min_cpu="2", ai_backend_resource_min_mem="2g")
    assert min_resources(image.labels) == {"cpu": 2, "mem": 2 << 30}
    assert apply_image_minimums({}, image) == {"cpu": 2, "mem": 2 << 30}
    assert apply_image_minimums({}, _image("small")) == {"cpu": 1, "mem": 1 << 30}
    assert apply_image_minimums({"cpu": Decimal(4)}, image)["cpu"] == 4
    with pytest.raises(InvalidSlots):
        apply_image_minimums({"mem": Decimal(1 << 20)}, image)
