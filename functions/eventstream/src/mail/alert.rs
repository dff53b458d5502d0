use chrono::{DateTime, SecondsFormat, Utc};

use super::Email;
use crate::{
    config::AlertConfig,
    domain::{CorrelationId, Event, is_bidi_control},
};

/// What a hidden character is shown as: visible, and the same in every mail client.
const MARKER: char = '\u{FFFD}';

/// The email that tells people about an error event: everything needed to act on it, a link to
/// the event in the API and, in the footer and the `X-Correlation-Id` header, the id that follows
/// the event through every log line.
pub fn error_alert(event: &Event, alert: &AlertConfig) -> Email {
    let source = event.source.as_deref().map_or_else(|| "(none)".to_string(), shown);
    let subject = match &event.source {
        Some(source) => format!("[EventStream] {} from {}: {}", event.status, one_line(source), one_line(&event.title)),
        None => format!("[EventStream] {}: {}", event.status, one_line(&event.title)),
    };
    let occurred_at = event.occurred_at.map_or_else(|| "(not given)".to_string(), timestamp);
    let description = if event.description.is_empty() { "(none)".to_string() } else { shown(&event.description) };
    let text = format!(
        "EventStream received this {status} event.\n\
         \n\
         Title:        {title}\n\
         Status:       {status}\n\
         Source:       {source}\n\
         Occurred at:  {occurred_at}\n\
         Received at:  {received_at}\n\
         Event id:     {id}\n\
         \n\
         Description:\n\
         {description}\n\
         \n\
         The event in the API: {link}\n\
         \n\
         --\n\
         Correlation id: {correlation_id}\n",
        status = event.status,
        correlation_id = event.correlation_id.as_deref().unwrap_or("(none)"),
        title = shown(&event.title),
        received_at = timestamp(event.received_at),
        id = event.id,
        link = alert.event_link(event.id),
    );
    Email {
        message_id: format!("<{}@eventstream>", event.id),
        from: alert.from.clone(),
        to: alert.recipients.clone(),
        subject,
        text,
        // Stored ids are validated, so safe in a header; anything else is left out of it.
        correlation_id: event.correlation_id.clone().filter(|id| CorrelationId::is_valid(id)),
    }
}

