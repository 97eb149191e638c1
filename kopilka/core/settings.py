"""One frozen settings object, read from the environment (and `.env` when present)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import AliasChoices, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from kopilka.core.event_loop import EventLoop

PROJECT_ROOT = Path(__file__).resolve().parents[2]  # kopilka/core/settings.py -> the project


def _env(name: str) -> AliasChoices:
    """Accept both the conventional name (`DATABASE_URL`) and the prefixed one."""
    return AliasChoices(name, f"KOPILKA_{name}")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="KOPILKA_", env_file=".env", frozen=True, extra="ignore"
    )

    kafka_bootstrap_servers: str = Field(
        "127.0.0.1:9092", validation_alias=_env("KAFKA_BOOTSTRAP_SERVERS")
    )
    database_url: SecretStr = Field(
        SecretStr("postgresql://kopilka@127.0.0.1:5433/kopilka"),
        validation_alias=_env("DATABASE_URL"),
    )

    # Redis shared by every ingress process (rate limits, webhook-id replay guard). Unset: each
    # process keeps its own in-memory state, and says so in its log at start.
    redis_url: SecretStr | None = Field(None, validation_alias=_env("REDIS_URL"))

    http_host: str = "127.0.0.1"
    http_port: int = 8080
    # The address shops use to reach the ingress; printed in webhook URLs.
    public_url: str | None = None

    # Partitions of every topic: the most worker processes that can share the work. Leave room
    # to grow; changing it on a running deployment means new topics and a replay (README).
    topic_partitions: int = 32
    topic_replication_factor: int = 1
    # Consumers fetch in Kafka's incremental fetch sessions (kopilka.core.fetch_sessions): a
    # fetch names only the partitions that moved. Off: every fetch names every partition.
    kafka_fetch_sessions: bool = True

    # Request limits. max_body_bytes is the default cap and the ceiling of every tenant's own cap.
    max_body_bytes: int = 4 * 1024 * 1024
    # The largest raw record (the body plus its envelope, JSON-escaped); the topic, the broker
    # and the producer are all configured to take it.
    max_record_bytes: int = 12 * 1024 * 1024
    # A connection that has not sent complete request headers this long after it opened (or after
    # its previous response) is closed; also the keep-alive idle limit.
    header_timeout_s: float = 10.0
    # The whole body must arrive within this long once the headers are in: 408 otherwise.
    body_timeout_s: float = 10.0

    # Edge defaults for tenants that set none: the original's 100 requests/min, burst 100.
    rate_limit_per_minute: int = 100
    rate_limit_burst: int | None = None  # None: the per-minute limit
    # Standard Webhooks: how far webhook-timestamp may be from now, both ways; webhook-id replays
    # are remembered for twice that (an older replay fails the timestamp check anyway).
    signature_tolerance_s: int = 300
    # Tilda gives up after 5 s: answer 503 well before that when Kafka does not ack.
    publish_timeout_s: float = 3.0
    retry_after_s: int = 5
    tenant_cache_ttl_s: float = 5.0

    worker_id: str = "kopilka"
    worker_session_timeout_s: float = 10.0
    sink_batch_size: int = 1000
    sink_batch_within_s: float = 0.1
    expiry_sweep_interval_s: float = 60.0
    # The normaliser takes up to this many raw records at once, whatever is waiting when it is
    # free (streams.ready_batches), and resolves the customers of consecutive purchases together.
    normalize_batch: int = 200
    # A refund is keyed by its order, its purchase by the customer (schemas.routing): a refund
    # that overtakes its purchase goes round webhooks.deferred (streams.deferral), tried again
    # every second for this long before it is refused as unknown_order.
    refund_order_wait_s: float = 60.0
    # The worker's table store: "rocksdb://" (on disk: a restart reads only what changed since)
    # or "memory://" (the whole changelog is read back at every start).
    worker_store: str = "rocksdb://"
    # RocksDB's block cache for those tables, one for every partition of a worker process
    # (streams.table_store); each partition written to also holds memtables of 4 MB (up to 3).
    worker_store_cache_mb: int = Field(64, ge=8)
    # Refunds are accepted this long after the purchase; then the order's state shrinks to a
    # marker (streams/settlement.py), checked for every this many seconds.
    order_refund_window_days: int = 90
    order_settle_interval_s: float = 3600.0
    # Where the worker keeps its tables on disk: one folder per worker process (two processes
    # cannot share one). Unset: `.data/worker/<worker_id>` under the working directory.
    worker_data_dir: Path | None = None
    # Operators may run the expiry sweep "as of" a later time only when this is on (tests).
    allow_future_sweeps: bool = False
    # `Prefer: wait=N` is honoured up to this many seconds.
    max_prefer_wait_s: float = 10.0

    # The live event stream (GET /api/v1/events/stream) sends a heartbeat comment this often, so
    # proxies keep it open and a dead client is noticed.
    event_stream_heartbeat_s: float = Field(15.0, gt=0)

    # Platform operators' bearer token for /api/admin/*; unset = the admin API answers 503.
    admin_token: SecretStr | None = None

    log_level: str = "INFO"
    log_format: str = "json"  # json | console
    # The event loop of the ingress and the worker (kopilka.core.event_loop).
    event_loop: EventLoop = "uvloop"

    # ---- outbound: signed webhooks to shops and Telegram notifications (`kopilka dispatch`)
    # Delay before each attempt, in seconds, comma-separated (Svix's: immediately, 5 s, 5 min,
    # 30 min, 2 h, 5 h, 10 h, 10 h); each delay after the first gets +-jitter (a fraction).
    webhook_retry_schedule_s: str = "0,5,300,1800,7200,18000,36000,36000"
    webhook_retry_jitter: float = 0.2
    webhook_timeout_s: float = 15.0
    # An endpoint failing without a single success for this long is disabled (default 5 days).
    webhook_disable_after_s: float = 5 * 24 * 3600.0
    # CIDRs deliveries may reach although private/loopback/link-local ("127.0.0.0/8,10.0.0.0/8")
    webhook_allowed_networks: str = ""
    webhook_endpoint_concurrency: int = 4  # requests in flight per endpoint
    webhook_max_in_flight: int = 256  # in flight per dispatch process, all endpoints together
    dispatch_poll_interval_s: float = 1.0  # fallback poll; new work wakes it at once (NOTIFY)
    telegram_bot_token: SecretStr | None = None
    # Bot API server, for a local Bot API server or a test double.
    telegram_api_url: str = "https://api.telegram.org"
    telegram_bot_rate: float = 30.0  # messages per second per bot
    telegram_chat_interval_s: float = 1.0  # at most one message per chat per this many seconds
    telegram_give_up_after_s: float = 3 * 24 * 3600.0  # keep retrying while Telegram is down

    # ---- outbound operations: topic durability, retention/pruning, fencing (issue 10)
    # min.insync.replicas of every topic Kopilka creates (and Faust's own); unset: 2 when the
    # replication factor is 3 or more, else 1. A value above the replication factor is refused.
    topic_min_insync_replicas: int | None = Field(None, ge=1)
    # Days each growing table keeps its finished rows (0 = keep forever). `kopilka prune` and
    # the dispatcher (every retention_interval_s) delete older ones in batches.
    retention_audit_days: int = Field(30, ge=0)  # webhook_audit, by received_at
    retention_deliveries_days: int = Field(30, ge=0)  # succeeded deliveries and their attempts
    retention_dead_deliveries_days: int = Field(90, ge=0)  # dead (redrivable) deliveries
    retention_telegram_days: int = Field(30, ge=0)  # sent / forbidden / failed messages
    retention_identity_conflicts_days: int = Field(180, ge=0)  # resolved conflicts only
    # order_claims say which customer an order belongs to (refunds find it there; a replayed
    # purchase under another customer is refused by it): kept forever unless set, and never
    # pruned before they are settled (order_refund_window_days) nor younger than the horizon.
    retention_order_claims_days: int = Field(0, ge=0)
    # Where `kopilka replay` keeps the progress of an interrupted replay (run the same command
    # again to go on); relative paths are under the working directory. Must be writable.
    replay_state_dir: Path = Path(".data/replay")
    # How far back anything may be replayed into the pipeline (Kafka retention of the topics,
    # dead-letter redrives). No outbox row younger than this is pruned: a replay would re-send.
    replay_horizon_days: int = Field(8, ge=0)
    retention_interval_s: float = 3600.0  # 0: the dispatcher does not prune
    retention_batch: int = Field(5000, ge=1)  # rows per delete (one short transaction each)
    # Telegram outbox claim: a message being sent is leased this long (longer than a send).
    telegram_lease_s: float = 60.0

    # ---- edge: degraded mode and throttled guessing (issue 10, ingress)
    # Postgres down: a shop seen within this long is still accepted from the tenant cache.
    tenant_stale_s: float = 24 * 3600.0
    # Unknown secrets / API keys are remembered (apart from real shops) this long, this many.
    tenant_negative_ttl_s: float = 2.0
    tenant_negative_maxsize: int = 10_000
    # A database query on the webhook path (tenant, referrer check) gives up after this long.
    edge_db_timeout_s: float = 1.5
    # Per client IP: unknown webhook secrets and wrong admin tokens, then 429 + Retry-After.
    unknown_secrets_per_minute: int = 30
    admin_failures_per_minute: int = 10

    @model_validator(mode="after")
    def _min_isr_fits(self) -> Settings:
        if self.topic_min_insync_replicas and (
            self.topic_min_insync_replicas > self.topic_replication_factor
        ):
            raise ValueError(
                f"KOPILKA_TOPIC_MIN_INSYNC_REPLICAS={self.topic_min_insync_replicas} exceeds"
                f" KOPILKA_TOPIC_REPLICATION_FACTOR={self.topic_replication_factor}:"
                " every write would be refused"
            )
        return self

    @property
    def min_insync_replicas(self) -> int:
        if self.topic_min_insync_replicas:
            return self.topic_min_insync_replicas
        return 2 if self.topic_replication_factor >= 3 else 1

    # ---- operations: Prometheus metrics (issue 11). The ingress serves /metrics on its own
    # HTTP port; the worker and the dispatcher have no HTTP server of their own, so each starts
    # one on this port (0 or unset: no metrics endpoint). Every process needs its own port.
    worker_metrics_port: int | None = Field(None, ge=0, le=65535)
    dispatch_metrics_port: int | None = Field(None, ge=0, le=65535)
    # `kopilka replay` serves its progress (kopilka_replay_*) on this port while it runs.
    replay_metrics_port: int | None = Field(None, ge=0, le=65535)
    metrics_host: str = "127.0.0.1"  # where those listen (0.0.0.0 in a container)
    # How often the worker samples consumer lag and table sizes, the dispatcher its outboxes.
    metrics_sample_interval_s: float = Field(5.0, gt=0)

    @property
    def webhook_retry_delays(self) -> list[float]:
        return [float(x) for x in self.webhook_retry_schedule_s.split(",") if x.strip()]

    @property
    def webhook_base_url(self) -> str:
        base = self.public_url or f"http://{self.http_host}:{self.http_port}"
        return base.rstrip("/") + "/api/webhook/"

    @property
    def bootstrap_list(self) -> list[str]:
        return [s.strip() for s in self.kafka_bootstrap_servers.split(",") if s.strip()]


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
