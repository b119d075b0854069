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
