"""Backend.AI's filter/order mini-languages: exact trees for good input, INVALID_ARGUMENT (never
anything else) for any other text."""

from __future__ import annotations

import pytest
from bai.common.errors import InvalidArgument
from bai.manager.domain.query_filter import And, Cmp, Not, Or, OrderBy, parse_filter, parse_order
from hypothesis import given
from hypothesis import strategies as st

FIELDS = {"email": str, "rate_limit": int, "is_active": bool}


def test_precedence_parentheses_and_values() -> None:
    tree = parse_filter('email ilike "%a\\"b%" & (rate_limit >= 10 | !is_active == true)', FIELDS)
    assert tree == And((Cmp("email", "ilike", '%a"b%'),
                        Or((Cmp("rate_limit", ">=", 10),
                            Not(Cmp("is_active", "==", True))))))
    assert parse_filter('email == "x" | email == "y" & rate_limit < 3', FIELDS) == Or((
        Cmp("email", "==", "x"), And((Cmp("email", "==", "y"), Cmp("rate_limit", "<", 3)))))
    assert parse_filter("email != null", FIELDS) == Cmp("email", "!=", None)
    assert parse_filter("  ", FIELDS) is None
    assert parse_order("-rate_limit, +email,is_active", FIELDS) == (
        OrderBy("rate_limit", True), OrderBy("email", False), OrderBy("is_active", False))


@pytest.mark.parametrize(("text", "needle"), [
    ('name == "x"', "unknown field 'name'"),
    ('email =~ "x"', "position"),
    ("rate_limit == \"3\"", "compares with a int"),
    ("is_active like \"t\"", "like needs a text field"),
    ('(email == "x"', "expected ')'"),
    ('email == "x")', "unexpected ')'"),
    ("email >", "expected a value"),
    ("rate_limit > null", "null only compares"),
])
def test_bad_filters_say_what_is_wrong(text: str, needle: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        parse_filter(text, FIELDS)
    assert caught.value.reason == "INVALID_FILTER" and needle in caught.value.message


@given(st.text(max_size=80))
def test_any_text_is_a_tree_or_invalid_argument(text: str) -> None:
    try:
        parse_filter(text, FIELDS)
    except InvalidArgument as exc:
        assert exc.reason == "INVALID_FILTER"
    try:
        parse_order(text, FIELDS)
    except InvalidArgument as exc:
        assert exc.reason == "INVALID_ORDER"
