"""The Ray executor (``spar.executor``): shards, and a local Ray cluster with two replicas of the
embedded model giving exactly the local executor's rows, also after a replica is killed. The Ray
tests are slow (Ray's start and two model loads) and run with ``make test-ray``."""

import json

import pytest

from spar.executor import shards


def test_shards_are_contiguous_and_cover_every_request():
    assert shards(7, 2) == [(0, 4), (4, 7)]
    assert shards(2, 5) == [(0, 1), (1, 2)]  # never an empty shard
    assert shards(0, 3) == [(0, 0)]
    for n in range(0, 30):
        for p in range(1, 6):
            cut = shards(n, p)
            assert cut[0][0] == 0 and cut[-1][1] == n and all(a[1] == b[0] for a, b in zip(cut, cut[1:]))
            sizes = [b - a for a, b in cut]
            assert max(sizes) - min(sizes) <= 1


@pytest.fixture(scope="module")
def ray_cluster():
    ray = pytest.importorskip("ray", reason="Ray is not installed (make test-ray installs the extra)")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield ray
    ray.shutdown()


CHATS = [[{"role": "user", "content": f"Name a colour and a number, briefly. ({i})"}] for i in range(6)]


@pytest.mark.slow
@pytest.mark.model
def test_two_replicas_give_the_local_rows_and_survive_a_killed_replica(ray_cluster):
    from spar.executor import RayBackend
    from spar.llm import BackendOptions, Sampling, load_backend

    local = load_backend("embedded", BackendOptions(batch_size=8, dtype="fp32"))
    rb = RayBackend("embedded", BackendOptions(batch_size=8, dtype="fp32"), replicas=2)
    pids = {ray_cluster.get(r.pid.remote()) for r in rb.replicas}
    assert len(pids) == 2  # two processes, one model each
    for s in (Sampling(max_new_tokens=12), Sampling(n=2, temperature=0.9, top_p=0.9, max_new_tokens=12, seed=4)):
        counted = []
        got = rb.generate(CHATS, s, on_batch=lambda r, n: counted.append(r))
        assert got == local.generate(CHATS, s) and sum(counted) == len(CHATS)
    ray_cluster.kill(rb.replicas[0])  # a replica dies: replaced, its shard asked again, nothing lost or doubled
    again = rb.generate(CHATS, Sampling(max_new_tokens=12))
    assert again == local.generate(CHATS, Sampling(max_new_tokens=12)) and rb.restarts == 1
    rb.close()


@pytest.mark.slow
@pytest.mark.model
def test_the_sample_stage_on_ray_writes_the_local_rows(ray_cluster, tmp_path):
    from spar.config import load_config
    from spar.pipeline import Run

    over = {"prompts.count": 4, "prompts.heldout": 0, "sample.k": 2, "sample.max_new_tokens": 12, "eval.heldout": False,
            "eval.before": False, "dtype": "fp32", "batch_size": 4}
    Run(load_config(None, over), tmp_path / "local", until="sample", show=False).run()
    Run(load_config(None, {**over, "executor.kind": "ray", "executor.replicas": 2}), tmp_path / "ray", until="sample",
        show=False).run()
    rows = [[json.loads(x) for x in (tmp_path / d / "iter_1" / "samples.jsonl").read_text().splitlines()] for d in ("local", "ray")]
    assert rows[0] == rows[1] and len(rows[0]) == 4


@pytest.mark.slow
@pytest.mark.model
def test_the_search_stage_on_ray_shards_whole_trees_and_gives_the_local_trees(ray_cluster, tmp_path):
    from spar.config import load_config
    from spar.pipeline import Run

    # greedy refinements, the checkers judge: the trees depend on the model alone
    over = {"prompts.count": 6, "prompts.heldout": 0, "sample.k": 2, "sample.max_new_tokens": 24, "eval.heldout": False,
            "eval.before": False, "dtype": "fp32", "batch_size": 8, "judge.mode": "verifier", "search.budget": 3,
            "search.branch": 1, "search.temperature": 0.0, "search.max_new_tokens": 24}
    Run(load_config(None, over), tmp_path / "local", until="search", show=False).run()
    run = Run(load_config(None, {**over, "executor.kind": "ray", "executor.replicas": 2}), tmp_path / "ray", until="search",
              show=False)
    run.run()
    read = lambda d: sorted((json.loads(x) for x in (tmp_path / d / "iter_1" / "trees.jsonl").read_text().splitlines()),  # noqa: E731
                            key=lambda t: t["id"])
    local, ray_trees = read("local"), read("ray")
    assert local and [t["id"] for t in local] == [t["id"] for t in ray_trees]
    assert [t["nodes"] for t in local] == [t["nodes"] for t in ray_trees]
    spend = json.loads((tmp_path / "ray" / "manifest.json").read_text())["stages"]["iter_1:search"]["spend"]
    assert spend["calls"] > 0 and spend["new_tokens"] > 0  # the replicas' calls are counted
    # directly: groups of two trees, each group on one replica, a killed replica's group searched again
    from spar.executor import RayBackend
    from spar.io import read_jsonl
    from spar.llm import BackendOptions
    from spar.search.driver import Searcher
    from spar.types import Negative

    cfg = run.cfg
    negs = read_jsonl(tmp_path / "local" / "iter_1" / "negatives.jsonl", Negative)
    rb = RayBackend("embedded", BackendOptions(batch_size=8, dtype="fp32"), replicas=2)
    ray_cluster.kill(rb.replicas[1])
    got = rb.search_trees(Searcher(rb, cfg.judge, cfg.search, cfg.seed), negs, group=2)
    keys = [k for _, ids in rb.groups for k in ids]
    assert sorted(keys) == sorted(n.key for n in negs) and all(len(ids) <= 2 for _, ids in rb.groups)
    assert [t.model_dump()["nodes"] for t in got] == [t["nodes"] for t in sorted(local, key=lambda t: [n.key for n in negs].index(t["id"]))]
    assert rb.restarts == 1
    rb.close()
