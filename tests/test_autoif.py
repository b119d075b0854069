"""AutoIF's rules: parsing, cross-validation thresholds (code and paper variants), back-translation
filtering, execution feedback and pair sampling; the functions run in the sandbox."""

import json

import pytest

from spar.selfplay import autoif as A


def test_instruction_lines_and_function_samples_parse_as_the_reference_reads_them():
    reply = "Here you go:\n- Answer in exactly three words.\n- Answer in exactly three words.\n-  \nnot a line\n- Use no commas."
    assert A.parse_instructions(reply) == ["Answer in exactly three words.", "Use no commas."]
    body = {"func": "import requests\\ndef evaluate(response):\\n    return ',' not in response",
            "cases": [{"input": "a, b", "output": False}, {"input": "a b", "output": True}, {"input": "x", "output": "yes"}]}
    s = A.parse_function_sample("Sure!\n```json\n" + json.dumps(body) + "\n```\n")
    assert "requests" not in s.func and s.func.startswith("def evaluate") and s.cases == [("a, b", False), ("a b", True)]
    assert A.parse_function_sample("no json here") is None
    assert A.parse_function_sample(json.dumps({"func": "def other(x): return True", "cases": []})) is None


def test_split_requests_parse_code_alone_and_case_texts():
    code = A.parse_function_code("Sure:\n```python\nimport requests\ndef evaluate(response):\n    return True\n```\nDone.")
    assert code == "def evaluate(response):\n    return True\n"
    assert A.parse_function_code("def evaluate(r):\n    return r.islower()") == "def evaluate(r):\n    return r.islower()\n"
    assert A.parse_function_code("```python\ndef check(r): return True\n```") is None
    assert A.parse_function_code("```python\ndef evaluate(r):\n    return 1") == "def evaluate(r):\n    return 1\n"  # cut off
    assert A.parse_case('"it is raining?"') == "it is raining?" and A.parse_case("```\nabc\n```") == "abc"
    assert A.parse_case("  ") is None and A.parse_case("x" * 1001) is None


def _samples(funcs, cases):
    """One sample per function; the cases spread over them (each case once)."""
    return [A.FunctionSample(f, list(cases[i::len(funcs)])) for i, f in enumerate(funcs)]


def _verdicts(table):
    return A.Verdicts(results={(f, x): v for (f, x), v in table.items()})


def test_cross_validation_code_rules():
    cases = [(f"text {i}", i % 2 == 0) for i in range(10)]
    good, half, bad = "def evaluate(r): good", "def evaluate(r): half", "def evaluate(r): bad"
    table = {}
    for i, (x, y) in enumerate(cases):
        table[(good, x)] = y  # always right
        table[(half, x)] = y if i < 5 else (not y)  # right on half
        table[(bad, x)] = None  # always an error
    v = A.cross_validate(_samples([good, half, bad] * 4, cases), _verdicts(table))
    assert v.reason is None and v.functions == [(good, 1.0)] and len(v.cases) == 10
    few = A.cross_validate(_samples([good, half], cases), _verdicts(table))
    assert few.reason.startswith("too few functions")
    # a case no function gets right is dropped; a function that only errs keeps nothing
    table2 = {k: (None if k[0] != good else v) for k, v in table.items()}
    v2 = A.cross_validate(_samples([good, half, bad], cases), _verdicts(table2))
    assert [f for f, _ in v2.functions] == [good]


def test_cross_validation_paper_rules_use_majorities():
    cases = [(f"t{i}", True) for i in range(4)]
    f1, f2, f3 = "def evaluate(r): 1", "def evaluate(r): 2", "def evaluate(r): 3"
    table = {(f, x): (f != f3) for f in (f1, f2, f3) for x, _ in cases}
    cfg = A.CrossValidation(rules="paper", min_functions=1, min_cases=1)
    v = A.cross_validate(_samples([f1, f2, f3], cases), _verdicts(table), cfg)
    assert {f for f, _ in v.functions} == {f1, f2} and len(v.cases) == 4


