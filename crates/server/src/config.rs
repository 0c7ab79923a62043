//! `tally serve`'s settings: every one a flag and a `TALLY_*` environment variable.

use std::path::PathBuf;
use std::time::Duration;

use tally_collect::{EventManagerConfig, Limits};
use tally_process::IpMode;
use tally_report::{DeliveryConfig, SchedulerConfig, SmtpConfig};
use tally_store::{EmbeddedStoreConfig, SqlLimits};

#[derive(Debug, Clone, clap::Args)]
pub struct ServeConfig {
    /// Address to listen on.
    #[arg(long, env = "TALLY_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: String,

    /// Where Tally keeps everything (metadata, WAL, Parquet files).
    #[arg(
        long,
        env = "TALLY_DATA_DIR",
        default_value = "./tally-data",
        global = true
    )]
    pub data_dir: PathBuf,

    /// What is kept of client IP addresses: drop, truncate (/24 and /48) or keep.
    #[arg(long, env = "TALLY_IP_MODE", default_value = "truncate", value_parser = clap::value_parser!(IpMode))]
    pub ip_mode: IpMode,

    /// A JSON file of PII rules (see the README's privacy section); without it the defaults:
    /// e-mail addresses, phone numbers, card numbers and IBANs in any text masked, secrets such
    /// as `password` dropped, `email` and `phone` properties hashed.
    #[arg(long, env = "TALLY_PII_POLICY")]
    pub pii_policy: Option<PathBuf>,

    /// Take the client's address from the last `X-Forwarded-For` entry, the one the proxy
    /// appended (only behind a reverse proxy that sets it; otherwise clients could choose).
    #[arg(long, env = "TALLY_TRUST_PROXY")]
    pub trust_proxy: bool,

    /// Events that may wait for the WAL at once; beyond it ingest answers 503.
    #[arg(long, env = "TALLY_QUEUE_CAPACITY", default_value_t = 200_000)]
    pub queue_capacity: usize,

    /// Largest request body, in bytes, as sent.
    #[arg(long, env = "TALLY_MAX_BODY_BYTES", default_value_t = 5 << 20)]
    pub max_body_bytes: usize,

    /// Most events in one request.
    #[arg(long, env = "TALLY_MAX_BATCH_EVENTS", default_value_t = 10_000)]
    pub max_batch_events: usize,

    /// Rows buffered in memory before they are written to Parquet.
    #[arg(long, env = "TALLY_FLUSH_ROWS", default_value_t = 1_000_000)]
    pub flush_rows: usize,

    /// Longest time rows stay only in the buffer (and WAL), e.g. `60s`.
    #[arg(long, env = "TALLY_FLUSH_INTERVAL", default_value = "60s", value_parser = humantime::parse_duration)]
    pub flush_interval: Duration,

    /// Rows the buffer may hold before ingest gets back-pressure.
    #[arg(long, env = "TALLY_MAX_BUFFER_ROWS", default_value_t = 4_000_000)]
    pub max_buffer_rows: usize,

    /// Requests per second each write key may make (bursts of twice as many); beyond it ingest
    /// answers 429 with `Retry-After`. 0: no limit.
    #[arg(long, env = "TALLY_INGEST_RATE_LIMIT", default_value_t = 5_000)]
    pub ingest_rate_limit: u32,

    /// Send the web UI's session cookie without `Secure`, for a server reached over plain HTTP
    /// on another host than localhost (browsers drop `Secure` cookies there). Put Tally behind
    /// TLS instead where you can.
    #[arg(long, env = "TALLY_INSECURE_COOKIES")]
    pub insecure_cookies: bool,

    /// At start, create this user (its password in the environment variable
    /// `TALLY_OWNER_PASSWORD`, never an argument, which `ps` would show) if it does not exist
    /// and make it owner of every project without an owner: the first owner of a new
    /// installation.
    #[arg(long, env = "TALLY_OWNER_EMAIL")]
    pub owner_email: Option<String>,

    /// Requests per second each read or admin key may make (bursts of twice as many); beyond
    /// it the API answers 429 with `Retry-After`. 0: no limit.
    #[arg(long, env = "TALLY_QUERY_RATE_LIMIT", default_value_t = 200)]
    pub query_rate_limit: u32,

    /// Keep rollups of the overview's figures for every project, so that it loads in
    /// milliseconds whatever the number of events (memory grows with the hours times the
    /// distinct pages, referrers, countries, browsers and event names in each; see
    /// docs/LIMITS.md); `false` computes the overview from the events.
    #[arg(long, env = "TALLY_OVERVIEW_ROLLUPS", default_value_t = true, action = clap::ArgAction::Set)]
    pub overview_rollups: bool,

    /// Longest a `POST /v1/sql` statement may run, e.g. `30s`.
    #[arg(long, env = "TALLY_SQL_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    pub sql_timeout: Duration,

    /// Most rows a `POST /v1/sql` statement returns.
    #[arg(long, env = "TALLY_SQL_MAX_ROWS", default_value_t = 10_000)]
    pub sql_max_rows: usize,

    /// Most memory a `POST /v1/sql` statement may use, in bytes.
    #[arg(long, env = "TALLY_SQL_MEMORY_BYTES", default_value_t = 512 << 20)]
    pub sql_memory_bytes: usize,

    /// How long `message_id`s are remembered for de-duplication, e.g. `24h` or `7d`. Memory grows with the events received within it.
    #[arg(long, env = "TALLY_DEDUP_WINDOW", default_value = "24h", value_parser = humantime::parse_duration)]
    pub dedup_window: Duration,

    /// Where `directory` report deliveries are written (their paths are taken below it);
    /// `<data-dir>/reports` if not given.
    #[arg(long, env = "TALLY_REPORT_DIR")]
    pub report_dir: Option<PathBuf>,

    /// The SMTP relay for email reports: `smtp://user:pass@host:587?tls=required` (STARTTLS),
    /// `smtps://user:pass@host:465` (TLS) or `smtp://host:25` (plain, local relays only).
    #[arg(long, env = "TALLY_SMTP_URL")]
    pub smtp_url: Option<String>,

    /// The sender of email reports.
    #[arg(
        long,
        env = "TALLY_SMTP_FROM",
        default_value = "Tally <tally@localhost>"
    )]
    pub smtp_from: String,

    /// The wait before a failed report delivery is tried again; it doubles with each attempt
    /// (at most an hour), six attempts in all.
    #[arg(long, env = "TALLY_REPORT_RETRY", default_value = "30s", value_parser = humantime::parse_duration)]
    pub report_retry: Duration,
}

