//! Delivery channels: a directory on disk, a signed webhook, and email over SMTP (`lettre`).
//!
//! Every channel is safe to repeat: a directory delivery replaces the run's folder atomically, a
//! webhook carries a stable `X-Tally-Delivery` id receivers can de-duplicate on, and an email a
//! stable `Message-ID`. A delivery interrupted by a crash is repeated on restart, so a receiver
//! sees it at least once and can tell a repeat.

use std::path::{Component, Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use hmac::{Hmac, Mac};
use lettre::message::header::ContentType;
use lettre::message::{Attachment, Mailbox, MultiPart, SinglePart};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use sha2::Sha256;
use tally_core::FieldError;
use tally_viz::ChartGenerator;

use crate::definition::{Channel, MAX_RECIPIENTS};
use crate::generator::RenderedReport;
use crate::render::{self, ChartEmbed};

/// The default and largest webhook timeout.
pub const WEBHOOK_TIMEOUT: Duration = Duration::from_secs(10);
pub const MAX_WEBHOOK_TIMEOUT: Duration = Duration::from_secs(60);

/// Where the server's deliveries may go.
#[derive(Debug, Clone)]
pub struct DeliveryConfig {
    /// Directory channels write below this directory, never outside it.
    pub report_dir: PathBuf,
    pub smtp: Option<SmtpConfig>,
}

#[derive(Debug, Clone)]
pub struct SmtpConfig {
    /// `smtp://user:password@host:587?tls=required` (STARTTLS), `smtps://host:465` (TLS), or
    /// `smtp://host:25` (plain, for a relay on the same machine).
    pub url: String,
    /// The sender, `Tally <reports@example.com>`.
    pub from: String,
}

/// A failed delivery: worth retrying or not.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeliveryError {
    #[error("{0}")]
    Retryable(String),
    #[error("{0}")]
    Permanent(String),
}

/// Checks a channel when a report is saved.
pub(crate) fn validate_channel(c: &Channel, at: &str) -> Result<(), FieldError> {
    match c {
        Channel::Directory { path } => {
            safe_relative(path)
                .map_err(|m| FieldError::new("invalid_path", format!("{at}.path"), m))?;
        }
        Channel::Webhook {
            url, timeout_secs, ..
        } => {
            let ok = url::Url::parse(url)
                .ok()
                .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some());
            if ok.is_none() {
                return Err(FieldError::new(
                    "invalid_url",
                    format!("{at}.url"),
                    "must be an http:// or https:// URL",
                ));
            }
            if timeout_secs.is_some_and(|t| t == 0 || t > MAX_WEBHOOK_TIMEOUT.as_secs()) {
                return Err(FieldError::new(
                    "invalid_timeout",
                    format!("{at}.timeout_secs"),
                    format!("between 1 and {} seconds", MAX_WEBHOOK_TIMEOUT.as_secs()),
                ));
            }
        }
        Channel::Email { to, subject } => {
            if to.is_empty() || to.len() > MAX_RECIPIENTS {
                return Err(FieldError::new(
                    "invalid_recipients",
                    format!("{at}.to"),
                    format!("between 1 and {MAX_RECIPIENTS} addresses"),
                ));
            }
            for (i, a) in to.iter().enumerate() {
                Mailbox::from_str(a).map_err(|e| {
                    FieldError::new(
                        "invalid_address",
                        format!("{at}.to[{i}]"),
                        format!("`{a}`: {e}"),
                    )
                })?;
            }
            if subject
                .as_ref()
                .is_some_and(|s| s.chars().count() > 200 || s.contains(['\r', '\n']))
            {
                return Err(FieldError::new(
                    "invalid_subject",
                    format!("{at}.subject"),
                    "at most 200 characters on one line",
                ));
            }
        }
    }
    Ok(())
}

/// A relative path of plain names (no `..`, no root), so it stays below the report directory.
fn safe_relative(path: &str) -> Result<PathBuf, String> {
    let p = Path::new(path);
    if path.is_empty() || path.len() > 200 {
        return Err("1 to 200 characters".into());
    }
    if !p.components().all(|c| matches!(c, Component::Normal(_))) {
        return Err(
            "must be a relative path of plain names (no `..`, no leading `/`); it is taken \
             below the server's report directory"
                .into(),
        );
    }
    Ok(p.to_path_buf())
}

