"""An OpenAI-compatible server over any spar backend (``spar serve``).

Endpoints: ``GET /v1/models`` and ``POST /v1/chat/completions`` (n, temperature, top_p,
max_tokens, stop, seed). Concurrent requests to the server are answered one generate call at a
time: the backends batch internally and a 2-core CPU gains nothing from running two at once.
"""

from __future__ import annotations

import threading
import time
import uuid
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from spar.llm import Backend, Sampling


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")
    role: Literal["system", "user", "assistant"]
    content: str


class ChatRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")
    model: str | None = None
    messages: list[ChatMessage] = Field(min_length=1)
    n: int = Field(1, ge=1, le=64)
    temperature: float = Field(1.0, ge=0.0, le=2.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    stop: Annotated[str, Field(min_length=1)] | list[Annotated[str, Field(min_length=1)]] | None = None  # "" would stop at once
    seed: int | None = Field(None, ge=0, lt=2**63)
    continue_final_message: bool = False  # accepted for vLLM compatibility: a final assistant turn is always continued
    add_generation_prompt: bool = True


def build_app(backend: Backend, model_name: str, default_max_tokens: int = 512) -> Any:
    from fastapi import FastAPI
    from fastapi.concurrency import run_in_threadpool

    app = FastAPI(title="spar serve")
    lock = threading.Lock()
    created = int(time.time())

    @app.get("/v1/models")
    def models() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": model_name, "object": "model", "created": created, "owned_by": "spar"}]}

    def _run(req: ChatRequest) -> tuple[list[str], int]:
        stop = [req.stop] if isinstance(req.stop, str) else (req.stop or [])
        sampling = Sampling(n=req.n, temperature=req.temperature, top_p=req.top_p,
                            max_new_tokens=req.max_completion_tokens or req.max_tokens or default_max_tokens,
                            stop=tuple(stop), seed=req.seed or 0)
        used = [0]
        with lock:
            texts = backend.generate([[m.model_dump() for m in req.messages]], sampling,
                                     on_batch=lambda _n, ntok: used.__setitem__(0, used[0] + ntok))[0]
        return texts, used[0]

    @app.post("/v1/chat/completions")
    async def chat(req: ChatRequest) -> dict[str, Any]:
        from fastapi import HTTPException

        from spar.io import DataError
        from spar.llm import BackendError

        try:
            texts, ntok = await run_in_threadpool(_run, req)
        except (BackendError, DataError) as e:  # a request the model cannot take: the client's to fix
            raise HTTPException(status_code=400, detail=str(e)) from None
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": req.model or model_name,
            "choices": [
                {"index": i, "message": {"role": "assistant", "content": t}, "finish_reason": "stop"}
                for i, t in enumerate(texts)
            ],
            "usage": {"prompt_tokens": 0, "completion_tokens": ntok, "total_tokens": ntok},
        }

    return app
