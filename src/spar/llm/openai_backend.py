"""Any OpenAI-compatible chat server (vLLM, SGLang, llama.cpp server, a hosted teacher, spar serve).

Model string: ``openai:<base_url>#<model>``, e.g. ``openai:http://127.0.0.1:8000/v1#embedded``.
The API key comes from ``$SPAR_OPENAI_API_KEY`` (or ``$OPENAI_API_KEY``) and is never logged.
Requests run concurrently (bounded by ``concurrency``); a 429, a 5xx, a timeout, a dropped
connection or a malformed body is retried with exponential backoff and jitter, so every request
comes back exactly once, in order.
"""

from __future__ import annotations

import asyncio
import os
import random
import types
from collections.abc import Sequence

from spar.llm import BackendError, BackendOptions, ChatLike, OnBatch, PartialFailure, Sampling, as_dicts, request_seed


def parse_spec(spec: str) -> tuple[str, str]:
    body = spec.removeprefix("openai:")
    base_url, sep, model = body.partition("#")
    if not sep or not base_url or not model:
        raise BackendError(f"bad model string {spec!r}: expected openai:<base_url>#<model>, "
                           "e.g. openai:http://127.0.0.1:8000/v1#embedded")
    return base_url, model


def _retry_after(error: Exception) -> float | None:
    """Seconds from a Retry-After header of the error's response (a number of seconds), if any."""
    headers = getattr(getattr(error, "response", None), "headers", None) or {}
    try:
        value = float(headers.get("retry-after", ""))
    except (TypeError, ValueError):
        return None
    return value if value >= 0 else None


class OpenAIBackend:
    def __init__(self, base_url: str, model: str, options: BackendOptions | None = None):
        self.options = options or BackendOptions()
        self.base_url, self.model = base_url, model
        self.name = f"openai:{base_url}#{model}"
        self._api_key = os.environ.get("SPAR_OPENAI_API_KEY") or os.environ.get("OPENAI_API_KEY") or "EMPTY"
        self.usage = types.SimpleNamespace(prompt_tokens=0)  # as the server reports it

    @classmethod
    def from_spec(cls, spec: str, options: BackendOptions | None = None) -> "OpenAIBackend":
        return cls(*parse_spec(spec), options)

    def __repr__(self) -> str:  # keeps the key out of logs and tracebacks
        return f"OpenAIBackend({self.base_url!r}, {self.model!r})"

    def generate(self, requests: Sequence[ChatLike], sampling: Sampling, on_batch: OnBatch | None = None) -> list[list[str]]:
        return asyncio.run(self._generate(requests, sampling, on_batch))

    async def _generate(self, requests: Sequence[ChatLike], sampling: Sampling, on_batch: OnBatch | None) -> list[list[str]]:
        import openai

        client = openai.AsyncOpenAI(base_url=self.base_url, api_key=self._api_key,
                                    timeout=self.options.timeout, max_retries=0)
        sem = asyncio.Semaphore(self.options.concurrency)

        async def one(i: int, chat: ChatLike) -> list[str]:
            async with sem:
                texts: list[str] = []
                ntok = 0
                # Some servers (llama.cpp) ignore n: ask again for what is missing.
                while len(texts) < sampling.n:
                    choices, used = await self._call(client, as_dicts(chat), sampling, sampling.n - len(texts), i,
                                                     len(texts))
                    texts.extend(choices)
                    ntok += used
                if on_batch:
                    on_batch(1, ntok)
                return texts[: sampling.n]

        try:
            got = await asyncio.gather(*(one(i, r) for i, r in enumerate(requests)), return_exceptions=True)
        finally:
            await client.close()
        failed = [(i, g) for i, g in enumerate(got) if isinstance(g, BaseException)]
        if failed:
            for _, g in failed:
                if not isinstance(g, BackendError):
                    raise g
            raise PartialFailure(f"{len(failed)} of {len(got)} requests failed; the first: {failed[0][1]}",
                                 [None if isinstance(g, BaseException) else g for g in got])
        return list(got)

    async def _call(self, client, messages, sampling: Sampling, n: int, index: int, first: int) -> tuple[list[str], int]:
        import openai

        retryable = (openai.RateLimitError, openai.InternalServerError, openai.APITimeoutError,
                     openai.APIConnectionError, openai.APIResponseValidationError)
        delay = 0.5
        for attempt in range(self.options.max_retries + 1):
            try:
                # vLLM's (and spar serve's) way to continue a prefilled assistant turn
                extra = ({"continue_final_message": True, "add_generation_prompt": False}
                         if messages[-1]["role"] == "assistant" else None)
                resp = await client.chat.completions.create(
                    model=self.model, messages=messages, n=n, extra_body=extra,
                    temperature=sampling.temperature, top_p=sampling.top_p,
                    max_tokens=sampling.max_new_tokens, stop=list(sampling.stop) or None,
                    seed=request_seed(messages, sampling.seed, first),
                )
                choices = [c.message.content for c in resp.choices]
                if not choices or any(not isinstance(c, str) for c in choices):  # none, or content: null
                    raise ValueError("no choices, or a choice with no text (content: null)")
                ntok = resp.usage.completion_tokens if resp.usage else 0
                self.usage.prompt_tokens += (resp.usage.prompt_tokens or 0) if resp.usage else 0
                return choices, ntok
            except (*retryable, ValueError, TypeError, AttributeError) as e:
                status = getattr(e, "status_code", None)
                if status is not None and status < 500 and status != 429:
                    raise BackendError(f"{self.base_url}: {status} {e}") from None
                if attempt == self.options.max_retries:
                    raise BackendError(f"{self.base_url}: request {index} of the batch: gave up after {attempt + 1} tries: "
                                       f"{type(e).__name__}: {e}") from None
                wait = delay * (1 + random.random())
                asked = _retry_after(e)
                if asked is not None:  # the server said how long to wait (429/503): at least that, up to a minute
                    wait = max(wait, min(asked, 60.0))
                await asyncio.sleep(wait)
                delay = min(delay * 2, 30.0)
            except openai.APIStatusError as e:
                raise BackendError(f"{self.base_url}: {e.status_code} {e.message}") from None
        raise AssertionError("unreachable")
