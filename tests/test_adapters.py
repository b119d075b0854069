"""LoRA adapter folders as model strings, without loading a model: what they name and what is refused."""

import json

import pytest

from spar.llm import BackendError, adapters, check_model, context_length


def _adapter(folder, base="embedded"):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": base, "peft_type": "LORA"}))
    return folder


def test_an_adapter_folder_is_checked_through_its_base(tmp_path):
    a = _adapter(tmp_path / "a")
    assert adapters.is_adapter(a) and adapters.base_of(a) == "embedded"
    check_model(str(a))  # the packaged base is a valid model string
    assert context_length(str(a)) == context_length("embedded")
    bad = _adapter(tmp_path / "b", base="no-such-model")
    with pytest.raises(BackendError, match="no-such-model"):
        check_model(str(bad))


def test_an_adapter_under_vllm_and_a_config_without_a_base_are_refused_in_one_line(tmp_path):
    a = _adapter(tmp_path / "a")
    with pytest.raises(BackendError, match="merge_lora"):
        check_model(f"vllm:{a}")
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "adapter_config.json").write_text("{}")
    with pytest.raises(BackendError, match="names no base"):
        adapters.base_of(tmp_path / "c")
    (tmp_path / "c" / "adapter_config.json").write_text("{not json")
    with pytest.raises(BackendError, match="adapter_config.json"):
        adapters.base_of(tmp_path / "c")


def test_portable_base_names_a_packaged_base_by_name(tmp_path, monkeypatch):
    from spar.llm.embedded import packaged_cache_dir

    monkeypatch.setenv("SPAR_HOME", str(tmp_path / "home"))
    a = _adapter(tmp_path / "a", base=str(packaged_cache_dir("embedded")))
    adapters.portable_base(a)
    assert adapters.base_of(a) == "embedded"
    other = _adapter(tmp_path / "o", base=str(tmp_path / "elsewhere"))
    adapters.portable_base(other)
    assert adapters.base_of(other) == str(tmp_path / "elsewhere")


def test_a_shipped_name_resolves_to_its_folder_or_says_it_is_missing(monkeypatch, tmp_path):
    monkeypatch.setattr(adapters, "shipped_path", lambda name: tmp_path / "missing")
    with pytest.raises(BackendError, match="missing"):
        adapters.resolve("embedded-refiner")
    assert adapters.resolve("embedded") == "embedded"


def test_an_adapter_trained_from_a_shipped_adapter_records_it_by_name(tmp_path):
    folder = str(adapters.shipped_path("embedded-refiner"))
    assert adapters.stacked_base("embedded-refiner") == "embedded-refiner"
    assert adapters.stacked_base(folder) == "embedded-refiner"  # given as its path, still by name
    other = _adapter(tmp_path / "a")
    assert adapters.stacked_base(str(other)) == str(other.resolve())
    assert adapters.stacked_base("embedded") is None  # not an adapter: the base is recorded as usual
