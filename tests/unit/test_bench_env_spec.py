"""Bench target specs with their own environment (loadtests/bench/env_spec.py)."""

import pytest

from loadtests.bench.env_spec import env_pairs, split_env


def test_split_env_reads_name_and_pairs() -> None:
    assert split_env("gateway") == ("gateway", {})
    assert split_env("/tmp/x+A=1+B=a=b") == ("/tmp/x", {"A": "1", "B": "a=b"})


@pytest.mark.parametrize("bad", ["A", "=1"])
def test_a_pair_without_name_or_equals_is_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="KEY=VALUE"):
        env_pairs([bad])