/// Sends rendered reports.
#[derive(Debug, Clone)]
pub struct Deliverer {
    config: DeliveryConfig,
    http: reqwest::Client,
    charts: ChartGenerator,
}

impl Deliverer {
    pub fn new(config: DeliveryConfig, charts: ChartGenerator) -> Self {
        Self {
            config,
            http: reqwest::Client::new(),
            charts,
        }
    }

    pub fn config(&self) -> &DeliveryConfig {
        &self.config
    }

    /// Delivers `report` (run `run_id`) through channel number `index`. Returns where it went.
    pub async fn deliver(
        &self,
        channel: &Channel,
        report: &RenderedReport,
        run_id: &str,
        index: u32,
    ) -> Result<String, DeliveryError> {
        let delivery_id = format!("{run_id}.{index}");
        match channel {
            Channel::Directory { path } => self.to_directory(path, report, run_id).await,
            Channel::Webhook {
                url,
                secret,
                timeout_secs,
            } => {
                let timeout = timeout_secs.map_or(WEBHOOK_TIMEOUT, Duration::from_secs);
                self.to_webhook(url, secret.as_deref(), timeout, report, &delivery_id)
                    .await
            }
            Channel::Email { to, subject } => {
                self.to_email(to, subject.as_deref(), report, &delivery_id)
                    .await
            }
        }
    }

