//! The SMTP sink (maildev): whether it received exactly one email per error event, and removing
//! this run's emails from it.

use std::{
    collections::{HashMap, HashSet},
    time::{Duration, Instant},
};

use anyhow::Context;
use serde_json::{Value, json};
use uuid::Uuid;

/// The error handler's Message-ID is `<event-id@eventstream>`; the SMTP baseline's use this domain.
pub const BASELINE_MAIL_DOMAIN: &str = "eventstream-bench";

/// What the SMTP sink received for this run's error events.
pub struct EmailCheck {
    expected: usize,
    received: usize,
    missing: usize,
    duplicated: usize,
}

impl EmailCheck {
    /// What went wrong, if anything did.
    pub fn problem(&self) -> Option<String> {
        (self.missing > 0 || self.duplicated > 0).then(|| {
            format!("maildev: {} error events without an email, {} with more than one", self.missing, self.duplicated)
        })
    }

    /// One line for the report.
    pub fn summary(&self) -> String {
        let verdict = if self.problem().is_none() { "exactly one per error event" } else { "CHECK FAILED" };
        format!(
            "{} emails for {} error events ({} missing, {} duplicated): {verdict}",
            self.received, self.expected, self.missing, self.duplicated
        )
    }
}

/// Counts the sink's emails per error event; waits a little for the last ones, which the sink
/// may still be storing when the handler has already recorded them sent.
pub async fn check_emails(maildev_url: &str, error_ids: &HashSet<Uuid>) -> anyhow::Result<EmailCheck> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut per_event: HashMap<Uuid, usize> = HashMap::new();
        for email in maildev_emails(maildev_url).await? {
            if let Sender::Pipeline(id) = email.sender
                && error_ids.contains(&id)
            {
                *per_event.entry(id).or_default() += 1;
            }
        }
        let check = EmailCheck {
            expected: error_ids.len(),
            received: per_event.values().sum(),
            missing: error_ids.len() - per_event.len(),
            duplicated: per_event.values().filter(|count| **count > 1).count(),
        };
        if check.missing == 0 || Instant::now() >= deadline {
            return Ok(check);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// One email in maildev and who sent it, by its Message-ID.
pub struct SinkEmail {
    pub id: String,
    pub sender: Sender,
}

/// Who sent an email, by its Message-ID.
pub enum Sender {
    /// The error handler, about this event.
    Pipeline(Uuid),
    /// The SMTP baseline of the run with this id.
    Baseline(String),
    Other,
}

/// Every email the sink holds.
pub async fn maildev_emails(maildev_url: &str) -> anyhow::Result<Vec<SinkEmail>> {
    let url = format!("{}/api/email", maildev_url.trim_end_matches('/'));
    let body = tokio::task::spawn_blocking(move || -> anyhow::Result<String> {
        Ok(ureq::get(&url).call().with_context(|| format!("GET {url}"))?.body_mut().read_to_string()?)
    })
    .await??;
    let emails: Vec<Value> = serde_json::from_str(&body).context("maildev's email list")?;
    Ok(emails
        .iter()
        .filter_map(|email| {
            let id = email["id"].as_str()?.to_string();
            // maildev 3.0 gives no top-level messageId: the header is the one place it is kept.
            let message_id = email["headers"]["message-id"].as_str().unwrap_or_default().trim_matches(['<', '>']);
            let (local, domain) = message_id.split_once('@').unwrap_or_default();
            let sender = match (domain, Uuid::parse_str(local)) {
                ("eventstream", Ok(event_id)) => Sender::Pipeline(event_id),
                (BASELINE_MAIL_DOMAIN, _) => Sender::Baseline(local.rsplit('.').next().unwrap_or_default().to_string()),
                _ => Sender::Other,
            };
            Some(SinkEmail { id, sender })
        })
        .collect())
}

/// Deletes the emails `ids` from the sink.
pub async fn delete_maildev_emails(maildev_url: &str, ids: Vec<String>) -> anyhow::Result<()> {
    if ids.is_empty() {
        return Ok(());
    }
    let url = format!("{}/api/email/delete", maildev_url.trim_end_matches('/'));
    let body = json!({ "ids": ids }).to_string();
    tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
        ureq::post(&url)
            .header("Content-Type", "application/json")
            .send(body)
            .with_context(|| format!("POST {url}"))?;
        Ok(())
    })
    .await?
}
