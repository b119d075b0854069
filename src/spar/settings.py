"""One settings object per stage.

Each class here is at once a section of a recipe (``spar.config.RunConfig`` composes them), what the
stage function takes (``spar.stages``), and where the command line takes its defaults from (the CLI
only overrides). None holds a seed: seeds derive from the run's seed and the iteration, and are
passed to the stage functions beside the settings, so a recipe cannot set a seed that the loop
would then silently replace.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from spar.io import DataError
from spar.llm import Sampling


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    def but(self, **changes: Any):
        """A validated copy with some values changed."""
        return type(self).model_validate({**self.model_dump(), **changes})

    def at(self, dotted: str) -> Any:
        """The value at a dotted settings path (``"train_refiner"``, ``"eval.ifeval_data"``): the one
        place a stage's declared settings, inputs and sections are looked up by name."""
        value: Any = self
        for part in dotted.split("."):
            value = getattr(value, part)
        return value


class PromptsSettings(Settings):
    source: Literal["procedural", "file"] = "procedural"
    path: str | None = None  # with source=file: a prompts JSONL (spar or IFEval rows)
    count: int = Field(64, ge=1, le=10_000_000)  # training prompts
    heldout: int = Field(32, ge=0, le=10_000_000)  # held-out procedural prompts for evaluation
    min_constraints: int = Field(1, ge=1)
    max_constraints: int = Field(3, ge=1)


class SampleSettings(Settings):
    """The actor's answers: ``k`` per prompt."""

    k: int = Field(5, ge=1)
    temperature: float = Field(0.9, ge=0)
    top_p: float = Field(0.9, gt=0, le=1)
    max_new_tokens: int = Field(512, ge=1)

    def sampling(self, seed: int) -> Sampling:
        return Sampling(n=self.k, temperature=self.temperature, top_p=self.top_p, max_new_tokens=self.max_new_tokens,
                        seed=seed)


Mode = Literal["llm", "verifier", "hybrid"]


class JudgeSettings(Settings):
    """The refiner as judge (``spar.roles.judge``): votes per answer and who decides."""

    votes: int = Field(5, ge=1)
    mode: Mode = "hybrid"
    # the checkers' checklist (the rationale where no vote agrees, and the verifier judge's): an unmet
    # line also says what the answer has ("found 2 paragraphs separated by ***; 3 asked"), so the
    # refiner knows where to edit (spar.constraints.findings). Off: the shipped refiner learnt without.
    findings: bool = False
    temperature: float = Field(0.7, ge=0)  # votes=1 always decodes greedily
    top_p: float = Field(0.95, gt=0, le=1)
    max_new_tokens: int = Field(384, ge=1)

    @property
    def needs_model(self) -> bool:
        """Whether judging asks a model (the verifier judge only runs the checkers): the one place
        that decides whether a judge stage, a search or a reward stage needs a backend."""
        return self.mode != "verifier"

    def sampling(self, seed: int) -> Sampling:
        if self.votes == 1:
            return Sampling(n=1, temperature=0.0, max_new_tokens=self.max_new_tokens, seed=seed)
        return Sampling(n=self.votes, temperature=self.temperature, top_p=self.top_p,
                        max_new_tokens=self.max_new_tokens, seed=seed)


class NegativesSettings(Settings):
    per_prompt: Literal["one", "all"] | int = "one"  # failed answers of a prompt that become roots


@dataclass(frozen=True)
class GuardConfig:
    # case-folded rapidfuzz ratio / 100 to the parent. 0.7: of the pairs read (README), the ones at
    # 0.54 and 0.64 were loose rewrites, the bootstrapped refiner's edits were 0.81 and 0.97.
    min_similarity: float = 0.7
    max_length_ratio: float = 2.0  # len(child) / len(parent) within [1/r, r]
    machinery: bool = True

    def __post_init__(self) -> None:
        if not 0 <= self.min_similarity <= 1:
            raise DataError(f"min_similarity must be in [0, 1], got {self.min_similarity}")
        if self.max_length_ratio < 1:
            raise DataError(f"max_length_ratio must be >= 1, got {self.max_length_ratio}")



