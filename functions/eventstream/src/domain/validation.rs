//! The one validator every entry point (REST, GraphQL, batch) runs an event through.

use serde::Serialize;

use super::{EventInput, NewEvent, Status};

pub const MAX_TITLE_CHARS: usize = 200;
pub const MAX_DESCRIPTION_CHARS: usize = 10_000;
pub const MAX_SOURCE_CHARS: usize = 100;
/// Measured on the compact JSON encoding of the attributes object.
pub const MAX_ATTRIBUTES_BYTES: usize = 16 * 1024;
pub const MAX_BATCH_EVENTS: usize = 500;

/// One field that failed validation, named by its path in the request body (`events[3].title`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("{field}: {message}")]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self { field: field.into(), message: message.into() }
    }

    /// The same error, for a field nested under `prefix`.
    pub fn within(mut self, prefix: &str) -> Self {
        self.field = format!("{prefix}.{}", self.field);
        self
    }
}

impl EventInput {
    /// Checks every bound and turns the input into a [`NewEvent`], or names the first field at fault.
    pub fn validate(self) -> Result<NewEvent, FieldError> {
        let title = self.title.ok_or_else(|| FieldError::new("title", "is required"))?;
        check_text("title", &title, 1, MAX_TITLE_CHARS)?;
        if title.trim().is_empty() {
            return Err(FieldError::new("title", "must not be blank"));
        }

        let description = self.description.unwrap_or_default();
        check_text("description", &description, 0, MAX_DESCRIPTION_CHARS)?;

        let status = self.status.ok_or_else(|| FieldError::new("status", "is required"))?;
        let status: Status = status.parse().map_err(|error| FieldError::new("status", format!("{error}")))?;

        if let Some(source) = &self.source {
            check_text("source", source, 1, MAX_SOURCE_CHARS)?;
            // A source names a system; it is matched exactly and shown in alert subjects, where a
            // direction override would disguise which system failed.
            if source.chars().any(|c| c.is_control() || is_bidi_control(c)) {
                return Err(FieldError::new("source", "must not contain control or text-direction characters"));
            }
        }

        let attributes = match self.attributes {
            None | Some(serde_json::Value::Null) => serde_json::Value::Object(Default::default()),
            Some(value @ serde_json::Value::Object(_)) => value,
            Some(_) => return Err(FieldError::new("attributes", "must be a JSON object")),
        };
        let encoded = serde_json::to_string(&attributes).expect("a JSON value always serializes");
        if encoded.len() > MAX_ATTRIBUTES_BYTES {
            return Err(FieldError::new(
                "attributes",
                format!("must be at most {MAX_ATTRIBUTES_BYTES} bytes of JSON, got {}", encoded.len()),
            ));
        }
        reject_nul_in_json("attributes", &attributes)?;

        Ok(NewEvent { title, description, status, source: self.source, occurred_at: self.occurred_at, attributes })
    }
}

fn check_text(field: &str, value: &str, min_chars: usize, max_chars: usize) -> Result<(), FieldError> {
    // Counted in characters, as PostgreSQL's char_length counts them.
    let chars = value.chars().count();
    if chars < min_chars {
        return Err(FieldError::new(field, format!("must be at least {min_chars} characters long")));
    }
    if chars > max_chars {
        return Err(FieldError::new(field, format!("must be at most {max_chars} characters long, got {chars}")));
    }
    reject_nul(field, value)
}

/// Refuses text PostgreSQL cannot store: `text` and `jsonb` reject U+0000. Every text a request
/// carries towards the database, whichever API it came through, is checked with this.
pub fn reject_nul(field: &str, text: &str) -> Result<(), FieldError> {
    if text.contains('\0') {
        return Err(FieldError::new(field, "must not contain NUL characters"));
    }
    Ok(())
}

/// The shortest text search accepted: shorter ones cannot use the trigram index and would read every
/// event (1.2 s at one million).
pub const MIN_SEARCH_CHARS: usize = 3;
/// The longest text search accepted; no title is longer.
pub const MAX_SEARCH_CHARS: usize = 200;

