use lettre::{
    AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor,
    message::header::{ContentType, HeaderName, HeaderValue},
    transport::smtp::{self, authentication::Credentials},
};
use secrecy::ExposeSecret;

use super::{Email, Mailer};
use crate::config::{SmtpConfig, SmtpTls};

/// The header that carries the event's correlation id, as the API's responses do.
const CORRELATION_ID_HEADER: HeaderName = HeaderName::new_from_ascii_str("X-Correlation-Id");

/// Sends email through an SMTP relay; one connection per email, so a Lambda environment thawed
/// after minutes never reuses a connection the relay has since closed.
#[derive(Clone)]
pub struct SmtpMailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
}

/// Why an email could not be sent.
#[derive(Debug, thiserror::Error)]
pub enum SmtpError {
    #[error("could not set up TLS for the SMTP relay")]
    Tls(#[source] smtp::Error),
    #[error("the email could not be built")]
    Build(#[from] lettre::error::Error),
    #[error("the SMTP relay did not accept the email")]
    Send(#[from] smtp::Error),
}

impl SmtpMailer {
    /// Builds the transport without connecting: the first email opens the first connection.
    pub fn new(config: &SmtpConfig) -> Result<Self, SmtpError> {
        let builder = match config.tls {
            SmtpTls::None => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&config.host),
            SmtpTls::StartTls => {
                AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&config.host).map_err(SmtpError::Tls)?
            }
            SmtpTls::Tls => AsyncSmtpTransport::<Tokio1Executor>::relay(&config.host).map_err(SmtpError::Tls)?,
        };
        let mut builder = builder.port(config.port).timeout(Some(config.timeout));
        if let Some(login) = &config.login {
            builder = builder
                .credentials(Credentials::new(login.username.clone(), login.password.expose_secret().to_owned()));
        }
        Ok(Self { transport: builder.build() })
    }
}

impl Mailer for SmtpMailer {
    type Error = SmtpError;

    #[tracing::instrument(skip_all, fields(message_id = %email.message_id, recipients = email.to.len(), correlation_id = email.correlation_id.as_deref()))]
    async fn send(&self, email: &Email) -> Result<(), SmtpError> {
        let mut message = Message::builder()
            .message_id(Some(email.message_id.clone()))
            .from(email.from.clone())
            .subject(email.subject.clone())
            .header(ContentType::TEXT_PLAIN);
        for recipient in &email.to {
            message = message.to(recipient.clone());
        }
        if let Some(correlation_id) = &email.correlation_id {
            message = message.raw_header(HeaderValue::new(CORRELATION_ID_HEADER, correlation_id.clone()));
        }
        self.transport.send(message.body(email.text.clone())?).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    // A pooled transport starts its connection reaper on the Tokio runtime when built.
    #[tokio::test]
    async fn every_tls_mode_builds_a_transport_without_connecting() {
        for tls in [SmtpTls::None, SmtpTls::StartTls, SmtpTls::Tls] {
            let config = SmtpConfig {
                host: "smtp.invalid".into(),
                port: 2525,
                tls,
                login: None,
                timeout: Duration::from_secs(1),
            };
            SmtpMailer::new(&config).unwrap_or_else(|error| panic!("{tls:?}: {error}"));
        }
    }
}