Strategy = Literal["bfs", "dfs", "greedy", "best_of_n", "iterative"]


class SearchSettings(Settings):
    """Tree search over refinements (``spar.search``), the refiner's sampling, and the guard."""

    strategy: Strategy = "bfs"
    branch: int = Field(3, ge=1)  # refinements per expanded node
    select: int = Field(2, ge=1)  # children kept (bfs frontier) or descended into (dfs)
    depth: int = Field(3, ge=1)  # levels below the root
    budget: int = Field(15, ge=1)  # judged nodes at most (root not counted); 3 + 6 + 6 = 15 with the defaults
    max_retries: int = Field(3, ge=0)  # re-asks for a refinement reply without [[start]]...[[end]]
    temperature: float = Field(0.9, ge=0)
    top_p: float = Field(0.95, gt=0, le=1)
    max_new_tokens: int = Field(512, ge=1)
    prefill: bool = True  # start the refiner's turn with the [[start]] (or [[edits]]) marker
    # the refiner's reply: "rewrite", the whole refined answer (the paper's), or "edits", operations
    # that quote spans of the answer and spar applies (spar.roles.edits; ops that do not apply fail)
    refine_format: Literal["rewrite", "edits"] = "rewrite"
    # the guard (spar.roles.guard): an accepted refinement, and the chosen answer of a pair, must
    # stay the same answer as its parent / the rejected answer
    guard: bool = True
    min_similarity: float = Field(GuardConfig.min_similarity, ge=0, le=1)  # case-folded rapidfuzz ratio / 100
    max_length_ratio: float = Field(GuardConfig.max_length_ratio, ge=1)  # within this factor of the parent's length

    def guard_config(self) -> GuardConfig | None:
        return GuardConfig(self.min_similarity, self.max_length_ratio) if self.guard else None

    def sampling(self, k: int, seed: int, greedy: bool = False) -> Sampling:
        if greedy or self.temperature == 0:
            return Sampling(n=1, temperature=0.0, max_new_tokens=self.max_new_tokens, seed=seed)
        return Sampling(n=k, temperature=self.temperature, top_p=self.top_p, max_new_tokens=self.max_new_tokens,
                        seed=seed)


class RFTSettings(Settings):
    balance: float = Field(0.5, ge=0, le=1)  # share of "yes" among judgment examples
    refinement_share: float | None = Field(None, ge=0, lt=1)  # cap on refinement examples (None = keep all)


class TrainSettings(Settings):
    """Shared by SFT and DPO (``spar.train``). Defaults are the paper's DPO settings; ``sft_defaults``
    gives the refiner's. The training seed is the run's, passed beside these."""

    learning_rate: float = Field(2e-7, gt=0)
    epochs: float = Field(1.0, gt=0)
    max_steps: int = -1  # > 0 overrides epochs
    batch_size: int = Field(2, ge=1)  # per device
    grad_accum: int = Field(1, ge=1)
    warmup_ratio: float = Field(0.1, ge=0, lt=1)
    max_length: int | None = Field(1024, ge=8)
    lora: bool = False
    lora_r: int = Field(16, ge=1)
    lora_alpha: int = Field(32, ge=1)
    merge_lora: bool = False  # save a merged full model instead of the adapter
    gradient_checkpointing: bool = False
    dtype: Literal["fp32", "bf16", "fp16"] | None = None  # None: bf16 on GPUs that support it, fp32 on CPU
    logging_steps: int = Field(1, ge=1)
    checkpoints: int = Field(8, ge=0)  # saved during a run (the last one kept) so a killed run resumes; 0 = none
    report_to: list[str] = Field(default_factory=list)  # e.g. ["tensorboard"] or ["wandb"]
    # DPO only
    beta: float = Field(0.1, gt=0)
    sft_weight: float = Field(0.1, ge=0)  # weight of the NLL term on the chosen answer (0 = plain DPO)
    precompute_ref: bool = False  # reference log-probs once, before training


