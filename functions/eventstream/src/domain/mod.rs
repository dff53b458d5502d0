//! The domain: what an event is, the states it moves through, and what makes one valid.

mod correlation;
mod event;
mod handling;
mod role;
mod validation;

pub use correlation::{CorrelationId, MAX_CORRELATION_ID_CHARS};
pub use event::{Event, EventInput, NewEvent, PipelineState, Status};
pub use handling::{Handler, NotificationState, UnknownHandler, UnknownNotificationState};
pub use role::{Role, UnknownRole};
pub use validation::{
    FieldError, MAX_ATTRIBUTES_BYTES, MAX_BATCH_EVENTS, MAX_DESCRIPTION_CHARS, MAX_SOURCE_CHARS, MAX_TITLE_CHARS,
    is_bidi_control, reject_nul, search_text, validate_batch,
};