fn timestamp(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Event text in the body: a direction control could make it read as something else, and other
/// control characters (but line breaks and tabs) could drive a terminal; each becomes [`MARKER`].
fn shown(text: &str) -> String {
    text.chars()
        .map(|c| if is_bidi_control(c) || (c.is_control() && !matches!(c, '\n' | '\r' | '\t')) { MARKER } else { c })
        .collect()
}

/// Event text in the subject: one line, direction controls as [`MARKER`], other control characters
/// dropped, whatever the event's text holds.
fn one_line(text: &str) -> String {
    let visible: String = text
        .chars()
        .filter(|&c| !c.is_control() || c.is_whitespace())
        .map(|c| if is_bidi_control(c) { MARKER } else { c })
        .collect();
    visible.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use uuid::Uuid;

    use super::*;
    use crate::domain::{PipelineState, Status};

    fn alert() -> AlertConfig {
        AlertConfig {
            from: "EventStream <alerts@example.com>".parse().unwrap(),
            recipients: vec!["ops@example.com".parse().unwrap(), "Dev <dev@example.com>".parse().unwrap()],
            api_base_url: "https://api.example.com/Prod".into(),
        }
    }

    fn event() -> Event {
        Event {
            id: Uuid::parse_str("0194a3b0-0000-7000-8000-000000000001").unwrap(),
            title: "Payment failed".into(),
            description: "Card declined for order 42".into(),
            status: Status::Error,
            source: Some("billing".into()),
            occurred_at: Some(Utc.with_ymd_and_hms(2026, 11, 29, 10, 0, 0).unwrap()),
            received_at: Utc.with_ymd_and_hms(2026, 11, 29, 10, 0, 2).unwrap(),
            attributes: serde_json::json!({}),
            pipeline_state: PipelineState::Dispatched,
            pipeline_updated_at: Utc::now(),
            posted_by: Uuid::nil(),
            correlation_id: Some("req-7f3a".into()),
        }
    }

    #[test]
    fn the_alert_names_every_fact_of_the_event_and_links_to_it() {
        let email = error_alert(&event(), &alert());

        assert_eq!(email.subject, "[EventStream] error from billing: Payment failed");
        assert_eq!(email.message_id, "<0194a3b0-0000-7000-8000-000000000001@eventstream>");
        assert_eq!(email.from.to_string(), "EventStream <alerts@example.com>");
        assert_eq!(email.to, alert().recipients);
        for expected in [
            "Title:        Payment failed\n",
            "Status:       error\n",
            "Source:       billing\n",
            "Occurred at:  2026-11-29T10:00:00.000Z\n",
            "Received at:  2026-11-29T10:00:02.000Z\n",
            "Event id:     0194a3b0-0000-7000-8000-000000000001\n",
            "Description:\nCard declined for order 42\n",
            "The event in the API: https://api.example.com/Prod/api/events/0194a3b0-0000-7000-8000-000000000001\n",
            "\n--\nCorrelation id: req-7f3a\n",
        ] {
            assert!(email.text.contains(expected), "{expected:?} missing from:\n{}", email.text);
        }
        assert_eq!(email.correlation_id.as_deref(), Some("req-7f3a"));
    }

    #[test]
    fn missing_facts_are_said_to_be_missing_and_the_subject_stays_on_one_line() {
        let mut event = event();
        event.source = None;
        event.occurred_at = None;
        event.description = String::new();
        event.title = "Disk\r\nfull \t on db-1".into();

        let email = error_alert(&event, &alert());

        assert_eq!(email.subject, "[EventStream] error: Disk full on db-1");
        assert!(email.text.contains("Source:       (none)\n"), "{}", email.text);
        assert!(email.text.contains("Occurred at:  (not given)\n"), "{}", email.text);
        assert!(email.text.contains("Description:\n(none)\n"), "{}", email.text);

        event.correlation_id = None;
        let email = error_alert(&event, &alert());
        assert!(email.text.ends_with("Correlation id: (none)\n"), "{}", email.text);
        assert_eq!(email.correlation_id, None);
    }

    #[test]
    fn direction_controls_are_shown_as_markers_and_cannot_disguise_the_subject() {
        let mut event = event();
        // Displayed, the override reverses the tail: "Payment failed for exe.txt" would read "...for txt.exe".
        event.title = "Payment\u{202E} failed for exe.txt\u{202C} \u{2067}x\u{2069}\u{200E}\u{200F}\u{61C}".into();
        event.description = "line 1\n\u{202D}line 2\u{202C}\tend".into();
        event.source = Some("bill\u{2066}ing".into());

        let email = error_alert(&event, &alert());

        assert_eq!(
            email.subject,
            "[EventStream] error from bill\u{FFFD}ing: Payment\u{FFFD} failed for exe.txt\u{FFFD} \u{FFFD}x\u{FFFD}\u{FFFD}\u{FFFD}\u{FFFD}"
        );
        assert!(
            email.text.contains(
                "Title:        Payment\u{FFFD} failed for exe.txt\u{FFFD} \u{FFFD}x\u{FFFD}\u{FFFD}\u{FFFD}\u{FFFD}\n"
            ),
            "{}",
            email.text
        );
        assert!(email.text.contains("Source:       bill\u{FFFD}ing\n"), "{}", email.text);
        assert!(email.text.contains("Description:\nline 1\n\u{FFFD}line 2\u{FFFD}\tend\n"), "{}", email.text);
        for (what, text) in [("subject", &email.subject), ("body", &email.text)] {
            assert!(!text.chars().any(is_bidi_control), "a direction control left in the {what}: {text:?}");
        }
    }

    #[test]
    fn other_control_characters_are_dropped_from_the_subject_and_marked_in_the_body() {
        let mut event = event();
        event.title = "Disk\u{1b}[2J full\u{7}\u{0}\u{7f}\u{9b}!".into();

        let email = error_alert(&event, &alert());

        assert_eq!(email.subject, "[EventStream] error from billing: Disk[2J full!");
        assert!(
            email.text.contains("Title:        Disk\u{FFFD}[2J full\u{FFFD}\u{FFFD}\u{FFFD}\u{FFFD}!\n"),
            "{}",
            email.text
        );
    }
}