    /// Writes `report.html`, `report.json` and a CSV per section into
    /// `<report dir>/<path>/<report id>/<instant>/`, replacing an earlier copy of the same run.
    async fn to_directory(
        &self,
        path: &str,
        report: &RenderedReport,
        run_id: &str,
    ) -> Result<String, DeliveryError> {
        let rel = safe_relative(path).map_err(DeliveryError::Permanent)?;
        let at = tally_core::time::parse_rfc3339(&report.at).unwrap_or_default();
        let parent = self.config.report_dir.join(rel).join(&report.report_id);
        let target = parent.join(render::stamp(at));
        let (html, _) = render::to_html(report, &self.charts, ChartEmbed::InlineSvg)
            .map_err(|e| DeliveryError::Permanent(e.to_string()))?;
        let json = render::to_json(report).map_err(|e| DeliveryError::Permanent(e.to_string()))?;
        let csvs = render::csv_files(report);
        let tmp = parent.join(format!(".tmp-{run_id}"));
        let (t, tmp2) = (target.clone(), tmp.clone());
        tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            std::fs::create_dir_all(&tmp2)?;
            std::fs::write(tmp2.join("report.html"), html)?;
            std::fs::write(tmp2.join("report.json"), json)?;
            for f in csvs {
                std::fs::write(tmp2.join(f.name), f.content)?;
            }
            if t.exists() {
                std::fs::remove_dir_all(&t)?;
            }
            std::fs::rename(&tmp2, &t)?;
            // The rename is durable once the parent directory is synced.
            std::fs::File::open(t.parent().unwrap_or(Path::new(".")))?.sync_all()
        })
        .await
        .map_err(|e| DeliveryError::Retryable(format!("the write task failed: {e}")))?
        .map_err(|e| {
            let _ = std::fs::remove_dir_all(&tmp);
            DeliveryError::Retryable(format!("writing {}: {e}", target.display()))
        })?;
        Ok(target.display().to_string())
    }

    async fn to_webhook(
        &self,
        url: &str,
        secret: Option<&str>,
        timeout: Duration,
        report: &RenderedReport,
        delivery_id: &str,
    ) -> Result<String, DeliveryError> {
        let body = render::to_json(report).map_err(|e| DeliveryError::Permanent(e.to_string()))?;
        let mut request = self
            .http
            .post(url)
            .timeout(timeout)
            .header("content-type", "application/json")
            .header("user-agent", concat!("Tally/", env!("CARGO_PKG_VERSION")))
            .header("x-tally-delivery", delivery_id)
            .header("x-tally-report", &report.report_id);
        if let Some(secret) = secret {
            request = request.header("x-tally-signature", signature(secret, &body));
        }
        let response = request
            .body(body)
            .send()
            .await
            .map_err(|e| DeliveryError::Retryable(format!("POST {url}: {e}")))?;
        let status = response.status();
        if status.is_success() {
            return Ok(format!("{url} answered {status}"));
        }
        let message = format!("{url} answered {status}");
        // Timeouts, rate limits and server errors may pass; other client errors will not.
        if status.is_server_error() || matches!(status.as_u16(), 408 | 425 | 429) {
            Err(DeliveryError::Retryable(message))
        } else {
            Err(DeliveryError::Permanent(message))
        }
    }

    async fn to_email(
        &self,
        to: &[String],
        subject: Option<&str>,
        report: &RenderedReport,
        delivery_id: &str,
    ) -> Result<String, DeliveryError> {
        let Some(smtp) = &self.config.smtp else {
            return Err(DeliveryError::Permanent(
                "no SMTP relay is configured: start the server with --smtp-url and --smtp-from"
                    .into(),
            ));
        };
        let message = self.email(smtp, to, subject, report, delivery_id)?;
        let mailer = AsyncSmtpTransport::<Tokio1Executor>::from_url(&smtp.url)
            .map_err(|e| DeliveryError::Permanent(format!("--smtp-url: {e}")))?
            .timeout(Some(Duration::from_secs(30)))
            .build();
        match mailer.send(message).await {
            Ok(response) => Ok(format!(
                "{} recipient(s): {}",
                to.len(),
                response.message().collect::<Vec<_>>().join(" ")
            )),
            Err(e) if e.is_permanent() => Err(DeliveryError::Permanent(format!("SMTP: {e}"))),
            Err(e) => Err(DeliveryError::Retryable(format!("SMTP: {e}"))),
        }
    }

    /// The email: an HTML body with the charts as inline PNGs, a plain-text alternative, and
    /// the sections as CSV attachments.
    pub fn email(
        &self,
        smtp: &SmtpConfig,
        to: &[String],
        subject: Option<&str>,
        report: &RenderedReport,
        delivery_id: &str,
    ) -> Result<Message, DeliveryError> {
        let permanent = |e: &dyn std::fmt::Display| DeliveryError::Permanent(e.to_string());
        let (html, images) = render::to_html(report, &self.charts, ChartEmbed::ContentId)
            .map_err(|e| permanent(&e))?;
        let tz = report
            .time_range
            .timezone
            .parse()
            .unwrap_or(chrono_tz::Tz::UTC);
        let subject = subject.map_or_else(
            || {
                format!(
                    "{} · {}",
                    report.title,
                    render::describe_range(&report.time_range.from, &report.time_range.to, tz)
                )
            },
            str::to_owned,
        );
        let from: Mailbox = smtp
            .from
            .parse()
            .map_err(|e| DeliveryError::Permanent(format!("--smtp-from: {e}")))?;
        let domain = from.email.domain().to_owned();
        let mut builder = Message::builder()
            .from(from)
            .subject(subject)
            .message_id(Some(format!("<{delivery_id}@{domain}>")));
        for a in to {
            builder = builder.to(a.parse().map_err(|e| permanent(&e))?);
        }
        let mut related = MultiPart::related().singlepart(SinglePart::html(html));
        for image in images {
            related = related.singlepart(Attachment::new_inline(image.content_id).body(
                image.png,
                ContentType::parse("image/png").map_err(|e| permanent(&e))?,
            ));
        }
        let body = MultiPart::alternative()
            .singlepart(SinglePart::plain(render::to_text(report)))
            .multipart(related);
        let mut mixed = MultiPart::mixed().multipart(body);
        let csv = ContentType::parse("text/csv; charset=utf-8").map_err(|e| permanent(&e))?;
        for f in render::csv_files(report) {
            mixed = mixed.singlepart(Attachment::new(f.name).body(f.content, csv.clone()));
        }
        builder.multipart(mixed).map_err(|e| permanent(&e))
    }
}

/// `sha256=<hex>`: the HMAC-SHA256 of the body under the channel's secret, as GitHub signs.
pub fn signature(secret: &str, body: &[u8]) -> String {
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else {
        // HMAC takes keys of any length; this cannot happen.
        return String::new();
    };
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_match_a_known_vector() {
        // RFC 4231 test case 2.
        assert_eq!(
            signature("Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn directory_paths_stay_below_the_report_dir() {
        assert!(safe_relative("weekly/marketing").is_ok());
        for bad in ["", "../x", "/etc", "a/../../b", "./a"] {
            assert!(safe_relative(bad).is_err(), "{bad}");
        }
    }
}