def sft_defaults(**over: Any) -> TrainSettings:
    """RFT/SFT defaults: the paper's refiner lr 1e-6."""
    return TrainSettings(**{"learning_rate": 1e-6, **over})


class BootstrapSettings(Settings):
    """Iteration 0: teach the refiner to edit before self-play (``spar.selfplay.bootstrap``)."""

    refiner: Literal["none", "offline", "teacher"] = "none"
    teacher: str | None = None  # model string of the teacher, with refiner=teacher
    prompts: int = Field(64, ge=1)  # procedural prompts (their own seed) whose answers are broken and restored
    k: int = Field(4, ge=1)  # answers per prompt
    per_answer: int = Field(2, ge=1)  # broken copies per answer
    extra: int = Field(2, ge=0)  # constraints an answer happens to meet, added to its prompt
    # also judgment examples (broken -> No, original -> Yes). Off: the checkers vouch for the
    # constraints, not for the task, and a small actor's answers are often off-task, so a "Yes" on
    # them would teach the judge to ignore the task question its prompt asks first.
    judgments: bool = False
    # also teach a fixer's whole edit (the answer before a fixer made it meet an added constraint ->
    # after, e.g. one block of text -> paragraphs), what a failed answer of the loop usually needs
    whole_fixes: bool = True
    findings: bool = False  # the broken answers' checklists say what was found (judge.findings)
    # share of prompts whose breaks `spar bootstrap refiner` holds out for `spar bootstrap eval`
    # (the loop's bootstrap holds none out)
    eval_share: float = Field(0.2, ge=0, lt=1)
    budget: int = Field(6, ge=1)  # teacher: judged refinements per failed answer
    train: TrainSettings = TrainSettings(learning_rate=2e-5, epochs=2, max_length=768)


class RemoteSettings(Settings):
    """Requests to ``openai:`` models (a teacher, a served model). ``spar --timeout/--retries`` set these
    for every backend a command builds, ``spar iterate``'s included; they change no result, so no
    stage's hash covers them."""

    timeout: float = Field(120.0, gt=0)  # seconds per request before it is retried
    retries: int = Field(6, ge=0)  # retries of a failed request (the openai client's own)


class EngineSettings(Settings):
    """vLLM's engine (model strings ``vllm:...``, and the packaged models where vLLM runs them); the
    other backends ignore it."""

    # what runs the packaged models (embedded, qwen-coder): auto = vLLM where installed, else hf
    backend: Literal["auto", "hf", "vllm"] | None = None  # None: $SPAR_ENGINE, else auto
    tensor_parallel_size: int = Field(1, ge=1)
    pipeline_parallel_size: int = Field(1, ge=1)
    gpu_memory_utilization: float | None = Field(None, gt=0, le=1)  # None: vLLM's default
    max_model_len: int | None = Field(None, ge=16)  # None: the model's own
    cpu_kv_cache_gb: float | None = Field(None, gt=0)  # the CPU build's KV cache (VLLM_CPU_KVCACHE_SPACE); None: 2 on a CPU
    # the CPU build's core binding (VLLM_CPU_OMP_THREADS_BIND): None or "all" = every core (what
    # bench/peers.py measured); "auto" = vLLM's own, which keeps one core for its serving process (on
    # 2 cores the model then runs on one); or a range such as "0-3"
    cpu_threads_bind: str | None = None
    enable_prefix_caching: bool = True


class LauncherSettings(Settings):
    """How the loop's training stages run (``spar.stages.run_train``): in the spar process (``none``),
    or as ``accelerate launch`` of ``spar train`` (``accelerate``: DDP over ``num_processes``, or the
    DeepSpeed/FSDP setup of ``config_file``, e.g. ``recipes/accelerate/zero3.yaml``)."""

    kind: Literal["none", "accelerate"] = "none"
    num_processes: int = Field(2, ge=1)
    config_file: str | None = None
    args: list[str] = Field(default_factory=list)  # more `accelerate launch` arguments, e.g. ["--main_process_port", "29511"]