/// A text search as a filter takes it: none when empty, else 3 to 200 characters without NUL.
pub fn search_text(field: &str, text: Option<String>) -> Result<Option<String>, FieldError> {
    let Some(text) = text.filter(|text| !text.is_empty()) else {
        return Ok(None);
    };
    reject_nul(field, &text)?;
    if !(MIN_SEARCH_CHARS..=MAX_SEARCH_CHARS).contains(&text.chars().count()) {
        return Err(FieldError::new(
            field,
            format!(
                "must be {MIN_SEARCH_CHARS} to {MAX_SEARCH_CHARS} characters (shorter searches cannot use the index)"
            ),
        ));
    }
    Ok(Some(text))
}

/// Checks every key and string of `value`, however deep.
fn reject_nul_in_json(field: &str, value: &serde_json::Value) -> Result<(), FieldError> {
    let mut pending = vec![value];
    while let Some(value) = pending.pop() {
        match value {
            serde_json::Value::String(text) => reject_nul(field, text)?,
            serde_json::Value::Array(items) => pending.extend(items),
            serde_json::Value::Object(entries) => {
                for (key, value) in entries {
                    reject_nul(field, key)?;
                    pending.push(value);
                }
            }
            serde_json::Value::Null | serde_json::Value::Bool(_) | serde_json::Value::Number(_) => {}
        }
    }
    Ok(())
}

/// Whether `c` changes the direction text is shown in: the embeddings and overrides
/// (U+202A–U+202E), the isolates (U+2066–U+2069) and the marks (U+200E, U+200F, U+061C). Shown
/// to a person they can make text read as something else.
pub fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{200E}' | '\u{200F}' | '\u{061C}')
}

