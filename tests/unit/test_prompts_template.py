"""Strict rendering: every mistake is a 400 naming what is wrong."""

from __future__ import annotations

import pytest

from app.errors import InvalidRequestError
from app.prompts.template import parse_template, render
from tests.prompt_fixtures import TEMPLATE


def test_missing_and_extra_variables_are_named() -> None:
    t = parse_template(TEMPLATE)
    with pytest.raises(InvalidRequestError, match="Missing prompt variables: customer, product") as exc:
        render(t, {})
    assert exc.value.status_code == 400 and exc.value.param == "prompt_ref.variables"
    with pytest.raises(InvalidRequestError, match="Unknown prompt variables: colour, size"):
        render(t, {"customer": "a", "product": "b", "size": 1, "colour": "red"})


def test_types_are_checked() -> None:
    t = parse_template({"messages": [{"role": "user", "content": "{{ n }} {{ flag }}"}],
                        "variables": {"n": {"type": "integer"}, "flag": {"type": "boolean"}}})
    assert render(t, {"n": 3, "flag": True})[0]["content"] == "3 True"
    with pytest.raises(InvalidRequestError, match=r"n \(expected integer, got str\)"):
        render(t, {"n": "3", "flag": True})
    with pytest.raises(InvalidRequestError, match=r"n \(expected integer, got bool\)"):
        render(t, {"n": True, "flag": True})


def test_undefined_attribute_is_400_not_empty() -> None:
    t = parse_template({"messages": [{"role": "user", "content": "Hi {{ user.name }}"}],
                        "variables": {"user": {"type": "object"}}})
    assert render(t, {"user": {"name": "Ann"}})[0]["content"] == "Hi Ann"
    with pytest.raises(InvalidRequestError, match="has no attribute 'name'"):
        render(t, {"user": {}})


def test_sandbox_refuses_unsafe_access_and_huge_output() -> None:
    t = parse_template({"messages": [{"role": "user", "content": "{{ x.__class__.__mro__ }}"}],
                        "variables": {"x": {}}})
    with pytest.raises(InvalidRequestError, match="unsafe"):
        render(t, {"x": "a"})
    t = parse_template({"messages": [{"role": "user", "content": "{{ x * 10000000 }}"}], "variables": {"x": {}}})
    with pytest.raises(InvalidRequestError, match="repetition too large"):
        render(t, {"x": "ab"})


@pytest.mark.parametrize(("content", "value"), [
    ("{% macro m(n) %}{{ m(n) }}{% endmacro %}{{ m(1) }}", "a"),  # RecursionError (was a 500)
    ("{{ x|dictsort }}", "abc"),  # AttributeError: a string has no items (was a 500)
    ("{{ x|slice(0)|list }}", "abc"),  # ZeroDivisionError
])
def test_any_rendering_failure_is_a_400(content: str, value: str) -> None:
    """Issue 14 #5: a prompt template that fails on the values given is the request's fault, never a 5xx."""
    t = parse_template({"messages": [{"role": "user", "content": content}], "variables": {"x": {"type": "string"}}})
    with pytest.raises(InvalidRequestError, match="Prompt rendering failed") as exc:
        render(t, {"x": value})
    assert exc.value.status_code == 400 and exc.value.param == "prompt_ref.variables"
