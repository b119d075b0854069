"""Training under ``accelerate launch`` (the loop's ``launcher:`` section): the command line, and
DPO on the embedded model over 2 CPU processes (gloo) against one process with the same global
batch. The two-process run is slow (two model loads per side) and runs with ``make test-slow``."""

import json
import socket

import pytest

from spar.settings import LauncherSettings, TrainSettings
from spar.stages import launch_command, run_train

PROMPT = [{"role": "user", "content": "Describe tea in one sentence without commas."}]
ROWS = [{"prompt": [{"role": "user", "content": f"Describe drink {i} in one sentence without commas."}],
         "chosen": [{"role": "assistant", "content": f"Drink {i} is warm and made from leaves."}],
         "rejected": [{"role": "assistant", "content": f"Drink {i} is warm, green, and made from leaves."}]} for i in range(8)]


def test_the_launch_command_carries_every_setting(tmp_path):
    s = TrainSettings(learning_rate=3e-6, max_length=None, report_to=["tensorboard"])
    cmd = launch_command("dpo", "/w/base", tmp_path / "d.jsonl", tmp_path / "out", s, 7,
                         LauncherSettings(kind="accelerate", num_processes=4, args=["--main_process_port", "29511"]))
    assert cmd[1:3] == ["-m", "accelerate.commands.launch"] and cmd[cmd.index("--num_processes") + 1] == "4"
    assert "--main_process_port" in cmd and cmd[cmd.index("-m", 3):cmd.index("-m", 3) + 4] == ["-m", "spar", "train", "dpo"]
    sets = dict(cmd[i + 1].split("=", 1) for i, x in enumerate(cmd) if x == "--set")
    assert sets["learning_rate"] == "3e-06" and sets["max_length"] == "null" and sets["report_to"] == '["tensorboard"]'
    assert set(sets) == set(TrainSettings.model_fields)
    # what --set does with them gives back the same settings
    from spar.cli import _overrides

    assert TrainSettings().but(**_overrides([f"{k}={v}" for k, v in sets.items()])) == s


def _port() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return str(sock.getsockname()[1])


@pytest.mark.slow
@pytest.mark.model
def test_dpo_on_two_processes_follows_one_process_with_the_same_global_batch(tmp_path):
    data = tmp_path / "dpo.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    common = dict(max_steps=3, learning_rate=1e-5, warmup_ratio=0.0, max_length=96, precompute_ref=True, checkpoints=0)
    one_path, one = run_train("dpo", "embedded", data, tmp_path / "one", TrainSettings(batch_size=1, grad_accum=2, **common), 0)
    two_path, two = run_train("dpo", "embedded", data, tmp_path / "two", TrainSettings(batch_size=1, grad_accum=1, **common), 0,
                              LauncherSettings(kind="accelerate", num_processes=2, args=["--main_process_port", _port()]))
    assert len(one) == len(two) == 3
    # the same global batch of 2 rows per step: DDP over gloo averages the two ranks' gradients as one
    # process accumulates them; the losses agree to within 2% (float sums in another order)
    assert all(abs(a - b) <= 0.02 * max(abs(a), 1e-3) + 1e-4 for a, b in zip(one, two)), (one, two)
    from spar.llm import Sampling
    from spar.llm.hf import HFBackend

    assert isinstance(HFBackend(two_path).generate([PROMPT], Sampling(max_new_tokens=6))[0][0], str)  # the saved model loads
