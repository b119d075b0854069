"""The loop's bookkeeping: manifest hashing, reruns of exactly the affected stages, resume after
SIGKILL with no lost or doubled rows, and recipe validation."""

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import pipeline_harness as H
from spar.config import load_config
from spar.io import DataError

FILES = ["prompts.jsonl", "iter_1/samples.jsonl", "iter_1/judgments.jsonl", "iter_1/negatives.jsonl",
         "iter_1/trees.jsonl", "iter_1/dpo.jsonl", "iter_1/rft.jsonl"]


def ran_stages(run_dir, **over):
    ran = []
    from spar.pipeline import Run

    orig = Run._run_stage

    def spy(self, stage, t):
        did = orig(self, stage, t)
        if did:
            ran.append(Run.key(stage, t))
        return did

    Run._run_stage = spy
    try:
        H.run(run_dir, **over)
    finally:
        Run._run_stage = orig
    return ran


def test_a_changed_setting_reruns_only_the_stages_it_reaches(tmp_path):
    assert ran_stages(tmp_path) == ["prompts", "iter_1:sample", "iter_1:judge", "iter_1:negatives", "iter_1:search", "iter_1:data"]
    assert ran_stages(tmp_path) == []
    assert ran_stages(tmp_path, **{"search.budget": 3}) == ["iter_1:search", "iter_1:data"]
    assert ran_stages(tmp_path, **{"search.budget": 3, "judge.votes": 1}) == ["iter_1:judge", "iter_1:negatives", "iter_1:search", "iter_1:data"]
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    rec = manifest["stages"]["iter_1:search"]
    assert rec["status"] == "done" and rec["seed"] == 0 and "seconds" in rec and "torch" in manifest["versions"]
    assert (tmp_path / "config.yaml").read_text().count("budget: 3") == 1
    assert (tmp_path / "report.html").exists()


def test_the_inference_dtype_reaches_the_backends_and_the_hashes(tmp_path):
    ran_stages(tmp_path)
    H.made.clear()
    assert ran_stages(tmp_path, dtype="fp32")[:2] == ["prompts", "iter_1:sample"]  # every stage again
    assert H.made and all(m["dtype"] == "fp32" for m in H.made)
    assert ran_stages(tmp_path, dtype="fp32") == []


def test_pipeline_files_are_well_formed(tmp_path):
    H.run(tmp_path)
    pairs = [json.loads(x) for x in (tmp_path / "iter_1/dpo.jsonl").read_text().splitlines()]
    assert pairs, "the scripted run should solve some trees"
    for p in pairs:  # the chosen answer is the rejected one, edited; its quality rides along
        assert p["chosen"][0]["content"].startswith(p["rejected"][0]["content"].replace(",", "")[:6])
        assert p["origin"]["guard"] == [] and p["origin"]["similarity"] > 0.5 and p["origin"]["machinery"] is None
    stats = json.loads((tmp_path / "iter_1/stats.json").read_text())
    assert stats["trees"] == len((tmp_path / "iter_1/trees.jsonl").read_text().splitlines())
    assert stats["pairs"] == len(pairs) and set(stats["guard_rejected"]) == {"similarity", "machinery", "length"}
    report = (tmp_path / "report.html").read_text()
    assert "Pair quality" in report and "Drawn at random" in report
    # each example pair shows the judge's rationale on the failed answer and its tree, the accepted node marked
    assert report.count("judge's rationale and the tree") == min(3, len(pairs))
    assert "Checking each requirement" in report or "Final judgement" in report
    assert "accepted" in report and "<b>&nbsp;&nbsp;&nbsp;&nbsp;node" in report


def _rows(run_dir: Path) -> dict[str, list[str]]:
    out = {}
    for f in FILES:
        lines = (run_dir / f).read_text().splitlines()
        out[f] = sorted(lines)
        assert len(lines) == len(set(lines)) or f == "iter_1/rft.jsonl", f"doubled rows in {f}"
    return out


@pytest.mark.parametrize("seed", [1])
def test_sigkill_at_random_points_loses_and_doubles_nothing(tmp_path, seed):
    clean = tmp_path / "clean"
    H.run(clean)
    expected = _rows(clean)
    killed = tmp_path / "killed"
    rng = random.Random(seed)
    harness = str(Path(H.__file__))
    kills = 0
    for _ in range(6):
        # 0.1 s per request makes the whole run ~20 s of work, so each kill lands mid-stage
        proc = subprocess.Popen([sys.executable, harness, str(killed), "0.1"], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(1.5, 4.0))
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            kills += 1
        proc.wait()
    assert kills >= 3, "the run finished before it could be killed often enough; raise the delay"
    subprocess.run([sys.executable, harness, str(killed), "0"], check=True, capture_output=True)
    assert _rows(killed) == expected


