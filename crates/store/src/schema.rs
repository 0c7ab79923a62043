//! The columnar layout of stored events and the conversion of [`EventRecord`]s into Arrow batches.

use std::sync::{Arc, LazyLock};

use datafusion::arrow::array::{
    ArrayRef, FixedSizeBinaryBuilder, Float64Builder, Int64Builder, StringBuilder,
    TimestampMicrosecondBuilder,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::arrow::record_batch::RecordBatch;
use tally_core::EventRecord;

use crate::StoreError;

/// Column names, also the names a query description refers to.
pub mod col {
    pub const TIMESTAMP: &str = "timestamp";
    pub const RECEIVED_AT: &str = "received_at";
    pub const EVENT: &str = "event";
    pub const PERSON_ID: &str = "person_id";
    /// [`person_key`](super::person_key) of `person_id`: what distinct persons are counted,
    /// funnels grouped and retention joined on (an integer instead of a string).
    pub const PERSON_KEY: &str = "person_key";
    pub const SESSION_ID: &str = "session_id";
    pub const MESSAGE_ID: &str = "message_id";
    pub const PROPERTIES: &str = "properties";
    pub const CONTEXT_EXTRA: &str = "context_extra";
    pub const USER_ID: &str = "user_id";
    pub const ANONYMOUS_ID: &str = "anonymous_id";
    pub const IP: &str = "ip";
}

/// The string columns after the fixed ones, in schema order, with the accessor that fills them.
type StrAccessor = fn(&EventRecord) -> Option<&str>;
const STRING_COLUMNS: &[(&str, StrAccessor)] = &[
    ("category", |r| r.category.as_deref()),
    ("action", |r| r.action.as_deref()),
    ("label", |r| r.label.as_deref()),
    (col::USER_ID, |r| r.user_id.as_deref()),
    (col::ANONYMOUS_ID, |r| r.anonymous_id.as_deref()),
    (col::PROPERTIES, |r| r.properties.as_deref()),
    (col::IP, |r| r.ip.as_deref()),
    ("locale", |r| r.locale.as_deref()),
    ("url", |r| r.url.as_deref()),
    ("host", |r| r.host.as_deref()),
    ("path", |r| r.path.as_deref()),
    ("title", |r| r.title.as_deref()),
    ("referrer", |r| r.referrer.as_deref()),
    ("referrer_host", |r| r.referrer_host.as_deref()),
    ("referrer_channel", |r| r.referrer_channel.as_deref()),
    ("utm_source", |r| r.utm_source.as_deref()),
    ("utm_medium", |r| r.utm_medium.as_deref()),
    ("utm_campaign", |r| r.utm_campaign.as_deref()),
    ("utm_term", |r| r.utm_term.as_deref()),
    ("utm_content", |r| r.utm_content.as_deref()),
    ("browser", |r| r.browser.as_deref()),
    ("browser_version", |r| r.browser_version.as_deref()),
    ("os", |r| r.os.as_deref()),
    ("os_version", |r| r.os_version.as_deref()),
    ("device_type", |r| r.device_type.as_deref()),
    ("country", |r| r.country.as_deref()),
    ("region", |r| r.region.as_deref()),
    ("city", |r| r.city.as_deref()),
    ("library", |r| r.library.as_deref()),
    (col::CONTEXT_EXTRA, |r| r.context_extra.as_deref()),
];

fn ts_type() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

static SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    let mut fields = vec![
        Field::new(col::TIMESTAMP, ts_type(), false),
        Field::new(col::RECEIVED_AT, ts_type(), false),
        Field::new(col::EVENT, DataType::Utf8, false),
        Field::new(col::PERSON_ID, DataType::Utf8, false),
        Field::new(col::PERSON_KEY, DataType::Int64, false),
        Field::new(col::SESSION_ID, DataType::Int64, false),
        Field::new(col::MESSAGE_ID, DataType::FixedSizeBinary(16), true),
        Field::new("value", DataType::Float64, true),
    ];
    fields.extend(
        STRING_COLUMNS
            .iter()
            .map(|(name, _)| Field::new(*name, DataType::Utf8, true)),
    );
    Arc::new(Schema::new(fields))
});

/// The Arrow schema of the events table.
pub fn event_schema() -> SchemaRef {
    SCHEMA.clone()
}

/// The 64-bit key of a person id: SipHash-1-3 of its UTF-8 bytes with the key 0, a fixed
/// algorithm, so a key stored in a file years ago still matches one computed today. Distinct
/// persons counted by key are exact unless two of the ids compared collide: with `n` persons
/// the chance that any two do is below n² / 2^65 (3 in 10^9 at a million persons), the same
/// trade ClickHouse's `uniqExact` makes with its 128-bit hashes of strings.
pub fn person_key(person_id: &str) -> i64 {
    siphasher::sip::SipHasher13::new().hash(person_id.as_bytes()) as i64
}

