"""Every setting in one place; each is also an environment variable BERTSERVE_<NAME>."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from service.kinds import MODEL_KINDS, ModelKind

Provider = Literal["auto", "cpu", "cuda"]
Variant = Literal["auto", "fp32", "int8", "fp16"]
LogLevel = Literal["debug", "info", "warning", "error", "critical"]


# What a request's JSON may spend beyond its texts' characters, for the body limit derived
# from the other limits: a byte a character (text in UTF-8 as most encoders send it; a client
# that escapes non-ASCII characters as \uXXXX spends up to 6, and meets this limit first),
# each string's quotes, comma, a pair's brackets and spaces, and the rest of the body (field
# names, options, a model name). Not 6 a character: the largest rerank request would then make
# the default 30 MiB, and every body is held whole in memory and parsed on the event loop.
JSON_BYTES_PER_CHAR = 1
JSON_BYTES_PER_STRING = 8
JSON_BYTES_OTHER = 64 * 1024


def env_name(setting: str) -> str:
    """The environment variable of a setting, as an error that a limit refused names it."""
    return f"BERTSERVE_{setting.upper()}"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="BERTSERVE_", extra="ignore", allow_inf_nan=False)

    # where and what to serve
    models: Path = Field(Path("models"), description="model repository: one model directory per subfolder")
    host: str = Field("127.0.0.1", min_length=1, description="bind address")
    port: int = Field(8000, ge=0, le=65535, description="TCP port")
    api_servers: int | Literal["auto"] = Field(
        "auto",
        description="HTTP front-end processes sharing the port, around one engine process that runs the models "
        "(service/supervisor.py); 1 = one process, no IPC. auto = 1 on the CPU up to 8 CPUs, one per 8 CPUs "
        'above; on CUDA one per 2 CPUs, 2 to 8 (docs/design.md, "Front ends and the engine")',
    )
    model_sources: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="checkpoint folders, exported model directories or hub ids (org/name[@revision]) to serve, as "
        "`serve --model` takes them; comma-separated, each with optional ;key=value overrides (task, name, "
        "max-length, pairs, int8, fp16)",
    )
    cache_dir: Path | None = Field(
        None,
        description="export cache of the checkpoints served by --model; default $XDG_CACHE_HOME/bertserve "
        "(~/.cache/bertserve)",
    )
    default_models: Annotated[dict[ModelKind, str], NoDecode] = Field(
        default_factory=dict,
        description="the model that answers a request naming none, per task; task=name pairs, comma-separated "
        '(classify=minilm-sentiment,embed=all-minilm-l6-v2), over a manifest\'s "default": true',
    )

    # runtime
    provider: Provider = Field("auto", description="execution provider: auto (CUDA if available), cpu or cuda")
    variant: Variant = Field(
        "auto",
        description="graph variant: auto = fp16 on CUDA when present; on the CPU int8 where the CPU has int8 "
        "dot-product instructions (VNNI), else fp32 (by the timing at load where its flags cannot be read)",
    )
    instances: int = Field(
        0,
        ge=0,
        le=64,
        description="onnxruntime sessions per model, each on its own thread with its share of the CPUs; "
        "the next batch goes to a free one. 0 = one per CPU this process may use, at most 4; 1 on CUDA",
    )
    intra_op_threads: int = Field(
        0, ge=0, le=1024, description="onnxruntime threads per session; 0 = the CPUs this process may use / instances"
    )
    fast_lane: bool = Field(
        True,
        description="on CPU, one more session per model whose threads spin during a run (not between runs), "
        "used for a batch that leaves the queue empty: the low-load latency of spinning without its cost "
        "under load",
    )
    inline_max_ms: float = Field(
        20.0,
        ge=0,
        le=1000,
        description="the fast lane runs a batch on the event loop's own thread when it is expected to take at "
        "most this long (timed per model at start-up), saving the hop to a thread and back; 0 = never",
    )
    runtime_nice: int = Field(
        10,
        ge=0,
        le=19,
        description="how much lower the CPU priority of inference threads is than the event loop's "
        "(Linux nice steps; 0 = the same): the loop's short jobs do not wait behind them",
    )
    io_binding: bool | None = Field(None, description="use IO binding; default on for CUDA only")
    share_weights: bool = Field(
        True,
        description="on the CPU, the sessions of one model (its instances and fast lane) share one copy of its "
        "weights instead of one each",
    )
    verify_models: bool = Field(
        True,
        description="at start-up, check every model file against its manifest sha256 and that the graph "
        "accepts every token id its tokenizer can produce",
    )
    warmup: bool = Field(
        True,
        description="run every session once at the model's max length before reporting ready "
        "(on CUDA the largest batch too)",
    )

    # batching
    max_batch_size: int | None = Field(
        None, ge=1, le=4096, description="items per batch; unset = 32 on CPU, 128 on CUDA"
    )
    max_batch_tokens: int | None = Field(
        None,
        ge=1,
        description="padded tokens per batch (rows x longest); unset = follows the model: 8192 for a "
        "6-layer, 384-wide model like MiniLM, scaled down by layers x hidden^2 (BERT-base: 1024), at least 512",
    )
    min_batch_fill: float | None = Field(
        None,
        ge=0,
        le=1,
        description="an item joins a batch only while real tokens / padded tokens stays >= this; "
        "unset = 0.95 on CPU (cost follows padded tokens), 0 on CUDA (batching is nearly free)",
    )
    max_wait_ms: float = Field(
        0.0, ge=0, le=10_000, description="wait up to this long from the oldest item to fill a batch"
    )
    max_queue_items: int | None = Field(
        None,
        ge=1,
        description="queued items per model; beyond it requests get 429; unset = 1024 on CPU, 8192 on CUDA "
        "(a GPU drains 8192 in well under a second)",
    )
    request_timeout_s: float = Field(
        30.0, gt=0, description="per-request deadline (a header can lower it): 504 after it"
    )
    # Priority levels (service/batching/queues.py). 5 s: twice the time a full default queue
    # takes to drain on a 2-core CPU (about 2.5 s), so a burst of live traffic that fills the
    # queue is still served first, whole; and far enough within the request timeout that an
    # aged bulk item, then behind at most one batch, is never answered 504.
    batch_max_wait_s: float = Field(
        5.0,
        gt=0,
        description="a batch-priority item waiting longer than this is served as interactive (aging), "
        "so bulk work progresses under any live load",
    )
    batch_queue_share: float = Field(
        0.5,
        gt=0,
        le=1,
        description="share of the queue (BERTSERVE_MAX_QUEUE_ITEMS) that batch-priority items may hold; "
        "past it they get 429 while interactive requests are still admitted",
    )

    # request limits
    max_inputs: int = Field(64, ge=1, description="inputs per request")
    max_rerank_texts: int = Field(256, ge=1, description="texts per rerank request (ranked lists are long)")
    max_input_chars: int = Field(20_000, ge=1, description="characters per input")
    max_body_bytes: int | None = Field(
        None,
        ge=1,
        description="request body size; 413 beyond it. Unset = the largest body the limits above admit: "
        "(2 x max_inputs for pairs, or max_rerank_texts + 1 for a query and its texts) strings of "
        "max_input_chars characters at a byte each, plus JSON overhead",
    )
    max_windows: int = Field(
        256,
        ge=1,
        description="windows per request, all its inputs together, when `stride` reads long texts whole "
        "(/classify, /embed, /v1/embeddings)",
    )

    # slow and greedy clients
    header_timeout_s: float = Field(10.0, gt=0, description="time a client may take to send a request's headers")
    body_timeout_s: float = Field(10.0, gt=0, description="time a client may take to send a request's body (408)")
    keep_alive_timeout_s: float = Field(5.0, gt=0, description="idle keep-alive connections are closed after this")
    cache_bytes: int = Field(
        0, ge=0, description="result cache size in bytes (model outputs by exact token ids); 0 = off"
    )
    max_connections: int = Field(4096, ge=1, description="open connections; beyond it new ones get 503 and are closed")

    # operations
    drain_timeout_s: float = Field(25.0, ge=0, description="on SIGTERM, wait this long for accepted requests")
    stall_timeout_s: float = Field(
        30.0, gt=0, description="a batch running longer than this turns /health/ready to 503 (runtime stalled)"
    )
    sick_grace_s: float = Field(
        60.0,
        gt=0,
        description="a model whose runs keep failing (device errors, or every run) turns /health/ready to 503 at "
        "once, and /health/live to 503 after this many seconds, so an orchestrator restarts the process",
    )
    log_level: LogLevel = Field(
        "info", description="debug, info (one access line per request), warning, error or critical"
    )

    # access
    api_keys: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="comma-separated API keys; empty (and no keys file) = no authentication"
    )
    api_keys_file: Path | None = Field(None, description="file of API keys, one per line (added to api_keys)")
    protect_metrics: bool = Field(False, description="require an API key for /metrics too (health stays open)")
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="comma-separated origins allowed by CORS; empty = CORS off"
    )

    @field_validator("api_servers")
    @classmethod
    def _servers(cls, value: int | str) -> int | str:
        if isinstance(value, int) and not 1 <= value <= 64:
            raise ValueError("must be auto or a number from 1 to 64")
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _lower(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value

    @field_validator("api_keys_file")
    @classmethod
    def _readable(cls, value: Path | None) -> Path | None:
        if value is not None:
            try:
                value.read_text()
            except OSError as exc:
                raise ValueError(f"{value}: {exc.strerror}") from exc
        return value

    @field_validator("api_keys", "cors_origins", "model_sources", mode="before")
    @classmethod
    def _split_csv(cls, value: object) -> object:
        if isinstance(value, str):
            return [v.strip() for v in value.split(",") if v.strip()]
        return value

    @field_validator("default_models", mode="before")
    @classmethod
    def _pairs(cls, value: object) -> object:
        """`classify=a,embed=b`: each task once, each a kind of model the manifests know."""
        if not isinstance(value, str):
            return value
        pairs: dict[str, str] = {}
        for item in filter(None, (v.strip() for v in value.split(","))):
            task, _, name = (part.strip() for part in item.partition("="))
            if task not in MODEL_KINDS:
                raise ValueError(f"{item!r}: unknown task {task!r} (one of {', '.join(MODEL_KINDS)})")
            if not name:
                raise ValueError(f"{item!r}: write task=name, e.g. {task}=my-model")
            if task in pairs:
                raise ValueError(f"task {task} is named twice")
            pairs[task] = name
        return pairs

    @property
    def body_limit(self) -> int:
        """The request body size in bytes: as set, else the largest body the other request
        limits admit when its text takes a byte a character, so that such a request is not
        refused for its size (text escaped as \\uXXXX meets this limit first)."""
        if self.max_body_bytes is not None:
            return self.max_body_bytes
        strings = max(2 * self.max_inputs, self.max_rerank_texts + 1)
        return strings * (self.max_input_chars * JSON_BYTES_PER_CHAR + JSON_BYTES_PER_STRING) + JSON_BYTES_OTHER

    def all_api_keys(self) -> list[str]:
        """Every accepted API key: the list plus the file's lines (blank lines and # comments skipped)."""
        keys = list(self.api_keys)
        if self.api_keys_file is not None:
            lines = self.api_keys_file.read_text().splitlines()
            keys += [k.strip() for k in lines if k.strip() and not k.strip().startswith("#")]
        return keys
