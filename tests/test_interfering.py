"""The interfering-factors experiment: the builders make exactly the pair types described, and the
checkers of both tasks."""

import pytest

from spar.experiments import interfering as I


def test_letters_pairs_differ_as_described():
    items = I.letters_items(40, seed=1)
    assert items == I.letters_items(40, seed=1) and items != I.letters_items(40, seed=2)
    for it in items:
        rej, ref, intf = it["rejected"], it["refined"], it["interfering"]
        assert set(rej.split()) == set(ref.split()) == {it["letter"]}  # refined: the same lowercase letter ...
        assert len(rej.split()) != it["n"] == len(ref.split())  # ... only the count changes
        assert intf == ref.upper() and intf != ref  # interfering: right count, in uppercase
        assert I.letters_ok(it, ref) and I.letters_ok(it, intf) and not I.letters_ok(it, rej)
    assert I.uppercase_share(["a a A", "B"]) == pytest.approx(0.5)
    it = {"letter": "x", "n": 3}
    assert I.letters_ok(it, "x X x") and not I.letters_ok(it, "x x") and not I.letters_ok(it, "x y x")


def test_story_pairs_differ_as_described():
    frames = I.story_frames(6, seed=3)
    middles = ["The rain came early. Boats stayed in.", "A bell rang twice. Dogs barked at it.",
               "Snow covered the roofs. Children laughed.", "The market was empty. Only cats remained.",
               "Music drifted from a window. Someone danced.", None]  # the model wrote nothing once
    items = I.story_items(frames, middles, seed=0)
    assert len(items) == 5
    for it in items:
        first, last, mid = it["first"], it["last"], it["middle"]
        assert it["refined"] == f"{first} {mid} {last}"
        assert it["rejected"] in (f"{mid} {last}", f"{first} {mid}")  # exactly one frame sentence missing
        assert it["interfering"].startswith(first) and it["interfering"].endswith(last) and mid not in it["interfering"]
        assert I.story_ok(it, it["refined"]) and I.story_ok(it, it["interfering"]) and not I.story_ok(it, it["rejected"])
        assert not I.story_ok(it, f"{first} {last}")  # the two sentences alone are not a story of three to five
    assert I.story_overlap(items[:1], [items[0]["refined"]]) == 1.0
    assert I.story_overlap(items[:1], [items[0]["interfering"]]) < 0.7
    assert I.middle_of("The fox ran. It hid under a log. Then it sl", "The fox ran.", "End.") == "It hid under a log."
    assert I.middle_of("The fox ran.", "The fox ran.", "End.") is None


def test_pairs_are_trl_rows_and_the_summary_averages_over_seeds():
    items = I.letters_items(2, seed=1)
    rows = I.pairs(items, "interfering")
    assert rows[0]["chosen"][0]["content"] == items[0]["interfering"] and rows[0]["prompt"][0]["role"] == "user"
    points = [{"task": "letters", "kind": "base", "seed": None, "step": 0, "accuracy": 0.1, "factor": 0.2}]
    points += [{"task": "letters", "kind": "refined", "seed": s, "step": 10, "accuracy": a, "factor": 0.1}
               for s, a in ((0, 0.2), (1, 0.4))]
    summ = I.summary(points)["letters"]
    assert summ["base"] == {"accuracy": 0.1, "factor": 0.2}
    # the sample sd over seeds (n - 1): 0.2 and 0.4 are 0.1414 apart from their mean of 0.3, not 0.1
    assert summ["refined"][10]["accuracy"] == {"mean": 0.3, "sd": 0.1414, "n": 2}
