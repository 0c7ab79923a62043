//! Shared vocabulary of Tally: the event model as it arrives (`AnalyticsEvent`) and as it is stored
//! (`EventRecord`), project ids, time ranges and intervals, typed event schemas and the field-level
//! error every stage reports bad input with.
//!
//! This crate holds data types and pure functions only: it never does I/O, never depends on another
//! Tally crate, and never learns about HTTP, storage engines or SQL.

pub mod error;
pub mod event;
pub mod identity;
pub mod ids;
pub mod record;
pub mod schema;
pub mod time;

pub use error::FieldError;
pub use event::{AnalyticsEvent, Campaign, ConsentMode, EventContext, Page, without_consent};
pub use identity::IdentityOp;
pub use ids::ProjectId;
pub use record::EventRecord;
pub use schema::{AttributeType, EventSchema, SchemaField};
pub use time::{Interval, TimeRange};
