"""How the hf backend orders requests into batches and splits a batch into shared prefixes."""

from spar.llm.hf import MIN_EXTRA, MIN_SHARED, Unit, batch_order, prefill_plan

HEAD = list(range(1000, 1000 + MIN_SHARED))  # a template prefix every request has


def test_rows_without_a_shared_prefix_are_plainly_padded():
    batch = [[1, 2, 3, 4], [5, 6, 7], [8, 9, 10, 11, 12]]
    assert prefill_plan(batch) == [[Unit(0, 0, 3), Unit(0, 1, 2), Unit(0, 2, 4)]]


def test_a_common_head_then_one_group_per_shared_instruction_then_each_rest():
    a = HEAD + list(range(100, 100 + MIN_EXTRA + 4))  # instruction a
    b = HEAD + list(range(200, 200 + MIN_EXTRA + 9))  # instruction b
    batch = [a + [1, 2, 3], a + [4, 5], a + [6, 7, 8, 9], b + [10, 11], b + [12, 13, 14]]
    common, groups, rests = prefill_plan(batch)
    assert common == [Unit(0, 0, len(HEAD))]
    assert groups == [Unit(0, 0, len(a)), Unit(0, 3, len(b))]
    assert rests == [Unit(0, 0, len(a) + 2), Unit(0, 1, len(a) + 1), Unit(0, 2, len(a) + 3),
                     Unit(1, 3, len(b) + 1), Unit(1, 4, len(b) + 2)]


def test_a_row_that_is_the_prefix_of_another_keeps_its_last_token_for_generate():
    a = HEAD + list(range(100, 100 + MIN_EXTRA + 4))
    b = HEAD + list(range(200, 200 + MIN_EXTRA + 9))
    _, groups, rests = prefill_plan([a, a + [1, 2, 3], b])
    assert groups == [Unit(0, 0, len(a) - 1), Unit(0, 2, len(HEAD))]  # b alone: nothing beyond the head
    assert rests == [Unit(0, 0, len(a) - 1), Unit(0, 1, len(a) + 2), Unit(1, 2, len(b) - 1)]


def test_batch_order_keeps_requests_with_a_shared_start_together_and_runs_short_first():
    long_shared = [HEAD + [7] * 50 + [i] for i in range(3)]
    short_alone = [[i] * 5 for i in (1, 2)]
    medium_alone = [[3] * 30]
    encoded = [long_shared[0], short_alone[0], long_shared[1], medium_alone[0], long_shared[2], short_alone[1]]
    order = batch_order(encoded)
    assert order[:3] == [1, 5, 3]  # singletons by length
    assert sorted(order[3:]) == [0, 2, 4]  # the shared run stays whole, after them
