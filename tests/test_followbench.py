"""FollowBench's rule-checked items: each rule family on hand-made answers that pass and fail, the
count of rule items in the real data, and HSR/CSL on a small hand-computed example."""

import pytest

from conftest import shared_data
from spar.eval.followbench import Item, check, load_followbench, scores


def item(source, level, target="", file="content", example_id=1):
    return Item(file, example_id, level, source, "instr", target)


@pytest.mark.parametrize("it, good, bad", [
    (item("E2E", 1, "name[Aromi]"), "name[Aromi]", "name[Aromi] "),
    (item("WIKIEVENTS", 2, "a\nb\nc"), "a\nc", "a\nd"),
    (item("CONLL2003", 1, "['Paris', 'paris']"), "paris", "Lyon"),
    (item("xsum", 1), "Police are searching for a man.", "One. Two."),
    (item("xsum", 5), "Police are running an operation near the coast", "Police ran an operation near the coast"),
    (item("samsum", 3), "They will sort the stuff out tomorrow.", "They will sort it out tomorrow."),
    (item("samsum", 5), "They will sort the stuff out tomorrow.", "They will sort the stuff out, tomorrow."),
    (item("gigaword", 3), "police find missing boy safe in the woods", "Police find missing boy safe in the woods"),
    (item("gigaword", 5), "police find missing boy safe in the woods", "police find missing boy safe at the bus"),
    (item("arxiv", 4), "We show that activations predict loss", "Our work shows that activations predict loss"),
    (item("cnn_dailymail", 3), "Potter left. The actor smiled. His films sold well.", "Potter left. He smiled. His films sold."),
    (item("cnn_dailymail", 5), "Potter left. The actor smiled. He has made films.", "Potter left. The actor smiled. He made films."),
    (item("BBH_logical", 1, "(B)"), "Maybe (A), but the answer is (B)", "The answer is (B), not (C)"),
    (item("BBH_time", 1, "05/01/2021"), "It was 04/30/2021, so 05/01/2021.", "05/01/2021 or 05/02/2021"),
    (item("gsm_8k", 1, "$18"), "She earns $18", "She earns 18 dollars"),
    (item("self_made_space", 1, "left"), "The ball is to the left.", "The ball is to the right."),
    (item("text_editing", 2, "HELLO"), "HELLO", "hello"),
    (Item("example", 1, 3, "imdb", "x", "{instruction}\nSentiment: {answer}"), "Sentiment: positive", "It is positive"),
    (Item("format", 22, 1, "koala", "x", ""), "1. A.\n\n2. B.\n\n3. C.", "1. A.\n\n2. B."),
    (Item("format", 30, 2, "helpful_base", "x", ""),
     "**1. a:** x **2. b:** x **3. c:** x **4. d:** x **5. e:** x", "**1. a:** x **2. b:** x"),
])
def test_each_rule_passes_its_good_answer_and_fails_its_bad_one(it, good, bad):
    assert check(it, good) is True
    assert check(it, bad) is False


def test_levels_add_constraints():
    g = "Police are searching for a man near Newton Stewart."  # one sentence, short, names the town
    assert check(item("xsum", 2), g) and not check(item("xsum", 3), g)


def test_the_real_data_has_350_rule_checked_items_of_820():
    items = load_followbench(shared_data("followbench", "data"))
    assert len(items) == 820 and sum(it.rule_checked for it in items) == 350


def test_hsr_per_level_and_csl_by_hand():
    its = [Item("content", e, lv, "E2E", "x", "t") for e in (1, 2) for lv in range(1, 6)]
    # example 1 passes levels 1, 2 then fails 3 (CSL 2); example 2 fails level 1 (CSL 0)
    v = {it.id: (it.example_id == 1 and it.level in (1, 2, 4)) for it in its}
    s = scores(its, v)
    assert s["hsr_by_level"] == {1: 50.0, 2: 50.0, 3: 0.0, 4: 50.0, 5: 0.0}
    assert s["csl"] == 1.0 and s["csl_examples"] == 2
    assert s["hsr_by_file"]["content"][1] == 50.0 and s["hsr_by_file"]["style"][1] is None


def test_the_command_scores_saved_responses_and_refuses_the_unbuilt_part(tmp_path):
    import json

    from typer.testing import CliRunner

    from spar.cli import app

    data = shared_data("followbench", "data")
    r = tmp_path / "r.jsonl"
    r.write_text(json.dumps({"id": "content:1:1", "prompt": [], "completions": ["x"]}) + "\n")
    res = CliRunner().invoke(app, ["eval", "followbench", "--data", str(data), "--responses", str(r), "-o", str(tmp_path / "s.json")])
    assert res.exit_code == 2 and "--rules-only" in res.output
    res = CliRunner().invoke(app, ["eval", "followbench", "--data", str(data), "--responses", str(r), "--rules-only",
                                   "-o", str(tmp_path / "s.json")])
    assert res.exit_code == 0, res.output
    out = json.loads((tmp_path / "s.json").read_text())
    assert out["items"] <= 1 and out["of"] == 820 and out["part"] == "rules only"