def test_back_translation_pass_rate_and_pairs():
    assert A.back_translation_keeps(["entailment", "neutral"]) and not A.back_translation_keeps(["entailment", "contradiction"])
    assert not A.back_translation_keeps([])
    assert A.pass_rate([True, False, None, True]) == pytest.approx(2 / 3) and A.pass_rate([None, None]) == 0.0
    responses = [("p1", 1.0), ("p2", 0.5), ("p3", 0.75), ("n1", 0.0), ("m", 0.3)]
    pairs = A.sample_pairs(responses, seed=1)
    assert len(pairs) == 2 and all(n == "n1" for _, n in pairs) and all(p.startswith("p") for p, _ in pairs)
    assert A.sample_pairs([("p", 1.0), ("n", 0.0)], 0) == [("p", "n")]
    assert A.sample_pairs([("m", 0.3), ("n", 0.0)], 0) == []  # a middling rate is neither
    assert A.sample_pairs(responses, seed=1) == pairs


def test_functions_run_in_the_sandbox_and_only_bools_count():
    from spar.sandbox import Pool, check

    if not check().get("namespaces"):
        pytest.skip("no namespaces on this machine")
    f_ok = "def evaluate(response):\n    return ',' not in response\n"
    f_str = "def evaluate(response):\n    return 'true'\n"
    f_loop = "def evaluate(response):\n    while True:\n        pass\n"
    cache = {}
    from spar.sandbox import Limits

    # the wall clock (1 s) always runs out before the CPU limit (5 s): one reason, whatever the load
    with Pool(workers=2, limits=Limits(wall_seconds=1.0, cpu_seconds=5)) as pool:
        v = A.run_functions(pool, [f_ok, f_str, f_loop], ["a, b", "a b"], cache)
        assert v.results[(f_ok, "a, b")] is False and v.results[(f_ok, "a b")] is True
        assert v.results[(f_str, "a b")] is None and v.results[(f_loop, "a b")] is None
        assert v.failures == {"not a bool": 2, "timed out after 1.0 s": 2}
        again = A.run_functions(pool, [f_ok], ["a b"], cache)  # from the cache: no new call
        assert again.results[(f_ok, "a b")] is True and not again.failures


def test_autoif_runs_its_stages_and_counts_every_filter(tmp_path):
    import pipeline_harness as H
    from spar.sandbox import check

    if not check().get("namespaces"):
        pytest.skip("no namespaces on this machine")
    over = {"method": "autoif", "autoif.max_instructions": 14, "autoif.function_samples": 4, "autoif.queries": 2,
            "autoif.wall_seconds": 2.0}
    H.run(tmp_path, until="pairs", **over)
    d = tmp_path / "iter_1"
    rows = [json.loads(x) for x in (d / "instructions.jsonl").read_text().splitlines()]
    assert len(rows) == 14 and {r["source"] for r in rows} == {"seed", "augmented"}
    verified = [json.loads(x) for x in (d / "verified.jsonl").read_text().splitlines()]
    kept = [v for v in verified if not v["reason"]]
    # the lowercase and no-comma functions agree with their cases; the others raise NameError on all
    assert kept and all("lowercase" in v["instruction"] or "no commas" in v["instruction"].lower() for v in kept)
    assert len(kept) == sum("lowercase" in r["instruction"] or "no commas" in r["instruction"].lower() for r in rows)
    assert all(len(v["functions"]) == 4 and len(v["cases"]) >= 10 for v in kept)
    stats = json.loads((d / "stats.json").read_text())
    assert stats["verify"]["instructions"]["kept"] == len(kept) and sum(stats["verify"]["instructions"].values()) == 14
    fb = [json.loads(x) for x in (d / "feedback.jsonl").read_text().splitlines()]
    assert len(fb) == 2 * len(kept) and all(0 <= r <= 1 for f in fb for r in f["pass_rates"])
    pairs = [json.loads(x) for x in (d / "dpo.jsonl").read_text().splitlines()]
    assert stats["pairs"] == len(pairs)
    # the quality check (spec section 9): every passing response scored once, none of the others
    quality = {q["id"]: q for q in map(json.loads, (d / "quality.jsonl").read_text().splitlines())}
    assert set(quality) == {f["id"] for f in fb}
    good = {}
    for f in fb:
        q = quality[f["id"]]
        for y, rate, score, replies in zip(f["completions"], f["pass_rates"], q["scores"], q["replies"]):
            assert len(replies) == (1 if rate >= 0.5 else 0)
            assert score == ({"9": 9.0, "3": 3.0}.get(replies[0][-1]) if replies and "Score: " in replies[0] else None)
            good[(f["id"], y)] = rate >= 0.5 and score is not None and score >= 8
    passing = sum(r >= 0.5 for f in fb for r in f["pass_rates"])
    assert 0 < sum(good.values()) < passing and stats["quality_dropped"] == passing - sum(good.values())
    sft = [json.loads(x) for x in (d / "sft.jsonl").read_text().splitlines()]  # passing responses that keep their query
    assert len(sft) == stats["sft_rows"] == sum(good.values())
    assert all(x["messages"][-1]["role"] == "assistant" and good[(x["origin"]["input"], x["messages"][-1]["content"])]
               for x in sft)
    for p in pairs:  # the chosen answer passes the functions and the quality check, the rejected one fails them all
        f = next(x for x in fb if x["id"] == p["origin"]["input"])
        rate = dict(zip(f["completions"], f["pass_rates"]))
        assert good[(f["id"], p["chosen"][0]["content"])] and rate[p["rejected"][0]["content"]] == 0