impl ServeConfig {
    pub fn store_config(&self) -> EmbeddedStoreConfig {
        let mut c = EmbeddedStoreConfig::new(&self.data_dir);
        c.flush_rows = self.flush_rows;
        c.flush_interval = self.flush_interval;
        c.max_buffer_rows = self.max_buffer_rows;
        c.dedup_window = self.dedup_window;
        c
    }

    pub fn manager_config(&self) -> EventManagerConfig {
        EventManagerConfig {
            queue_capacity: self.queue_capacity.max(self.max_batch_events),
            ..EventManagerConfig::default()
        }
    }

    pub fn sql_limits(&self) -> SqlLimits {
        SqlLimits {
            timeout: self.sql_timeout,
            max_rows: self.sql_max_rows.max(1),
            memory_bytes: self.sql_memory_bytes,
        }
    }

    pub fn delivery_config(&self) -> DeliveryConfig {
        DeliveryConfig {
            report_dir: self
                .report_dir
                .clone()
                .unwrap_or_else(|| self.data_dir.join("reports")),
            smtp: self.smtp_url.as_ref().map(|url| SmtpConfig {
                url: url.clone(),
                from: self.smtp_from.clone(),
            }),
        }
    }

    pub fn scheduler_config(&self) -> SchedulerConfig {
        SchedulerConfig {
            retry_base: self.report_retry,
            ..SchedulerConfig::default()
        }
    }

    pub fn rate_limits(&self) -> crate::auth::RateLimits {
        let some = |r: u32| (r > 0).then_some(r);
        crate::auth::RateLimits {
            write: some(self.ingest_rate_limit),
            read: some(self.query_rate_limit),
        }
    }

    pub fn limits(&self) -> Limits {
        Limits {
            max_body_bytes: self.max_body_bytes,
            max_batch_events: self.max_batch_events,
            ..Limits::default()
        }
    }
}
