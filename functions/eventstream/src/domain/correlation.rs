//! The correlation id: one id that follows an event from the request that brought it to the email
//! about it, through every queue and log line.

use std::fmt;

use uuid::Uuid;

use super::FieldError;

/// The longest correlation id accepted.
pub const MAX_CORRELATION_ID_CHARS: usize = 128;

/// 1 to [`MAX_CORRELATION_ID_CHARS`] of `[A-Za-z0-9._:-]`: safe in a header, an AMQP property, an SQS
/// attribute, a log line and an email header, whoever sent it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct CorrelationId(String);

impl CorrelationId {
    /// Checks a client's id; the error names `field` (the header it came in).
    pub fn parse(field: &str, text: &str) -> Result<Self, FieldError> {
        if Self::is_valid(text) {
            Ok(Self(text.to_string()))
        } else {
            Err(FieldError::new(
                field,
                format!("must be 1 to {MAX_CORRELATION_ID_CHARS} characters of A-Z, a-z, 0-9, '.', '_', ':' and '-'"),
            ))
        }
    }

    /// A new id, for a request that brought none: a UUID v7, so ids sort by time.
    pub fn generate() -> Self {
        Self(Uuid::now_v7().to_string())
    }

    /// `text` when it is a valid id (an API Gateway request id, say), else a new one.
    pub fn or_generate(text: Option<&str>) -> Self {
        text.filter(|text| Self::is_valid(text)).map_or_else(Self::generate, |text| Self(text.to_string()))
    }

    pub fn is_valid(text: &str) -> bool {
        (1..=MAX_CORRELATION_ID_CHARS).contains(&text.len())
            && text.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for CorrelationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn ids_of_the_allowed_characters_and_length_are_accepted() {
        for valid in ["a", "req-1", "c6af9ac6-7b61-11e6-9a41-93e8deadbeef", "trace:1.2_3", &"x".repeat(128)] {
            assert_eq!(CorrelationId::parse("X-Correlation-Id", valid).unwrap().as_str(), valid);
        }
    }

    #[test]
    fn anything_else_is_refused_naming_the_field() {
        for invalid in ["", " ", "a b", "JlSTAi8xoAMEJbw=", "é", "a\nb", "<script>", &"x".repeat(129)] {
            let error = CorrelationId::parse("X-Correlation-Id", invalid).unwrap_err();
            assert_eq!(error.field, "X-Correlation-Id", "{invalid:?}");
        }
    }

    #[test]
    fn a_generated_id_is_a_valid_uuid_v7() {
        let id = CorrelationId::generate();
        assert!(CorrelationId::is_valid(id.as_str()));
        assert_eq!(Uuid::parse_str(id.as_str()).unwrap().get_version_num(), 7);
        assert_eq!(CorrelationId::or_generate(Some("abc")).as_str(), "abc");
        assert_ne!(CorrelationId::or_generate(Some("not valid")).as_str(), "not valid");
    }

    proptest! {
        #[test]
        fn validity_is_exactly_the_documented_alphabet_and_length(text in "[A-Za-z0-9._:=/ -]{0,140}") {
            let expected = (1..=128).contains(&text.len())
                && text.chars().all(|c| c.is_ascii_alphanumeric() || ".-_:".contains(c));
            prop_assert_eq!(CorrelationId::is_valid(&text), expected);
        }
    }
}