class ExecutorSettings(Settings):
    """Where generation runs (``spar.executor``): ``local`` (this process) or ``ray`` (the rows of a
    generation call spread over Ray actors, each holding one replica of the model)."""

    kind: Literal["local", "ray"] = "local"
    address: str | None = None  # ray: a cluster to join (ray.init's address); None = start a local one
    replicas: int = Field(2, ge=1)
    cpus_per_replica: float = Field(1, gt=0)
    gpus_per_replica: float = Field(0, ge=0)  # e.g. 1, or the vLLM tensor-parallel size
    max_restarts: int = Field(3, ge=0)  # replicas replaced per call before it fails


class EvalSettings(Settings):
    before: bool = True  # evaluate the starting model too (iteration 0)
    heldout: bool = True  # prompt-level strict accuracy on held-out procedural prompts
    ifeval_data: str | None = None  # IFEval input_data.jsonl; None = skip
    ifeval_limit: int | None = Field(None, ge=1)  # a fixed slice (the first N prompts); None = all 541
    max_new_tokens: int = Field(384, ge=1)
    # the refiner (the actor, for methods without one) as a judge on LLMBar, pointwise
    llmbar_data: str | None = None  # LLMBar's Dataset/LLMBar folder; None = skip
    llmbar_votes: list[int] = Field(default_factory=lambda: [1])  # vote counts, all from one sampling
    llmbar_limit: int | None = Field(None, ge=1)  # first N pairs of each subset
    # FollowBench (English): the actor's answers, rules for 350 items and followbench_judge (a model
    # string) for the other 470; None = the rule-checked items only
    followbench_data: str | None = None  # FollowBench's data/ folder; None = skip
    followbench_judge: str | None = None
    followbench_limit: int | None = Field(None, ge=1)  # first N items
    # refinement accuracy of the refiner on the held-out answers the checkers fail (spar.eval.refine),
    # its search judged as the run's judge is (the checkers allowed here: procedural prompts)
    refine: bool = False
    refine_budget: int = Field(6, ge=1)

    @field_validator("llmbar_votes")
    @classmethod
    def _votes(cls, v: list[int]) -> list[int]:
        if not v or min(v) < 1:
            raise ValueError("llmbar_votes needs at least one number of votes, each at least 1")
        return sorted(set(v))


class RewardSettings(Settings):
    """Self-Rewarding and Meta-Rewarding (``spar.methods.rewarding``): the five-point self-judge and
    the pairs built from its scores.

    With ``judge.mode: verifier`` an answer's score is 5 x the share of its prompt's checkable
    constraints it meets (``spar.methods.rewarding.verifier_score``), so methods can be compared on
    how they build pairs with the judge held equal; there are then no judgments to meta-judge."""

    samples: int = Field(3, ge=1)  # judge samples per answer, their parsed scores averaged
    temperature: float = Field(0.7, ge=0)
    top_p: float = Field(0.9, gt=0, le=1)
    max_new_tokens: int = Field(256, ge=1)
    # Meta-Rewarding's length control per iteration (the last value repeats): chosen = the shortest
    # answer scoring within rho of the top, rejected = the longest within rho of the bottom. 0 = plain.
    rho: list[float] = Field(default_factory=lambda: [0.0])
    meta_judge_iterations: int = Field(2, ge=0)  # Meta-Rewarding: iterations with judge pairs (paper: 1 and 2)
    meta_max_new_tokens: int = Field(256, ge=1)
    judge_max_chars: int | None = Field(1100, ge=1)  # drop a judge pair whose chosen judgment is longer

    def rho_at(self, t: int) -> float:
        value = self.rho[min(t, len(self.rho)) - 1] if self.rho else 0.0
        if not 0 <= value <= 1:
            raise DataError(f"reward.rho values must be in [0, 1], got {value}")
        return value