/// Validates a whole batch, all or nothing: the first invalid event rejects the batch.
pub fn validate_batch(inputs: Vec<EventInput>) -> Result<Vec<NewEvent>, FieldError> {
    if inputs.is_empty() {
        return Err(FieldError::new("events", "must hold at least 1 event"));
    }
    if inputs.len() > MAX_BATCH_EVENTS {
        return Err(FieldError::new(
            "events",
            format!("must hold at most {MAX_BATCH_EVENTS} events, got {}", inputs.len()),
        ));
    }
    inputs
        .into_iter()
        .enumerate()
        .map(|(index, input)| input.validate().map_err(|error| error.within(&format!("events[{index}]"))))
        .collect()
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::json;

    use super::*;

    #[test]
    fn a_search_is_three_to_two_hundred_characters_or_none() {
        assert_eq!(search_text("q", None).unwrap(), None);
        assert_eq!(search_text("q", Some(String::new())).unwrap(), None);
        assert_eq!(search_text("q", Some("dél".into())).unwrap().as_deref(), Some("dél"));
        for refused in ["zq".to_string(), "a\0b".to_string(), "x".repeat(201)] {
            assert_eq!(search_text("q", Some(refused.clone())).unwrap_err().field, "q", "{refused:?}");
        }
    }

    fn input(title: &str, status: &str) -> EventInput {
        EventInput { title: Some(title.into()), status: Some(status.into()), ..Default::default() }
    }

    #[test]
    fn a_minimal_event_is_valid_with_defaults() {
        let event = input("disk full", "error").validate().unwrap();
        assert_eq!(event.status, Status::Error);
        assert_eq!(event.description, "");
        assert_eq!(event.attributes, json!({}));
        assert_eq!(event.source, None);
    }

    #[test]
    fn missing_title_and_status_are_named() {
        let error = EventInput { status: Some("info".into()), ..Default::default() }.validate().unwrap_err();
        assert_eq!(error, FieldError::new("title", "is required"));
        let error = EventInput { title: Some("t".into()), ..Default::default() }.validate().unwrap_err();
        assert_eq!(error, FieldError::new("status", "is required"));
    }

    #[test]
    fn an_unknown_status_is_rejected_with_the_allowed_values() {
        let error = input("t", "critical").validate().unwrap_err();
        assert_eq!(error, FieldError::new("status", "must be one of success, info, warning, error"));
        assert!(input("t", "ERROR").validate().is_err(), "statuses are case-sensitive");
    }

    #[test]
    fn bounds_are_counted_in_characters_not_bytes() {
        assert!(input(&"é".repeat(MAX_TITLE_CHARS), "info").validate().is_ok());
        let error = input(&"é".repeat(MAX_TITLE_CHARS + 1), "info").validate().unwrap_err();
        assert_eq!(error.field, "title");
        assert!(input("", "info").validate().is_err());
        assert_eq!(input("   ", "info").validate().unwrap_err().message, "must not be blank");
    }

    #[test]
    fn description_and_source_bounds_are_enforced() {
        let mut event = input("t", "info");
        event.description = Some("x".repeat(MAX_DESCRIPTION_CHARS));
        assert!(event.clone().validate().is_ok());
        event.description = Some("x".repeat(MAX_DESCRIPTION_CHARS + 1));
        assert_eq!(event.validate().unwrap_err().field, "description");

        let mut event = input("t", "info");
        event.source = Some(String::new());
        assert_eq!(event.clone().validate().unwrap_err().field, "source");
        event.source = Some("s".repeat(MAX_SOURCE_CHARS + 1));
        assert_eq!(event.validate().unwrap_err().field, "source");
    }

    #[test]
    fn attributes_must_be_a_small_object_without_nul() {
        let mut event = input("t", "info");
        event.attributes = Some(json!([1, 2]));
        assert_eq!(event.clone().validate().unwrap_err(), FieldError::new("attributes", "must be a JSON object"));
        event.attributes = Some(json!({ "blob": "x".repeat(MAX_ATTRIBUTES_BYTES) }));
        assert_eq!(event.clone().validate().unwrap_err().field, "attributes");
        event.attributes = Some(json!({ "k\u{0}": 1 }));
        assert_eq!(event.clone().validate().unwrap_err().message, "must not contain NUL characters");
        event.attributes = Some(json!({ "host": "web-1", "retries": 3 }));
        assert!(event.validate().is_ok());
    }

    #[test]
    fn nul_characters_in_text_are_rejected() {
        assert_eq!(input("a\0b", "info").validate().unwrap_err().message, "must not contain NUL characters");
    }

    #[test]
    fn nul_deep_in_attributes_is_rejected_but_an_escaped_backslash_u0000_is_text() {
        let mut event = input("t", "info");
        event.attributes = Some(json!({ "a": [{ "b": ["ok", "x\u{0}"] }] }));
        assert_eq!(
            event.clone().validate().unwrap_err(),
            FieldError::new("attributes", "must not contain NUL characters")
        );
        // Six characters, backslash first: its JSON holds `\\u0000`, which a search of the encoding mistook for NUL.
        event.attributes = Some(json!({ "path": "C:\\u0000" }));
        assert!(event.validate().is_ok());
    }

    #[test]
    fn a_source_with_a_control_or_direction_character_is_rejected_and_a_title_keeps_them() {
        for bad in ["web\u{202E}1", "web\u{2066}1", "web\u{200F}", "web\n1", "web\u{1b}[31m", "web\u{85}"] {
            let mut event = input("t", "error");
            event.source = Some(bad.into());
            assert_eq!(event.validate().unwrap_err().field, "source", "{bad:?}");
        }
        let event = input("paid \u{202E}gpj.exe", "error").validate().unwrap();
        assert_eq!(event.title, "paid \u{202E}gpj.exe", "titles are people's text: mail neutralises them instead");
    }

    #[test]
    fn a_batch_names_the_index_of_the_bad_event_and_its_size_bounds() {
        let error = validate_batch(vec![input("ok", "info"), input("bad", "nope")]).unwrap_err();
        assert_eq!(error.field, "events[1].status");
        assert_eq!(validate_batch(vec![]).unwrap_err().field, "events");
        let too_many = (0..=MAX_BATCH_EVENTS).map(|_| input("t", "info")).collect();
        assert_eq!(validate_batch(too_many).unwrap_err().field, "events");
        let full = (0..MAX_BATCH_EVENTS).map(|_| input("t", "info")).collect();
        assert_eq!(validate_batch(full).unwrap().len(), MAX_BATCH_EVENTS);
    }

    proptest! {
        #[test]
        fn validation_accepts_exactly_the_titles_postgres_accepts(title in "\\PC{0,250}") {
            let chars = title.chars().count();
            let expected_ok = (1..=MAX_TITLE_CHARS).contains(&chars) && !title.trim().is_empty();
            prop_assert_eq!(input(&title, "warning").validate().is_ok(), expected_ok);
        }

        #[test]
        fn only_the_four_statuses_parse(status in "[a-z]{0,10}") {
            let known = ["success", "info", "warning", "error"].contains(&status.as_str());
            prop_assert_eq!(input("t", &status).validate().is_ok(), known);
        }

        #[test]
        fn a_valid_event_round_trips_through_its_fields(
            title in "[^\\x00]{1,50}".prop_filter("not blank", |t| !t.trim().is_empty()),
            source in proptest::option::of("[a-z-]{1,100}"),
            key in "[a-z]{1,20}",
            value in any::<i64>(),
        ) {
            let event = EventInput {
                title: Some(title.clone()),
                status: Some("error".into()),
                source: source.clone(),
                attributes: Some(json!({ key.clone(): value })),
                ..Default::default()
            }
            .validate()
            .unwrap();
            prop_assert_eq!(event.title, title);
            prop_assert_eq!(event.source, source);
            prop_assert_eq!(&event.attributes[&key], &json!(value));
        }

        #[test]
        fn no_input_makes_validation_panic(
            title in proptest::option::of("(?s).{0,250}"),
            description in proptest::option::of("(?s).{0,50}"),
            status in proptest::option::of("(?s).{0,10}"),
            source in proptest::option::of("(?s).{0,120}"),
            attributes in proptest::option::of(any_json()),
        ) {
            let _ = EventInput { title, description, status, source, attributes, occurred_at: None }.validate();
        }

        #[test]
        fn text_with_nul_anywhere_is_rejected_naming_its_field(
            before in "(?s).{0,40}",
            after in "(?s).{0,40}",
            field in prop::sample::select(vec!["title", "description", "source", "attributes key", "attributes value"]),
        ) {
            let text = format!("{before}\0{after}");
            let mut event = input("t", "info");
            match field {
                "title" => event.title = Some(text),
                "description" => event.description = Some(text),
                "source" => event.source = Some(text),
                "attributes key" => event.attributes = Some(json!({ text: 1 })),
                _ => event.attributes = Some(json!({ "k": [text] })),
            }
            let error = event.validate().unwrap_err();
            prop_assert_eq!(error.field, field.split(' ').next().unwrap());
            prop_assert_eq!(error.message, "must not contain NUL characters");
        }

        #[test]
        fn reject_nul_refuses_exactly_the_text_holding_nul(text in "(?s).{0,50}") {
            prop_assert_eq!(reject_nul("q", &text).is_err(), text.contains('\0'));
        }

        #[test]
        fn a_source_hiding_a_control_or_direction_character_is_rejected(
            before in "[a-z0-9-]{0,40}",
            after in "[a-z0-9-]{0,40}",
            hidden in prop::sample::select(vec![
                '\u{202A}', '\u{202B}', '\u{202C}', '\u{202D}', '\u{202E}', '\u{2066}', '\u{2067}', '\u{2068}',
                '\u{2069}', '\u{200E}', '\u{200F}', '\u{061C}', '\u{1}', '\t', '\r', '\u{1b}', '\u{7f}', '\u{9b}',
            ]),
        ) {
            let mut event = input("t", "info");
            event.source = Some(format!("{before}{hidden}{after}"));
            prop_assert_eq!(event.validate().unwrap_err().field, "source");
        }
    }

    /// Any JSON value, a few levels deep, with strings that may hold any character.
    fn any_json() -> impl Strategy<Value = serde_json::Value> {
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::from),
            any::<f64>().prop_map(serde_json::Value::from),
            "(?s).{0,20}".prop_map(serde_json::Value::from),
        ];
        leaf.prop_recursive(4, 64, 8, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..8).prop_map(serde_json::Value::from),
                prop::collection::vec(("(?s).{0,20}", inner), 0..8)
                    .prop_map(|entries| serde_json::Value::Object(entries.into_iter().collect())),
            ]
        })
    }
}