RECIPES = sorted(p for p in (Path(__file__).resolve().parents[1] / "src/spar/recipes").glob("*/*.yaml")
                 if p.parent.name != "accelerate")  # accelerate/: accelerate's own configs, for launcher.config_file


@pytest.mark.parametrize("recipe", RECIPES, ids=[f"{p.parent.name}/{p.name}" for p in RECIPES])
def test_every_recipe_validates(recipe):
    cfg = load_config(recipe)
    assert cfg.iterations >= 1 and cfg.search.budget >= 1


def test_the_accelerate_configs_name_a_distributed_setup():
    import yaml

    configs = sorted((Path(__file__).resolve().parents[1] / "src/spar/recipes/accelerate").glob("*.yaml"))
    assert {p.stem for p in configs} == {"ddp", "zero3", "fsdp"}
    for p in configs:
        c = yaml.safe_load(p.read_text())
        assert c["distributed_type"] in ("MULTI_GPU", "DEEPSPEED", "FSDP") and c["num_processes"] >= 1


def test_recipe_errors_name_the_file_and_line(tmp_path):
    bad = tmp_path / "r.yaml"
    bad.write_text("name: x\nsearch:\n  budgte: 4\n")
    with pytest.raises(DataError, match=r"r.yaml:3: search.budgte"):
        load_config(bad)
    bad.write_text("name: x\ntrain_actor:\n  lr: 1\n")
    with pytest.raises(DataError, match=r"r.yaml:3: train_actor.lr: Extra inputs"):
        load_config(bad)
    bad.write_text("name: [x\n")
    with pytest.raises(DataError, match="not valid YAML"):
        load_config(bad)


def test_the_bootstrap_stage_trains_the_refiner_that_iteration_1_uses(tmp_path, monkeypatch):
    import spar.train

    trained = []

    def fake_sft(model, rows, out, settings, seed=0):
        trained.append((model, rows, settings))
        (Path(out) / "model").mkdir(parents=True, exist_ok=True)
        return Path(out) / "model", [{"loss": 1.0}]

    monkeypatch.setattr(spar.train, "train_sft", fake_sft)
    H.models.clear()
    H.run(tmp_path, until="search", **{"bootstrap.refiner": "offline", "bootstrap.prompts": 16, "bootstrap.k": 3,
                                       "judge.mode": "verifier"})
    (model, rows, settings), = trained
    assert settings.learning_rate == 2e-5 and settings.epochs == 2
    assert rows == [json.loads(x) for x in (tmp_path / "iter_0/bootstrap.jsonl").read_text().splitlines()]
    assert all(r["origin"]["kind"] == "refinement" and r["messages"][-1]["content"].startswith("[[start]]") for r in rows)
    assert str(tmp_path / "iter_0/refiner/model") in H.models  # iteration 1 searches with the bootstrapped refiner
    manifest = json.loads((tmp_path / "manifest.json").read_text())["stages"]
    assert {"iter_0:bootstrap_sample", "iter_0:bootstrap_data", "iter_0:train_refiner"} <= set(manifest)
    with pytest.raises(DataError, match="bootstrap.teacher"):
        load_config(None, {"bootstrap.refiner": "teacher"})


@pytest.fixture
def fake_training(monkeypatch):
    """Training that only writes a model folder (the loop's bookkeeping is what is tested)."""
    import spar.train

    def fake(model, rows, out, settings, seed=0):
        (Path(out) / "model").mkdir(parents=True, exist_ok=True)
        (Path(out) / "model" / "from.txt").write_text(f"{model} {len(rows)}")
        return Path(out) / "model", [{"loss": 0.5}]

    monkeypatch.setattr(spar.train, "train_dpo", fake)
    monkeypatch.setattr(spar.train, "train_sft", fake)


FULL = {"iterations": 2, "prompts.heldout": 4, "eval.heldout": True, "bootstrap.refiner": "offline",
        "bootstrap.prompts": 8, "bootstrap.k": 3}


def _keys(run_dir: Path) -> list[str]:
    return list(json.loads((run_dir / "manifest.json").read_text())["stages"])


def _expected_prefix(order: list[str], until: str) -> list[str]:
    def name(key: str) -> str:
        bare = key.split(":", 1)[1] if key.startswith("iter_") else key
        return "eval" if bare.startswith("eval:") else ("bootstrap" if bare.startswith("bootstrap") or
                                                        key == "iter_0:train_refiner" else bare)

    hit = [i for i, k in enumerate(order) if (k.split(":")[0] + ":" + name(k) if until.startswith("iter_") else name(k)) == until]
    first = hit[0]
    last = first
    while last + 1 < len(order) and last + 1 in hit and order[last + 1].split(":")[0] == order[first].split(":")[0]:
        last += 1
    return order[: last + 1]