/// `batch` in the current [`event_schema`]: a batch of an older layout (WAL entries and files
/// written before the `person_key` column) gets that column computed from `person_id`.
pub fn upgrade_batch(batch: RecordBatch) -> Result<RecordBatch, StoreError> {
    use datafusion::arrow::array::{AsArray, Int64Array};
    if batch.schema().column_with_name(col::PERSON_KEY).is_some() {
        return Ok(batch);
    }
    let persons = batch
        .column_by_name(col::PERSON_ID)
        .and_then(|c| c.as_string_opt::<i32>())
        .ok_or_else(|| StoreError::Internal("a batch without a person_id column".into()))?;
    let keys: ArrayRef = Arc::new(
        persons
            .iter()
            .map(|p| Some(person_key(p.unwrap_or_default())))
            .collect::<Int64Array>(),
    );
    let schema = event_schema();
    let mut columns = Vec::with_capacity(schema.fields().len());
    for field in schema.fields() {
        if field.name() == col::PERSON_KEY {
            columns.push(Arc::clone(&keys));
        } else {
            let c = batch.column_by_name(field.name()).ok_or_else(|| {
                StoreError::Internal(format!("a batch without a {} column", field.name()))
            })?;
            columns.push(Arc::clone(c));
        }
    }
    Ok(RecordBatch::try_new(schema, columns)?)
}

/// Is `name` a column of the events table?
pub fn is_column(name: &str) -> bool {
    SCHEMA.field_with_name(name).is_ok()
}

/// Is `name` a string column (as opposed to a time or number one)?
pub fn is_string_column(name: &str) -> bool {
    SCHEMA
        .field_with_name(name)
        .is_ok_and(|f| f.data_type() == &DataType::Utf8)
}

/// Builds one Arrow batch of `records`, in the order given.
pub fn records_to_batch(records: &[EventRecord]) -> Result<RecordBatch, StoreError> {
    let n = records.len();
    let mut ts = TimestampMicrosecondBuilder::with_capacity(n).with_timezone("UTC");
    let mut recv = TimestampMicrosecondBuilder::with_capacity(n).with_timezone("UTC");
    let mut event = StringBuilder::with_capacity(n, n * 8);
    let mut person = StringBuilder::with_capacity(n, n * 16);
    let mut person_keys = Int64Builder::with_capacity(n);
    let mut session = Int64Builder::with_capacity(n);
    let mut msg = FixedSizeBinaryBuilder::with_capacity(n, 16);
    let mut value = Float64Builder::with_capacity(n);
    for r in records {
        ts.append_value(r.timestamp);
        recv.append_value(r.received_at);
        event.append_value(&r.event);
        person.append_value(&r.person_id);
        person_keys.append_value(person_key(&r.person_id));
        session.append_value(r.session_id);
        match &r.message_id {
            Some(m) => msg.append_value(m)?,
            None => msg.append_null(),
        }
        value.append_option(r.value);
    }
    let mut columns: Vec<ArrayRef> = vec![
        Arc::new(ts.finish()),
        Arc::new(recv.finish()),
        Arc::new(event.finish()),
        Arc::new(person.finish()),
        Arc::new(person_keys.finish()),
        Arc::new(session.finish()),
        Arc::new(msg.finish()),
        Arc::new(value.finish()),
    ];
    for (_, get) in STRING_COLUMNS {
        let mut b = StringBuilder::with_capacity(n, 0);
        for r in records {
            b.append_option(get(r));
        }
        columns.push(Arc::new(b.finish()));
    }
    Ok(RecordBatch::try_new(event_schema(), columns)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn person_keys_never_change() {
        // Keys are stored in files: the function must give these values forever.
        assert_eq!(person_key("u1"), -4451083703263366595);
        assert_eq!(person_key(""), -3315872660926475476);
    }

    #[test]
    fn schema_and_batch_agree() {
        let r = EventRecord {
            timestamp: 1,
            received_at: 2,
            event: "pageview".into(),
            person_id: "u1".into(),
            browser: Some("Firefox".into()),
            message_id: Some([7; 16]),
            ..Default::default()
        };
        let b = records_to_batch(&[r.clone(), r]).unwrap();
        assert_eq!(b.num_rows(), 2);
        assert!(is_column("browser") && is_string_column("browser"));
        assert!(!is_string_column("timestamp"));
    }
}
