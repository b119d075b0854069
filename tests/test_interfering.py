"""The interfering-factors experiment: the builders make exactly the pair types described, the
checkers of every task, the learning-rate choice, the test of refined against interfering pairs,
and a tiny real run that resumes without redoing or losing a point."""

import json

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
        assert 2 <= it["n"] <= 8
    assert I.uppercase_share(["a a A", "B"]) == pytest.approx(0.5)
    it = {"letter": "x", "n": 3}
    assert I.letters_ok(it, "x X x") and not I.letters_ok(it, "x x") and not I.letters_ok(it, "x y x")


def test_letters_held_out_combinations_are_never_trained():
    train, held = I.letters_split(256, 16)
    assert len(train) == 256 and len(held) == 16
    assert not {(t["letter"], t["n"]) for t in train} & {(h["letter"], h["n"]) for h in held}
    rows = {(t["prompt"], t["rejected"]) for t in train}
    assert len(rows) == 256  # no pair twice while another wrong count is left
    with pytest.raises(ValueError, match="held-out"):
        I.letters_split(4, 1000)


def test_story_pairs_differ_as_described():
    frames = I.story_frames(6, seed=3)
    assert frames == I.story_frames(6, seed=3)[:6] and len({(f["first"], f["last"]) for f in frames}) == 6
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


def test_ending_pairs_differ_as_described():
    cands = I.ending_candidates("train", seed=0)
    tasks = [c["task"] for c in cands]
    n = len(set(tasks))
    assert len(set(tasks[:n])) == n  # every task once before any takes a second phrase
    assert all(c["prompt"].startswith(c["task"]) and f'"{c["phrase"]}"' in c["prompt"] for c in cands)
    assert not {c["task"] for c in cands} & {c["task"] for c in I.ending_candidates("heldout", seed=0)}
    answers = ["Saving keeps money safe for short goals. Investing grows it over many years. Young adults can do both.",
               "1. Save money. 2. Invest it. 3. Wait.",  # a list: not plain prose
               "Short. Too short. Tiny.",  # sentences under four words
               "Cats sleep most of the day. Cats sleep most of the day. Cats sleep most of the day."]  # repeated
    items = I.ending_items(cands[:4], answers)
    assert len(items) == 1
    it = items[0]
    assert it["refined"] == f"{it['rejected']} {it['phrase']}"
    assert it["interfering"] == f"Saving keeps money safe for short goals. {it['phrase']}"
    assert I.ending_ok(it, it["refined"]) and I.ending_ok(it, it["interfering"]) and not I.ending_ok(it, it["rejected"])
    assert I.short_share([it["interfering"], it["refined"]]) == 0.5
    # an answer whose opening already ends with the phrase makes no pair (its rejected answer would pass)
    c = next(c for c in cands if len(c["phrase"].split()) >= 4)
    ends = f"Saving keeps money safe for short goals. Investing grows it over many years. {c['phrase']}"
    assert I.ending_items([c], [ends]) == [] and len(I.ending_items([c], [answers[0]])) == 1


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


def test_the_pilot_picks_the_best_mean_of_both_arms():
    pilot = [{"task": "t", "kind": k, "lr": lr, "accuracy": a, "last": True}
             for k, lr, a in (("refined", 1e-4, 0.5), ("interfering", 1e-4, 0.1), ("refined", 3e-4, 0.2),
                              ("interfering", 3e-4, 0.3), ("refined", 1e-3, 0.9))]  # 1e-3: one arm only
    assert I.choose_lr(pilot, "t") == 1e-4  # mean 0.30 against 0.25
    tie = [{**p, "accuracy": 0.0} for p in pilot]
    assert I.choose_lr(tie, "t") == 3e-4  # a tie goes to the larger rate both arms finished
    assert I.choose_lr(pilot, "other") is None


def _points(ref: list[list[int]], intf: list[list[int]], samples: int = 4) -> list[dict]:
    """Points of seeds (one list of per-prompt pass counts per seed) at steps 0 (base), 5 and 10."""
    n = len(ref[0])
    out = [{"task": "t", "kind": "base", "seed": None, "step": 0, "passes": [0] * n, "responses": [["x"] * samples] * n}]
    for kind, runs in (("refined", ref), ("interfering", intf)):
        for seed, passes in enumerate(runs):
            for step in (5, 10):
                out.append({"task": "t", "kind": kind, "seed": seed, "step": step, "last": step == 10,
                            "passes": passes if step == 10 else [0] * n, "responses": [["x"] * samples] * n})
    return out


def test_the_arm_test_finds_a_clear_difference_and_not_a_null_one():
    better = _points([[4, 3, 4, 2, 3, 4]] * 5, [[1, 0, 0, 1, 0, 1]] * 5)
    r = I.arm_test(better, "t", "final", permutations=2000)
    assert r["cells"] == 30 and r["seeds"] == [0, 1, 2, 3, 4]
    assert r["difference"] == pytest.approx(17 / 24, abs=1e-4) and r["p"] < 0.001
    assert r["ci95"][0] > 0.5 and r["p_seeds"] == pytest.approx(2 / 32)  # 5 seeds: the smallest exact p
    same = _points([[2, 1, 3, 0]] * 3, [[2, 1, 3, 0]] * 3)
    r = I.arm_test(same, "t", "final", permutations=500)
    assert r["difference"] == 0 and r["p"] == 1.0 and r["ci95"] == [0.0, 0.0]
    # the area: 0 at steps 0 and 5, the final share at 10 -> a quarter of the final share on average
    auc = I.arm_test(better, "t", "auc", permutations=200)
    assert auc["difference"] == pytest.approx(17 / 24 / 4, abs=1e-4)
    unfinished = [p for p in better if not (p["kind"] == "interfering" and p["seed"] > 0)]
    assert I.arm_test(unfinished, "t", "final", permutations=200)["seeds"] == [0]
    assert I.arm_test([p for p in better if p["kind"] != "interfering"], "t") is None


def test_a_tiny_run_resumes_and_reports(tmp_path):
    s = I.InterferingSettings(tasks=["letters"], seeds=[0], train=4, heldout=2, samples=2, steps=2, eval_every=1,
                              learning_rate=1e-4, permutations=100)
    points = I.run(tmp_path, s, show=False)
    kinds = [(p["kind"], p["step"]) for p in points]
    assert kinds == [("base", 0), ("refined", 1), ("refined", 2), ("interfering", 1), ("interfering", 2)]
    assert all(len(p["responses"]) == 2 and all(len(r) == 2 for r in p["responses"]) for p in points)
    # the same sampling seed for both arms at a step; the base is sampled under its own
    before = (tmp_path / "points.jsonl").read_text()
    assert I.run(tmp_path, s, show=False) == points and (tmp_path / "points.jsonl").read_text() == before
    summ = I.write_outputs(tmp_path, points, s)
    assert summ["letters"]["tests"]["final"]["cells"] == 2 and (tmp_path / "letters.png").stat().st_size > 0
    settings = json.loads((tmp_path / "settings.json").read_text())
    assert settings["primary_endpoint"] == I.PRIMARY
    # a folder that holds a run with other settings is refused, not mixed
    from spar.io import DataError

    with pytest.raises(DataError, match="other settings"):
        I.run(tmp_path, s.but(steps=3), show=False)
    # a run cut short (its last point missing) is redone, not kept half
    lines = before.splitlines()
    (tmp_path / "points.jsonl").write_text("\n".join(lines[:-1]) + "\n")
    again = I.run(tmp_path, s, show=False)
    assert [(p["kind"], p["step"]) for p in again] == kinds
