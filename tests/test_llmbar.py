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
    out = evaluate_llmbar(FakeBackend(default="Final judgement: Yes"), items, JudgeSettings(votes=1))
    for sub in SUBSETS:
        assert out[sub]["accuracy"] == 50.0  # half the items are the worse output
        assert out[sub]["f1"] == round(100 * 2 / 3, 2)
