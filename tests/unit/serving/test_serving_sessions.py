"""Grouping a batch by token length, so short posts are not padded to long ones."""

from __future__ import annotations

import pytest

from streampulse.serving.sessions import available_cores, length_groups, session_options

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("lengths", "bucket", "expected"),
    [
        ([5, 40, 7, 33, 16, 17], 16, [[0, 2, 4], [5], [3, 1]]),
        ([3, 3, 3], 16, [[0, 1, 2]]),
        ([64, 1], 1, [[1], [0]]),
        ([], 16, []),
    ],
)
def test_length_groups(lengths: list[int], bucket: int, expected: list[list[int]]) -> None:
    """With ``min_group`` 1, every bucket of lengths is its own group."""
    groups = length_groups(lengths, bucket)
    assert groups == expected
    assert sorted(i for g in groups for i in g) == list(range(len(lengths)))


@pytest.mark.parametrize(
    ("lengths", "min_group", "expected"),
    [
        ([5, 40, 7, 33, 16, 17], 2, [[0, 2, 4], [5, 3, 1]]),
        ([5, 40, 7, 33, 16, 17], 4, [[0, 2, 4, 5], [3, 1]]),
        ([5, 40, 7, 33, 16, 17], 10, [[0, 2, 4, 5, 3, 1]]),
    ],
)
def test_small_length_groups_merge_with_the_next(
    lengths: list[int], min_group: int, expected: list[list[int]]
) -> None:
    groups = length_groups(lengths, 16, min_group)
    assert groups == expected
    assert all(len(group) >= min_group for group in groups[:-1])


def test_session_options_use_the_available_cores() -> None:
    assert session_options(0).intra_op_num_threads == available_cores()
    assert session_options(3).intra_op_num_threads == 3
    assert session_options(1).inter_op_num_threads == 1
