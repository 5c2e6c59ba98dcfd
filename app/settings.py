"""The service's configuration: one settings class, read from environment variables."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from model.devices import memory_limit, usable_cpus

DEFAULT_WEIGHTS = Path(__file__).resolve().parent.parent / "weights"


def resolve_workers(worker_memory_mb: int, cpus: int | None = None, memory: int | None = None) -> int:
    """``WORKERS=auto``: one worker per usable CPU (affinity and cgroup quota: the service is
    bound by one interpreter lock per process), but no more than fit in the memory limit at
    ``worker_memory_mb`` each, and at least one."""
    cpus = usable_cpus() if cpus is None else cpus
    memory = memory_limit() if memory is None else memory
    fit = cpus if memory is None else memory // (worker_memory_mb * 1024 * 1024)
    return max(1, min(cpus, fit))


class Settings(BaseSettings):
    """Every knob of the service. Each field is set by the environment variable of its name in
    capitals (``PORT=9000``); README.md lists them."""

    model_config = SettingsConfigDict(env_prefix="", case_sensitive=False, extra="ignore")

    host: str = Field("127.0.0.1", description="interface to bind (0.0.0.0 in the container)")
    port: int = Field(8000, ge=1, le=65535)
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="where the models run; auto = CUDA when available")
    weights_dir: Path = Field(DEFAULT_WEIGHTS, description="folder with the checkpoints and their SHA256SUMS")
    log_level: Literal["critical", "error", "warning", "info", "debug"] = "info"
    workers: int | Literal["auto"] = Field("auto", description="uvicorn worker processes; auto = one per usable CPU, "
                                         "as many as WORKER_MEMORY_MB each fit in the memory limit")
    worker_memory_mb: int = Field(1200, ge=100, description="memory one worker is planned to take (WORKERS=auto)")
    torch_threads: int | None = Field(None, ge=1, description="torch intra-op threads per worker (default: usable CPUs / WORKERS)")

    batching: bool = Field(True, description="gather concurrent requests into shared forward passes")
    batch_max_size: int = Field(64, ge=1, description="most images in one batched forward pass")
    batch_max_wait_ms: float = Field(0.0, ge=0, description="longest a batch waits to fill, from its first request's arrival; "
                                     "0: a batch starts as soon as the model is free (requests gather while a pass runs)")
    max_queue_images: int = Field(1024, ge=1, description="most images waiting per model; beyond it 503 with Retry-After")
    max_pending_requests: int = Field(256, ge=1, description="most prediction requests in flight; beyond it 503 with Retry-After at once")
    request_timeout_seconds: float = Field(10.0, gt=0, description="a prediction still waiting for its batch this long after arrival gets 503")

    max_body_bytes: int = Field(20 * 1024 * 1024, ge=1024, description="largest request body (413 above)")
    body_timeout_seconds: float = Field(30.0, gt=0, description="the whole request body must arrive within this "
                                        "long of the request's start (408 after)")
    keep_alive_seconds: float = Field(5.0, gt=0, description="an idle keep-alive connection is closed after this long")
    max_images: int = Field(256, ge=1, description="most images in one request")
    max_image_pixels: int = Field(40_000_000, ge=1, description="most pixels in one image (decompression bombs)")
    max_request_pixels: int = Field(50_000_000, ge=1, description="most pixels the images of one request may declare "
                                    "(413 above), read from their headers before decoding")
    max_inflight_pixels: int = Field(100_000_000, ge=1, description="most declared pixels in the requests a worker has "
                                     "in flight; a request beyond it gets 503 overloaded with Retry-After at once")
    max_sequence_digits: int = Field(64, ge=1, description="most digits in one sequence")
    max_abs_number: int = Field(10_000, ge=0, description="largest |number| for /predict/digit-sum (also capped by the model's exact range)")

    shutdown_drain_seconds: float = Field(0.0, ge=0, description="after SIGTERM, keep answering (readiness 503) this long")
    shutdown_timeout_seconds: float = Field(30.0, ge=0, description="then, the longest in-flight requests may take to finish")

    api_key: SecretStr | None = Field(None, description="when set, required on predictions, /models and /metrics")
    # NoDecode: the variable is a comma-separated list, not JSON.
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list, description="origins allowed by CORS, comma-separated; none by default")

    @field_validator("workers", mode="before")
    @classmethod
    def _workers(cls, value: object) -> object:
        if isinstance(value, str) and value.strip().isdigit():
            value = int(value)
        if isinstance(value, int) and value < 1:
            raise ValueError("WORKERS must be at least 1, or auto")
        return value

    @property
    def worker_count(self) -> int:
        """WORKERS resolved: a number as given; ``auto`` is ``resolve_workers`` on this machine."""
        return self.workers if isinstance(self.workers, int) else resolve_workers(self.worker_memory_mb)

    @field_validator("api_key", mode="before")
    @classmethod
    def _empty_key_is_none(cls, value: object) -> object:
        return None if value in ("", None) else value

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        if isinstance(value, str):
            return [origin.strip() for origin in value.split(",") if origin.strip()]
        return value
