//! Collection: turning request bodies into [`AnalyticsEvent`](tally_core::AnalyticsEvent)s and
//! queueing processed events for durable storage.
//!
//! - [`body`] decodes a body (gzip or not, within the documented limits) into the events it holds,
//!   each parsed on its own so one bad event never spoils its neighbours.
//! - [`native`] is Tally's own event shape, the one `POST /v1/events` takes.
//! - [`segment`] is Segment's HTTP Tracking API (`/v1/track`, `/v1/batch`, ...), [`posthog`]
//!   PostHog's capture API (`/capture/`, `/batch/`, ...): each message becomes a [`Message`].
//! - [`EventManager`] is the bounded queue between the HTTP layer and storage: it groups
//!   concurrent submissions into one durable write (group commit) and refuses work it has no room
//!   for instead of growing memory.
//!
//! This crate never touches disk and never knows how events are enriched or stored.

pub mod body;
mod manager;
pub mod native;
pub mod posthog;
pub mod segment;
pub mod tracker;

pub use body::{BodyError, Limits};
pub use manager::{
    EventManager, EventManagerConfig, EventSink, ManagerStats, SinkError, SubmitError, Weighted,
};

/// One message of a client API (Segment's, PostHog's): the event to store and the identity
/// changes it asks for.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub event: tally_core::AnalyticsEvent,
    pub identity: Vec<tally_core::IdentityOp>,
}
