"""All configuration, read once from ``POSTWISE_*`` environment variables.

``.env.example`` at the repository root documents every variable.
"""

from __future__ import annotations

import secrets
from datetime import date
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="POSTWISE_", env_file=None, extra="ignore")

    environment: Literal["development", "production", "test"] = "development"
    data_dir: Path = Path("postwise-data")
    database_url: str = Field(
        default="",
        description="SQLAlchemy URL; empty means SQLite in data_dir. "
        "Production: postgresql+psycopg://user:pass@host/db",
    )
    secret_key: SecretStr | None = Field(
        default=None,
        description="Keys the erasure hashes and signed tokens. Empty: generated once "
        "into data_dir/secret.key (fine for a laptop, set it explicitly in production).",
    )

    api_host: str = "127.0.0.1"
    api_port: int = 8000
    base_url: str = "http://127.0.0.1:8000"

    log_format: Literal["console", "json"] = "console"
    log_level: str = "INFO"

    capture_smtp_host: str = "127.0.0.1"
    capture_smtp_port: int = 1025

    worker_poll_seconds: float = 0.5
    worker_batch_size: int = 10
    job_lease_seconds: int = 60

    max_request_bytes: int = 10 * 1024 * 1024
    bulk_upsert_max: int = 5000
    import_batch_size: int = 2000

    # Tracking (/v1): events per second per write key in each API process, and the burst.
    tracking_rate_per_second: float = Field(default=5000.0, gt=0)
    tracking_rate_burst: int = Field(default=20000, gt=0)

    event_retention_days: int = Field(
        default=730, ge=0, description="Events older than this are purged daily; 0 keeps all."
    )

    # Segments (docs/segments.md): how often time-dependent segments are recomputed.
    segment_sweep_minutes: int = Field(
        default=15, ge=1, description="Time-dependent segments are refreshed this often."
    )

    # Analytics (docs/analytics.md): how often the worker folds new events into the rollups.
    analytics_rollup_seconds: int = Field(
        default=60, ge=1, description="Seconds between rollups of each workspace's new events."
    )

    # Delivery (docs/delivery.md): how mail leaves. capture writes .eml files and sends nothing.
    delivery_transport: Literal["capture", "relay", "mx"] = "capture"
    capture_dir: Path | None = Field(
        default=None, description="Maildir for captured mail; empty means data_dir/captured."
    )
    relay_host: str = "127.0.0.1"
    relay_port: int = 587
    relay_tls: Literal["none", "opportunistic", "starttls", "implicit"] = "starttls"
    relay_username: str = ""
    relay_password: SecretStr | None = None
    relay_pool_size: int = Field(default=4, ge=1)
    delivery_helo_hostname: str = ""
    delivery_batch_size: int = Field(default=100, ge=1)
    delivery_concurrency: int = Field(default=16, ge=1)
    delivery_lease_seconds: float = Field(default=300.0, gt=0)
    delivery_give_up_hours: float = Field(default=120.0, gt=0)
    delivery_retry_base_seconds: float = Field(default=60.0, gt=0)
    delivery_global_per_second: float = Field(default=500.0, gt=0)
    delivery_other_per_minute: float = Field(default=60.0, gt=0)
    delivery_other_connections: int = Field(default=2, ge=1)
    delivery_from_address: str = "postwise@postwise.test"
    delivery_bounce_domain: str = "bounce.postwise.test"
    delivery_postal_address: str = ""
    delivery_warmup_start: date | None = Field(
        default=None, description="First sending day of a new domain/IP: caps daily volume."
    )

    # Bounces (docs/bounces.md): intake, suppression policy and filter-block detection.
    bounce_raw_limit: int = Field(
        default=262144, ge=1024, description="Bytes of each inbound message kept (the rest cut)."
    )
    bounce_soft_limit: int = Field(
        default=3, ge=1, description="Soft bounces within bounce_soft_days that suppress."
    )
    bounce_soft_days: int = Field(default=7, ge=1)
    bounce_burst_min: int = Field(
        default=10, ge=1, description="Hard bounces from one domain in one send that look filtered."
    )
    bounce_burst_ratio: float = Field(default=0.2, gt=0, le=1)
    bounce_burst_minutes: int = Field(default=10, ge=1)
    bounce_engagement_days: int = Field(
        default=30, ge=0, description="Human opens/clicks/visits this recent make 5.1.1 doubtful."
    )
    bounce_block_per_minute: float = Field(
        default=6.0, gt=0, description="Pace of a domain suspected of filtering our mail."
    )
    bounce_block_slow_hours: float = Field(default=24.0, gt=0)
    inbound_smtp_host: str = "127.0.0.1"
    inbound_smtp_port: int = 2525
    inbound_max_bytes: int = Field(default=10 * 1024 * 1024, ge=1024)
    bounce_imap_host: str = ""
    bounce_imap_port: int = 993
    bounce_imap_tls: Literal["implicit", "starttls", "none"] = "implicit"
    bounce_imap_username: str = ""
    bounce_imap_password: SecretStr | None = None
    bounce_imap_mailbox: str = "INBOX"
    bounce_imap_poll_seconds: int = Field(
        default=300, ge=10, description="Workers poll the bounce mailbox this often."
    )
    bounce_sendgrid_public_key: str = Field(
        default="", description="SendGrid signed-webhook key (base64 DER); empty: unsigned."
    )
    # Campaigns (docs/campaigns.md): guardrails pause a campaign past these rates.
    campaign_guardrail_min_sample: int = Field(
        default=500, ge=1, description="Messages a campaign sends before guardrails judge it."
    )
    campaign_guardrail_complaint_rate: float = Field(default=0.003, gt=0, le=1)
    campaign_guardrail_hard_bounce_rate: float = Field(default=0.05, gt=0, le=1)
    campaign_fanout_batch: int = Field(
        default=100_000, ge=1, description="Recipients snapshotted per fan-out job."
    )
    campaign_ab_method: Literal["ztest", "bayes"] = "ztest"

    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'postwise.db').resolve()}"

    def resolved_capture_dir(self) -> Path:
        return self.capture_dir if self.capture_dir is not None else self.data_dir / "captured"

    def resolved_secret_key(self) -> bytes:
        if self.secret_key is not None:
            return self.secret_key.get_secret_value().encode()
        path = self.data_dir / "secret.key"
        if not path.exists():
            self.data_dir.mkdir(parents=True, exist_ok=True)
            path.write_text(secrets.token_urlsafe(48))
            path.chmod(0o600)
        return path.read_text().strip().encode()


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
