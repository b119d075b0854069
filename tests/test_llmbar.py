from conftest import shared_data
from fake import FakeBackend
from spar.eval.llmbar import SUBSETS, evaluate_llmbar, load_llmbar, metrics
from spar.settings import JudgeSettings


def test_metrics():
    m = metrics([True, False, True, False], [True, True, None, False])
    assert m["accuracy"] == 50.0 and m["undecided"] == 1
    assert m["f1"] == round(100 * 2 * 1 / (2 * 1 + 1 + 1), 2)


def test_pointwise_on_the_real_data_with_an_always_yes_judge():
    root = shared_data("llmbar", "LLMBar")
    items = load_llmbar(root)
    assert len(items) == 2 * 419
    by_k, rows = evaluate_llmbar(FakeBackend(default="Final judgement: Yes"), items, JudgeSettings(votes=1))
    out = by_k[1]
    assert len(rows) == len(items) and out["unparseable"] == 0.0
    for sub in SUBSETS:
        assert out[sub]["accuracy"] == 50.0  # half the items are the worse output
        assert out[sub]["f1"] == round(100 * 2 / 3, 2)


def test_several_vote_counts_come_from_the_first_k_of_one_sampling(tmp_path):
    """Item 0 (gold yes): replies Yes, No, No -> right at k=1, wrong at k=3; item 1 (gold no):
    an unparseable reply, then No, No -> undecided at k=1, right at k=3."""
    from spar.eval.llmbar import Item

    items = [Item("Natural", "Say hi.", "Hi.", True), Item("Natural", "Say bye.", "Hi.", False)]
    replies = {"Hi.|Say hi.": ["Final judgement: Yes", "Final judgement: No", "Final judgement: No"],
               "Hi.|Say bye.": ["I am not sure.", "Final judgement: No", "Final judgement: No"]}

    def script(chat, sampling, k):
        text = chat[-1]["content"]
        key = next(key for key in replies if key.split("|")[1] in text)
        return replies[key][k]

    backend = FakeBackend(script)
    by_k, rows = evaluate_llmbar(backend, items, JudgeSettings(votes=3), ks=[1, 3])
    assert by_k[1]["Natural"]["accuracy"] == 50.0 and by_k[1]["Natural"]["undecided"] == 1
    assert by_k[1]["unparseable"] == 50.0
    assert by_k[3]["Natural"]["accuracy"] == 50.0 and by_k[3]["Natural"]["undecided"] == 0
    assert by_k[3]["unparseable"] == round(100 / 6, 2)
    assert rows[1]["votes"] == [None, False, False] and len(backend.calls) == 1  # one sampling for every k


def test_a_stopped_run_resumes_from_its_replies_file(tmp_path):
    """The replies are appended as they come; a rerun asks only for the items not yet there and
    scores the same as one unbroken run."""
    import json

    from spar.eval.llmbar import Item

    items = [Item("Natural", f"Say {w}.", "Hi.", w == "hi", f"Natural:{i}:1") for i, w in enumerate(["hi", "bye", "yo", "no"])]

    def script(chat, sampling, k):
        return "Final judgement: " + ("Yes" if "Say hi." in chat[-1]["content"] else "No")

    whole = evaluate_llmbar(FakeBackend(script), items, JudgeSettings(votes=3), ks=[1, 3], replies_path=tmp_path / "a.jsonl")
    part = tmp_path / "b.jsonl"
    part.write_text("".join(x + "\n" for x in (tmp_path / "a.jsonl").read_text().splitlines()[:2]))  # stopped after 2
    backend = FakeBackend(script)
    resumed = evaluate_llmbar(backend, items, JudgeSettings(votes=3), ks=[1, 3], replies_path=part)
    asked = [c for call in backend.calls for c in call]
    assert len(asked) == 2 and resumed == whole  # only the missing items, and the same scores and rows
    assert [json.loads(x)["id"] for x in part.read_text().splitlines()] == [it.id for it in items]
