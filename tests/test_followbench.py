"""FollowBench's rule-checked items: each rule family on hand-made answers that pass and fail, the
count of rule items in the real data, and HSR/CSL on a small hand-computed example."""

import pytest

from conftest import shared_data
from spar.eval.followbench import Item, check, judge_prompt, load_followbench, parse_judge, scores


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


@pytest.mark.parametrize("reply, level, want", [
    ("The constraints are ...\n['YES', 'NO', 'YES']", 3, [True, False, True]),
    ('1) ... 2) ...\n\n```\n["yes", "NO"]\n```\n', 2, [True, False]),  # the fence's last line is the list
    ("Step 1 holds.\n**['NO']**", 1, [False]),
    ("It satisfies it.\nYES", 1, [True]),  # a bare verdict, as upstream accepts at level 1
    ("['YES', 'NO']", 3, None),  # wrong length
    ("['YES', 'MAYBE']", 2, None),
    ("YES", 2, None),  # a bare verdict at level 2
    ("YES or NO", 1, None),
    ("['YES', __import__('os').getcwd()]", 2, None),  # never evaluated
    ("['YES']\nI hope this helps.", 1, None),  # the list is not on the last line
    ("", 1, None),
])
def test_the_judge_parser_reads_one_verdict_per_constraint_or_nothing(reply, level, want):
    assert parse_judge(reply, level) == want


def test_the_judge_prompt_shows_the_evolution_path():
    it = Item("situation", 4, 2, "src", "level two", "", ("level zero", "level one", "level two"))
    p = judge_prompt(it, "THE ANSWER")
    assert p.index("level zero") < p.index("level one") < p.index("level two") < p.index("THE ANSWER")
    assert "situation constraint" in p and "list of 2 strings" in p
    with pytest.raises(Exception, match="path"):
        judge_prompt(Item("style", 4, 3, "src", "x", "", ("a", "b")), "x")


def test_ssr_counts_constraints_and_hsr_whole_items_by_hand():
    its = [Item("style", 1, lv, "src", "x", "") for lv in (1, 2, 3)] + [Item("content", 9, 1, "E2E", "x", "")]
    hard = {"style:1:1": True, "style:1:2": False, "style:1:3": False, "content:9:1": False}
    soft = {"style:1:1": 1.0, "style:1:2": 0.5, "style:1:3": 2 / 3}  # the rule item stands for itself
    s = scores(its, hard, soft)
    assert s["hsr_by_level"] == {1: 50.0, 2: 0.0, 3: 0.0, 4: None, 5: None}
    assert s["ssr_by_level"] == {1: 50.0, 2: 50.0, 3: 66.67, 4: None, 5: None}
    assert s["ssr_by_file"]["style"][3] == 66.67 and s["ssr_by_file"]["content"][1] == 0.0


def test_the_real_paths_reach_level_zero():
    items = load_followbench(shared_data("followbench", "data"))
    judged = [it for it in items if not it.rule_checked]
    assert len(judged) == 470 and all(len(it.path) == it.level + 1 and it.path[-1] == it.instruction for it in judged)


def test_the_command_scores_saved_responses_and_needs_a_judge_or_rules_only(tmp_path):
    import json

    from typer.testing import CliRunner

    from spar.cli import app

    data = shared_data("followbench", "data")
    r = tmp_path / "r.jsonl"
    r.write_text(json.dumps({"id": "content:1:1", "prompt": [], "completions": ["x"]}) + "\n")
    res = CliRunner().invoke(app, ["eval", "followbench", "--data", str(data), "--responses", str(r), "-o", str(tmp_path / "s.json")])
    assert res.exit_code == 2 and "--rules-only" in res.output and "--judge" in res.output
    res = CliRunner().invoke(app, ["eval", "followbench", "--data", str(data), "--responses", str(r), "--rules-only",
                                   "-o", str(tmp_path / "s.json")])
    assert res.exit_code == 0, res.output
    out = json.loads((tmp_path / "s.json").read_text())
    assert out["items"] <= 1 and out["of"] == 820 and out["part"] == "rules only"


def test_the_command_judges_the_other_items_and_counts_unparsed_replies(tmp_path, monkeypatch):
    import json

    from fake import FakeBackend
    from typer.testing import CliRunner

    import spar.cli_eval as ce
    from spar.cli import app

    data = shared_data("followbench", "data")
    items = load_followbench(data)
    judged = [it for it in items if not it.rule_checked][:12]
    rule = [it for it in items if it.rule_checked][:3]
    r = tmp_path / "r.jsonl"
    r.write_text("".join(json.dumps({"id": it.id, "prompt": [], "completions": [f"answer {k}"]}) + "\n"
                         for k, it in enumerate(judged + rule)))
    calls = []

    def script(chat, sampling, k):
        text = chat[-1]["content"]
        calls.append(text)
        n = int(text.split("write only a Python list of ")[1].split(" ")[0])
        if "answer 0\n" in text:  # an answer the judge cannot make up its mind about
            return "Hard to say."
        return "Reasons.\n" + json.dumps(["YES"] * (n - 1) + ["NO" if "answer 1\n" in text else "YES"])

    monkeypatch.setattr(ce, "_backend", lambda *a, **k: FakeBackend(script))
    out = tmp_path / "s.json"
    args = ["eval", "followbench", "--data", str(data), "--responses", str(r), "--judge", "scripted", "-o", str(out)]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    s = json.loads(out.read_text())
    assert s["judged_items"] == 12 and s["judge_unparsed"] == 1 and s["rule_items"] == 3 and s["items"] == 15
    assert len(calls) == 12 and not any("answer 12" in c for c in calls)  # rule items never reach the judge
    rows = {x["id"]: x for x in map(json.loads, (tmp_path / "s.outcomes.jsonl").read_text().splitlines())}
    assert rows[judged[0].id]["follows"] is False and rows[judged[0].id]["constraints"] is None
    assert rows[judged[1].id]["follows"] is (judged[1].level == 0) and rows[judged[1].id]["constraints"][-1] is False
    assert all(rows[it.id]["follows"] for it in judged[2:]) and rows[rule[0].id]["checked_by"] == "rules"
    before = (tmp_path / "s.judge.jsonl").read_text()
    res = CliRunner().invoke(app, args)  # a rerun resumes: no new judge call
    assert res.exit_code == 0 and len(calls) == 12 and (tmp_path / "s.judge.jsonl").read_text() == before


def test_the_loop_runs_followbench_per_iteration_with_a_judge_model(tmp_path):
    import json

    import pipeline_harness as H
    from spar.compare import compare, load_run, markdown

    data = shared_data("followbench", "data")
    first = load_followbench(data)[:30]
    run = tmp_path / "run"
    H.run(run, until="eval", **{"eval.followbench_data": str(data), "eval.followbench_limit": 30,
                                "eval.followbench_judge": "judge-model", "iterations": 1})
    fb = json.loads((run / "iter_0" / "eval" / "followbench.json").read_text())
    assert fb["items"] == 30 and fb["judged_items"] == sum(not it.rule_checked for it in first) > 0
    # the scripted backend's replies carry no YES/NO list: every judged item is unparsed, and fails
    assert fb["judge_unparsed"] == fb["judged_items"] and "judge-model" in H.models
    rows = [json.loads(x) for x in (run / "iter_0" / "eval" / "followbench.outcomes.jsonl").read_text().splitlines()]
    assert len(rows) == 30 and not any(r["follows"] for r in rows if r["checked_by"] == "judge")
    assert load_run(run)["iterations"][0]["followbench"]["unparsed"] == fb["judged_items"]
    assert "FollowBench (the actor" in markdown(compare([run]))