class RLVRSettings(Settings):
    """Verifiable-reward RL (``spar.methods.rlvr``): GRPO (TRL's GRPOTrainer) on the training prompts,
    the reward the share of a prompt's constraints its checkers pass. Learning rate, epochs, steps,
    dtype and LoRA come from ``train_actor``."""

    num_generations: int = Field(4, ge=2)  # completions per prompt: the group whose rewards are compared
    prompts_per_step: int = Field(2, ge=1)  # prompts per optimiser step (x num_generations completions)
    max_completion_length: int = Field(128, ge=8)
    temperature: float = Field(0.9, gt=0)
    top_p: float = Field(0.9, gt=0, le=1)
    beta: float = Field(0.04, ge=0)  # weight of the KL term to the starting model (TRL's estimator)
    # the guard against reward hacking: an answer under min_words words, or one that carries prompt
    # machinery (a judge's verdict line, the refine markers), is rewarded 0 whatever the checkers say
    # (an empty reply meets "no commas" and "all lowercase")
    min_words: int = Field(5, ge=0)
    max_prompts: int | None = Field(None, ge=1)  # train on the first N training prompts (None: all)


class BudgetSettings(Settings):
    """What an iteration may spend, whatever the method (``spar.methods.base.Budget``): stages that
    generate take their rows in chunks and stop taking more once the iteration's generated tokens
    (answers, judge replies, refinements, rollouts) reach the budget. SPaR spends it on samples,
    then search; Self-/Meta-Rewarding on samples, then the model judge; RLVR on rollouts. The
    manifest records the budget and what each iteration spent."""

    generated_tokens: int | None = Field(None, ge=1)  # per iteration; None: no budget (every prompt, every tree)


class SelfSettings(Settings):
    """SELF (``spar.methods.self_refine``): one self-feedback and one self-refinement per failed answer."""

    keep_correct: bool = False  # also train on answers the first judgment already accepted
    meta_skill: bool = True  # also train on the accepted refinement replies (feedback -> refinement)


class CrossValidation(Settings):
    """AutoIF's rules for keeping an instruction's verification functions and test cases
    (``spar.selfplay.autoif.cross_validate``); part of ``AutoIFSettings``."""

    rules: Literal["code", "paper"] = "code"
    min_functions: int = Field(3, ge=1)  # code; the paper asks for 1
    min_cases: int = Field(10, ge=1)  # code; the paper asks for 1
    function_accuracy: float = Field(0.8, ge=0, le=1)  # code: >= on the kept cases; paper: > 0.5 on all cases


class AutoIFSettings(CrossValidation):
    """AutoIF (``spar.methods.autoif``; spec ``autoif.md``). Defaults: the reference code's
    cross-validation rules (the fields of ``CrossValidation``) and the paper's response threshold,
    at CPU-sized counts."""

    teacher: str | None = None  # model string of the supervision model; None = the actor itself (self-alignment)
    instructions: int = Field(16, ge=1)  # new instructions asked for per augmentation request
    augment_samples: int = Field(4, ge=1)  # augmentation requests
    max_instructions: int = Field(32, ge=1)  # instructions taken on (seeds first)
    function_samples: int = Field(4, ge=1)  # function + 3 cases samples per instruction
    # joint: one request for a function and its cases (the spec); split: the function alone, and
    # case_samples texts asked to follow and as many asked to break the instruction (for small teachers)
    requests: Literal["joint", "split"] = "joint"
    case_samples: int = Field(6, ge=1)  # split: texts per label per instruction
    back_translation: bool = True  # the model itself judges contradiction (no NLI model offline)
    queries: int = Field(4, ge=1)  # queries (spar's seed tasks) per kept instruction
    positive: float = Field(0.5, ge=0, le=1)  # pass rate of a chosen response at least this
    # query/response quality (spec section 9): the supervision model scores each response that passed
    # (0-10, "Score: N" on the last line) this many times; a response is kept for the pairs and the
    # SFT rows when the mean of its parsed scores is at least quality_min. 0 = no check.
    quality_samples: int = Field(1, ge=0)
    quality_min: float = Field(8.0, ge=0, le=10)
    temperature: float = Field(0.8, ge=0)
    top_p: float = Field(0.95, gt=0, le=1)
    max_new_tokens: int = Field(512, ge=1)
    wall_seconds: float = Field(5.0, gt=0)  # per verifier call, in the sandbox
    workers: int = Field(2, ge=1)
    unsafe_no_network_isolation: bool = False
