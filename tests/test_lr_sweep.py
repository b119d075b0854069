"""The learning-rate sweep's measures of movement and collapse, and its command's bad input."""

from typer.testing import CliRunner

from spar.experiments.lr_sweep import collapse_signs, movement


def test_collapse_signs_see_loops_empties_and_variety():
    s = collapse_signs(["the cat sat on the mat", "", "go go go go go go go go go go go go"])
    assert s["empty"] == round(1 / 3, 3) and s["looping"] == round(1 / 3, 3)
    assert s["mean_words"] == round((6 + 0 + 12) / 3, 1)
    varied = collapse_signs(["a b c d", "e f g h"])["distinct_2"]
    assert varied == 1.0 and s["distinct_2"] < varied


def test_movement_counts_changed_answers_and_their_similarity():
    m = movement({"a": "the sea is calm", "b": "blue"}, {"a": "the sea is calm", "b": "green"})
    assert m["changed"] == 0.5 and m["mean_similarity_to_base"] < 1.0


def test_bad_learning_rates_are_one_line(tmp_path):
    from spar.cli import app

    p = tmp_path / "p.jsonl"
    p.write_text("")
    res = CliRunner().invoke(app, ["experiment", "lr-sweep", "--pairs", str(p), "--heldout", str(p), "--lrs", "fast",
                                   "-o", str(tmp_path / "o")])
    assert res.exit_code == 2 and "--lrs" in res.output and not (tmp_path / "o").exists()
