//! Processing: the `EventProcessor` validates, normalizes, enriches and anonymizes each event
//! (clock-skew correction, typed schemas, user agent, URL, referrer and UTM, sessions, IP, PII
//! scrubbing), and
//! the `BatchProcessor` runs the same processing over files for bulk imports and backfills.
//!
//! What leaves this crate is what may be stored: nothing here writes to disk, and no raw IP
//! address leaves it unless the operator chose to keep them.

pub mod batch;
pub mod enrich;
pub mod pii;
pub mod privacy;
mod processor;
pub mod sessions;

pub use batch::{BatchProcessor, ImportStats};
pub use pii::{PiiAction, PiiPattern, PiiPolicy, PiiScrubber};
pub use privacy::IpMode;
pub use processor::{EventProcessor, ProcessorConfig, ProjectSchemas};
