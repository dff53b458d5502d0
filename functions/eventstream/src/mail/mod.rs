//! Email: the [`Mailer`] port, its SMTP adapter, and the alert an error event becomes.

mod alert;
mod smtp;

pub use alert::error_alert;
pub use lettre::{Address, message::Mailbox};
pub use smtp::{SmtpError, SmtpMailer};

/// An email ready to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Email {
    /// The `Message-ID` header, angle brackets included. Derived from what the email is about, so
    /// that a duplicate sent in a crash window carries the same id and clients can fold it.
    pub message_id: String,
    pub from: Mailbox,
    pub to: Vec<Mailbox>,
    pub subject: String,
    /// The plain-text body.
    pub text: String,
    /// Sent as the `X-Correlation-Id` header: the id that followed the event from its request.
    pub correlation_id: Option<String>,
}

/// Sends email.
pub trait Mailer: Send + Sync {
    type Error: std::error::Error + Send + Sync + 'static;

    /// Returns once the relay accepted the email for every recipient.
    fn send(&self, email: &Email) -> impl Future<Output = Result<(), Self::Error>> + Send;
}
