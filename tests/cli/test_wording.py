"""Validation messages in the CLI's words (pure)."""

from __future__ import annotations

import pytest

from miniport.cli.wording import reworded


@pytest.mark.parametrize(("said", "cli_words"), [
    ("steps: List should have at least 2 items after validation, not 1",
     "--step: give at least 2, not 1"),
    ("metrics: List should have at most 5 items after validation, not 6",
     "--metric: give at most 5, not 6"),
    ("type: Value error, 'float' is not one of int, string",
     "--type: 'float' is not one of int, string"),
    ("granularity: Input should be 'hour', 'day' or 'all'",
     "--granularity: must be 'hour', 'day' or 'all'"),
    ("user_id: String should have at least 1 character", "--user: must not be empty"),
    ("request body: Field required", "request body: is required"),
])  # fmt: skip
def test_the_validation_library_wording_becomes_the_clis(said: str, cli_words: str) -> None:
    assert reworded(said) == cli_words


def test_each_part_is_reworded_and_unknown_messages_pass_unchanged() -> None:
    said = "steps: List should have at least 2 items after validation, not 1; app is gone"
    assert reworded(said) == "--step: give at least 2, not 1; app is gone"
