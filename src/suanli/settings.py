"""Typed settings, read once from ``SUANLI_*`` environment variables and passed down.

A bad value fails at start with the variable named; nothing reads the environment later.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


def default_home() -> Path:
    return Path.home() / ".suanli"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SUANLI_", extra="ignore", frozen=True)

    home: Path = Field(default_factory=default_home, description="state directory")
    database_url: str | None = Field(
        default=None, description="SQLAlchemy URL; default: SQLite file in the state directory"
    )
    host: str = Field(default="127.0.0.1", description="address the API binds to")
    port: int = Field(default=8270, ge=0, le=65535)
    heartbeat_interval_s: float = Field(default=5.0, gt=0)
    heartbeat_timeout_s: float = Field(default=20.0, gt=0, description="silence before down")
    liveness_check_s: float = Field(default=2.0, gt=0, description="how often to look")
    health_check_interval_s: float = Field(
        default=3600.0, gt=0, description="idle ready nodes get a health check this often"
    )
    qualify_time_scale: float = Field(
        default=1.0, gt=0, le=10, description="scales the suite's durations (tests use < 1)"
    )
    qualify_thresholds: Path | None = Field(
        default=None, description="qualification thresholds file (default: packaged)"
    )
    gateway_redis_url: str | None = Field(
        default=None, description="share rate limits between gateway processes through Redis"
    )
    gateway_key_cache_s: float = Field(
        default=1.0, ge=0, le=60, description="how long a key lookup is reused"
    )
    gateway_refresh_s: float = Field(default=0.5, gt=0, le=60, description="replica table reload")
    gateway_flush_s: float = Field(default=0.2, gt=0, le=60, description="usage journal flush")
    gateway_fsync: bool = Field(
        default=False, description="fsync each usage record (survives a machine crash too)"
    )
    gateway_max_attempts: int = Field(default=3, ge=1, le=10, description="replicas tried")
    replica_drain_grace_s: float = Field(
        default=30.0,
        ge=0,
        le=3600,
        description="a draining replica stops when idle or after this (engines that cannot "
        "say whether they are idle wait it out)",
    )
    rating_interval_s: float = Field(
        default=1.0, gt=0, le=3600, description="how often new usage is rated"
    )
    scheduler_policy: Literal[
        "throughput", "domestic-first", "cost", "fragmentation", "binpack", "spread"
    ] = Field(
        default="throughput",
        description="how the live scheduler ranks placements of pending workloads "
        "(suanli.scheduler.placement.POLICIES)",
    )
    scheduler_interval_s: float = Field(
        default=2.0, gt=0, le=3600, description="how often pending workloads are placed"
    )
    local_country: str = Field(default="CN", min_length=2, max_length=2)
    log_level: str = Field(default="info")

    def journal_dir(self) -> Path:
        return self.home / "usage-journal"

    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.home / 'suanli.db'}"