def test_quality_scores_parse_only_an_exact_last_line():
    from spar.roles.templates import parse_quality

    assert parse_quality("Detailed analysis.\nScore: 8") == 8.0
    assert parse_quality("Score: 10\n") == 10.0
    assert parse_quality("Score: 7 out of 10") is None and parse_quality("Score: 11") is None
    assert parse_quality("Score: 9\nThat is all.") is None and parse_quality("") is None


def test_autoif_split_requests_label_cases_by_the_request(tmp_path):
    import pipeline_harness as H
    from spar.sandbox import check

    if not check().get("namespaces"):
        pytest.skip("no namespaces on this machine")
    over = {"method": "autoif", "autoif.requests": "split", "autoif.max_instructions": 10, "autoif.function_samples": 3,
            "autoif.case_samples": 5, "autoif.queries": 1, "autoif.wall_seconds": 2.0, "autoif.quality_samples": 0}
    H.run(tmp_path, until="pairs", **over)
    d = tmp_path / "iter_1"
    rows = [json.loads(x) for x in (d / "functions.jsonl").read_text().splitlines()]
    assert len(rows) == 10 and all(len(r["samples"]) == 3 and r["unparsed"] == 0 for r in rows)
    low = next(r for r in rows if "lowercase" in r["instruction"])
    cases = low["samples"][0]["cases"]
    assert len(cases) == 10 and sum(c[1] for c in cases) == 5
    assert all(c[0].startswith("all lower words") == c[1] for c in cases)  # each labelled by its request
    stats = json.loads((tmp_path / "manifest.json").read_text())["stages"]["iter_1:functions"]
    assert stats["case_samples"] == 100 and stats["parsed"] == 30 and stats["cases"] == 100
    verified = {v["instruction"]: v for v in map(json.loads, (d / "verified.jsonl").read_text().splitlines())}
    # five texts per label and three distinct functions reach the code rules' 10 cases; only the
    # instructions whose function works survive
    kept = [i for i, v in verified.items() if not v["reason"]]
    assert kept and all("lowercase" in i or "no commas" in i.lower() for i in kept)
    assert all(len(verified[i]["cases"]) == 10 for i in kept)
    # back-translation one function at a time, as plain text: every kept instruction is back-translated
    bt = json.loads((tmp_path / "manifest.json").read_text())["stages"]["iter_1:back_translate"]
    assert bt["labels"]["unparsed"] == 0 and bt["labels"]["entailment"] == 3 * len(kept) and bt["kept"] == len(kept)
    assert len((d / "kept.jsonl").read_text().splitlines()) == len(kept)
    # with the quality check off nothing is asked and every passing response is an SFT row
    fb = [json.loads(x) for x in (d / "feedback.jsonl").read_text().splitlines()]
    assert all(not any(q["replies"]) for q in map(json.loads, (d / "quality.jsonl").read_text().splitlines()))
    assert len((d / "sft.jsonl").read_text().splitlines()) == sum(r >= 0.5 for f in fb for r in f["pass_rates"])