def test_until_stops_right_after_the_named_stage_for_every_stage(tmp_path, fake_training):
    from spar.methods import get_method

    H.run(tmp_path / "all", until=None, **FULL)
    order = _keys(tmp_path / "all")
    assert order[0] == "prompts" and order[-1] == "iter_2:eval:heldout" and "iter_2:train_refiner" in order
    names = get_method("spar").stage_names()
    assert set(names) == {"prompts", "eval", "bootstrap", "sample", "judge", "negatives", "search", "data",
                          "train_actor", "train_refiner"}
    for until in [*names, "iter_2:judge", "iter_1:eval"]:
        d = tmp_path / until.replace(":", "_")
        H.run(d, until=until, **FULL)
        assert _keys(d) == _expected_prefix(order, until), until
    with pytest.raises(DataError, match="--until must name a stage"):
        H.run(tmp_path / "bad", until="nope", **FULL)


def test_iteration_2_samples_with_the_trained_actor_and_models_are_released(tmp_path, fake_training):
    from spar.pipeline import Run

    loaded: dict[str, set[str]] = {}
    orig = Run._run_stage

    def spy(self, stage, t):
        did = orig(self, stage, t)
        loaded[Run.key(stage, t)] = set(self._backends)
        return did

    Run._run_stage = spy
    try:
        H.models.clear()
        r = H.run(tmp_path, until="iter_2:sample", **FULL)
    finally:
        Run._run_stage = orig
    actor1 = str(tmp_path / "iter_1/actor/model")
    assert H.models[-1] == actor1  # the last model loaded: iteration 2's sampler is iteration 1's actor
    assert loaded["iter_1:eval:heldout"] == {actor1}  # the base model was let go once trained
    assert loaded["iter_1:search"] and loaded["iter_1:train_actor"] == set()  # nothing held while training
    assert not r._backends  # all released at the end
    manifest = json.loads((tmp_path / "manifest.json").read_text())["stages"]
    spend = manifest["iter_1:sample"]["spend"]
    assert spend["calls"] >= 1 and spend["new_tokens"] > 0 and spend["requests"] == 12
    assert manifest["iter_1:train_actor"]["model"] == actor1 and manifest["iter_1:train_actor"]["loss"] == [0.5]


def test_a_failed_stage_keeps_its_traceback_in_the_manifest(tmp_path, monkeypatch):
    import spar.stages
    from spar.pipeline import StageFailed

    def broken(*a, **kw):
        raise KeyError("a bug")

    monkeypatch.setattr(spar.stages, "run_negatives", broken)
    with pytest.raises(StageFailed, match="iter_1:negatives failed"):
        H.run(tmp_path)
    rec = json.loads((tmp_path / "manifest.json").read_text())["stages"]["iter_1:negatives"]
    assert rec["status"] == "failed" and "KeyError" in rec["traceback"] and "broken" in rec["traceback"]


def test_a_token_budget_stops_sampling_then_search_and_the_manifest_shows_it(tmp_path):
    over = {"prompts.count": 24, "batch_size": 1}  # chunks of one prompt to sample, of 8 trees to search
    H.run(tmp_path / "free", **over)
    free = json.loads((tmp_path / "free" / "manifest.json").read_text())["stages"]
    tokens = {k.split(":")[1]: v["spend"]["new_tokens"] for k, v in free.items() if k.startswith("iter_1:")}
    assert tokens["sample"] and tokens["judge"] and tokens["search"]
    assert "budget" not in json.loads((tmp_path / "free" / "manifest.json").read_text())
    # half the samples' tokens: sampling stops on the way, and nothing is left for the search
    H.run(tmp_path / "half", **over, **{"budget.generated_tokens": tokens["sample"] // 2})
    m = json.loads((tmp_path / "half" / "manifest.json").read_text())
    assert 0 < m["stages"]["iter_1:sample"]["prompts_sampled"] < 24
    assert m["stages"]["iter_1:search"]["trees_searched"] == 0
    spent = m["budget"]["iter_1"]
    assert spent["generated_tokens"] == tokens["sample"] // 2 <= spent["spent"] < tokens["sample"]
    # every sample and judgment, and half the search: fewer trees than without a budget
    budget = tokens["sample"] + tokens["judge"] + tokens["search"] // 2
    H.run(tmp_path / "part", **over, **{"budget.generated_tokens": budget})
    m = json.loads((tmp_path / "part" / "manifest.json").read_text())
    assert m["stages"]["iter_1:sample"]["prompts_sampled"] == 24
    trees = [json.loads(x) for x in (tmp_path / "part" / "iter_1" / "trees.jsonl").read_text().splitlines()]
    all_trees = (tmp_path / "free" / "iter_1" / "trees.jsonl").read_text().splitlines()
    assert 0 < len(trees) == m["stages"]["iter_1:search"]["trees_searched"] < len(all_trees)
    assert budget <= m["budget"]["iter_1"]["spent"] < tokens["sample"] + tokens["judge"] + tokens["search"]
