//! Compiles an [`AggregateQuery`] into a DataFusion plan over the buffer and the Parquet files,
//! runs it, and turns the result into a [`ResultTable`].

use std::sync::{Arc, LazyLock};

use chrono_tz::Tz;
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::common::ScalarValue;
use datafusion::datasource::MemTable;
use datafusion::functions::expr_fn::{contains, date_bin, date_trunc};
use datafusion::functions_aggregate::expr_fn::{avg, count, count_distinct, max, min, sum};
use datafusion::logical_expr::{Expr, Operator, binary_expr, cast, ident, lit};
use datafusion::prelude::{DataFrame, ParquetReadOptions, SessionConfig, SessionContext};
use datafusion_functions_json::udfs::{json_contains_udf, json_get_bool_udf, json_get_str_udf};
use serde_json::Value;
use tally_core::Interval;
use tally_core::time::format_rfc3339;

use super::json::{json_number_udf, json_text_udf};
use crate::plan::{
    AggregateQuery, FieldRef, Filter, FilterOp, GROUP_COLUMN_PREFIX, Measure, PERSON_COLUMN,
    ResultTable, RetentionCounts, RetentionQuery, RollupDef, StepEvent, StepEvents, StepQuery,
};
use crate::schema::{col, event_schema, is_column, is_string_column, person_key};
use crate::{Result, StoreError};

/// A DataFusion session set up for the events table.
pub(crate) fn new_context(target_partitions: usize) -> Result<SessionContext> {
    let mut ctx = SessionContext::new_with_config(session_config(target_partitions));
    datafusion_functions_json::register_all(&mut ctx)?;
    Ok(ctx)
}

/// The session settings every query of the events table runs with.
pub(crate) fn session_config(target_partitions: usize) -> SessionConfig {
    let mut config = SessionConfig::new()
        .with_target_partitions(target_partitions.max(1))
        .with_batch_size(8192)
        .with_information_schema(false);
    let opts = config.options_mut();
    opts.execution.parquet.pushdown_filters = true;
    opts.execution.parquet.reorder_filters = true;
    opts.execution.parquet.schema_force_view_types = false;
    opts.sql_parser.enable_ident_normalization = false;
    config
}

/// The events table as queries read it: [`event_schema`] with its string columns as Arrow
/// string views. The Parquet reader fills a view column from a dictionary page without copying
/// the strings and from a plain page without copying the bytes, and group-bys compare the views.
static QUERY_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    let fields: Vec<Field> = event_schema()
        .fields()
        .iter()
        .map(|f| match f.data_type() {
            DataType::Utf8 => f.as_ref().clone().with_data_type(DataType::Utf8View),
            _ => f.as_ref().clone(),
        })
        .collect();
    Arc::new(Schema::new(fields))
});

pub(crate) fn query_schema() -> SchemaRef {
    QUERY_SCHEMA.clone()
}

/// A buffered batch (in [`event_schema`]) in [`query_schema`].
fn to_query_batch(batch: &RecordBatch) -> Result<RecordBatch> {
    let schema = query_schema();
    let columns = batch
        .columns()
        .iter()
        .zip(schema.fields())
        .map(|(c, f)| Ok(datafusion::arrow::compute::cast(c, f.data_type())?))
        .collect::<Result<Vec<_>>>()?;
    Ok(RecordBatch::try_new(schema, columns)?)
}

/// The events of one project as a DataFrame: Parquet `files` (absolute paths) plus buffered
/// `batches`, in [`query_schema`].
pub(crate) async fn events_frame(
    ctx: &SessionContext,
    files: Vec<String>,
    batches: Vec<RecordBatch>,
) -> Result<DataFrame> {
    let schema = query_schema();
    let batches = batches
        .iter()
        .map(to_query_batch)
        .collect::<Result<Vec<_>>>()?;
    // Two partitions so both cores scan the buffer.
    let half = batches.len().div_ceil(2).max(1);
    let parts: Vec<Vec<RecordBatch>> = if batches.is_empty() {
        vec![vec![]]
    } else {
        batches.chunks(half).map(<[RecordBatch]>::to_vec).collect()
    };
    let mem = ctx.read_table(Arc::new(MemTable::try_new(schema.clone(), parts)?))?;
    if files.is_empty() {
        return Ok(mem);
    }
    let pq = ctx
        .read_parquet(files, ParquetReadOptions::default().schema(&schema))
        .await?;
    Ok(pq.union(mem)?)
}

/// Where a time range's events are: Parquet files that lie wholly `inside` it, files at its
/// `edge` (partly outside), and the buffered batches.
#[derive(Default)]
pub(crate) struct Sources {
    pub inside: Vec<InsideFile>,
    pub edge: Vec<String>,
    pub batches: Vec<RecordBatch>,
}

/// A file wholly inside a query's range: its absolute path, and from the catalog its rows and
/// time bounds.
pub(crate) struct InsideFile {
    pub path: String,
    pub rows: u64,
    pub min_ts: i64,
    pub max_ts: i64,
}

/// Exactly the events of `[from, to)` in `sources`. Files inside the range are read without a
/// time filter, so a query that needs no time column does not decode one.
pub(crate) async fn range_frame(
    ctx: &SessionContext,
    sources: Sources,
    from: i64,
    to: i64,
) -> Result<DataFrame> {
    let range = ident(col::TIMESTAMP)
        .gt_eq(ts_lit(from))
        .and(ident(col::TIMESTAMP).lt(ts_lit(to)));
    let mut frame = events_frame(ctx, sources.edge, sources.batches)
        .await?
        .filter(range)?;
    if !sources.inside.is_empty() {
        let inside = ctx
            .read_parquet(
                sources
                    .inside
                    .into_iter()
                    .map(|f| f.path)
                    .collect::<Vec<_>>(),
                ParquetReadOptions::default().schema(&query_schema()),
            )
            .await?;
        frame = inside.union(frame)?;
    }
    Ok(frame)
}

/// Events received before `us` (see `EmbeddedStore::as_of`).
pub(crate) fn received_before(us: i64) -> Expr {
    ident(col::RECEIVED_AT).lt(ts_lit(us))
}

/// The key column of a lookup batch (overrides, persons, groups).
const LOOKUP_KEY: &str = "__key";
/// The column of the events that a lookup is joined on.
const EVENT_KEY: &str = "__event_key";
/// The overrides batch's value: the person a merged id belongs to.
pub(crate) const MERGED_PERSON: &str = "__merged_person";
/// The overrides batch's [`person_key`] of [`MERGED_PERSON`].
const MERGED_KEY: &str = "__merged_key";

/// The person overrides (merged id, the person it belongs to) as a [`lookup_batch`] of
/// [`MERGED_PERSON`] with the [`MERGED_KEY`] beside it.
pub(crate) fn overrides_batch(rows: &[(String, String)]) -> Result<RecordBatch> {
    use datafusion::arrow::array::Int64Array;
    use datafusion::arrow::datatypes::Field;
    let batch = lookup_batch(MERGED_PERSON, rows)?;
    let keys: Int64Array = rows.iter().map(|(_, v)| Some(person_key(v))).collect();
    let mut fields: Vec<Field> = batch
        .schema()
        .fields()
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    fields.push(Field::new(MERGED_KEY, DataType::Int64, false));
    let mut columns = batch.columns().to_vec();
    columns.push(Arc::new(keys));
    Ok(RecordBatch::try_new(
        Arc::new(datafusion::arrow::datatypes::Schema::new(fields)),
        columns,
    )?)
}

/// A lookup as a batch of (`__key`, `value_column`), both text as string views, the type the
/// events' text columns are read as ([`query_schema`]): joins and `coalesce` with those
/// columns need no casts.
pub(crate) fn lookup_batch(value_column: &str, rows: &[(String, String)]) -> Result<RecordBatch> {
    use datafusion::arrow::array::StringViewArray;
    use datafusion::arrow::datatypes::{Field, Schema};
    let schema = Arc::new(Schema::new(vec![
        Field::new(LOOKUP_KEY, DataType::Utf8View, false),
        Field::new(value_column, DataType::Utf8View, false),
    ]));
    let keys: StringViewArray = rows.iter().map(|(k, _)| Some(k.as_str())).collect();
    let values: StringViewArray = rows.iter().map(|(_, v)| Some(v.as_str())).collect();
    Ok(RecordBatch::try_new(
        schema,
        vec![Arc::new(keys), Arc::new(values)],
    )?)
}

/// `frame` joined with a lookup `batch` on `key` (an expression over the events): a hash join
/// whose build side is the batch, keeping every event. `columns` maps the frame's own columns
/// (the join's helper columns left out) to what is selected; `extra` is appended.
fn join_lookup(
    ctx: &SessionContext,
    frame: DataFrame,
    batch: RecordBatch,
    key: Expr,
    columns: impl Fn(&str) -> Expr,
    extra: Option<&str>,
) -> Result<DataFrame> {
    use datafusion::common::JoinType;
    let mut select: Vec<Expr> = frame
        .schema()
        .fields()
        .iter()
        .map(|f| columns(f.name()))
        .collect();
    select.extend(extra.map(ident));
    Ok(ctx
        .read_batch(batch)?
        .join(
            frame.with_column(EVENT_KEY, key)?,
            JoinType::Right,
            &[LOOKUP_KEY],
            &[EVENT_KEY],
            None,
        )?
        .select(select)?)
}

/// `frame` with each `person_id` that was merged into another person replaced by that person's
/// id, and its `person_key` by that person's key (`overrides` is an [`overrides_batch`]).
pub(crate) fn with_overrides(
    ctx: &SessionContext,
    frame: DataFrame,
    overrides: RecordBatch,
) -> Result<DataFrame> {
    use datafusion::functions::expr_fn::coalesce;
    let columns = |name: &str| match name {
        col::PERSON_ID => {
            coalesce(vec![ident(MERGED_PERSON), ident(col::PERSON_ID)]).alias(col::PERSON_ID)
        }
        col::PERSON_KEY => {
            coalesce(vec![ident(MERGED_KEY), ident(col::PERSON_KEY)]).alias(col::PERSON_KEY)
        }
        _ => ident(name),
    };
    join_lookup(ctx, frame, overrides, ident(col::PERSON_ID), columns, None)
}

/// `frame` with a JSON `column` looked up by `key` in `batch` (null where it has no row, and
/// everywhere when there is no batch).
fn with_lookup_column(
    ctx: &SessionContext,
    frame: DataFrame,
    batch: Option<RecordBatch>,
    key: Expr,
    column: &str,
) -> Result<DataFrame> {
    match batch {
        None => Ok(frame.with_column(column, lit(ScalarValue::Utf8View(None)))?),
        Some(batch) => join_lookup(ctx, frame, batch, key, |n: &str| ident(n), Some(column)),
    }
}

/// `frame` with a [`PERSON_COLUMN`]: the properties of each event's person.
pub(crate) fn with_persons(
    ctx: &SessionContext,
    frame: DataFrame,
    persons: Option<RecordBatch>,
) -> Result<DataFrame> {
    with_lookup_column(ctx, frame, persons, ident(col::PERSON_ID), PERSON_COLUMN)
}

/// The column that holds the properties of groups of `group_type`.
pub(crate) fn group_column(group_type: &str) -> String {
    format!("{GROUP_COLUMN_PREFIX}{group_type}")
}

/// `frame` (which has the [`PERSON_COLUMN`]) with a [`group_column`]: the properties of each
/// event's group of that type, whose key is `properties.$groups.TYPE`, else the person's
/// `$groups.TYPE`.
pub(crate) fn with_groups(
    ctx: &SessionContext,
    frame: DataFrame,
    group_type: &str,
    groups: Option<RecordBatch>,
) -> Result<DataFrame> {
    let key =
        |json: &str| json_get_str_udf().call(vec![ident(json), lit("$groups"), lit(group_type)]);
    let key =
        datafusion::functions::expr_fn::coalesce(vec![key(col::PROPERTIES), key(PERSON_COLUMN)]);
    with_lookup_column(ctx, frame, groups, key, &group_column(group_type))
}

pub(super) fn ts_lit(us: i64) -> Expr {
    lit(ScalarValue::TimestampMicrosecond(
        Some(us),
        Some("UTC".into()),
    ))
}

pub(super) fn invalid(msg: impl Into<String>) -> StoreError {
    StoreError::InvalidQuery(msg.into())
}

/// How a field is read: its text, its number or its boolean.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum As {
    Text,
    Number,
    Bool,
}

pub(super) fn field_name(f: &FieldRef) -> String {
    match f {
        FieldRef::Column(c) => c.clone(),
        FieldRef::Json { column, path } => format!("{column}.{}", path.join(".")),
    }
}

pub(super) fn field_expr(f: &FieldRef, as_: As) -> Result<Expr> {
    match f {
        FieldRef::Column(c) => {
            if !is_column(c) {
                return Err(invalid(format!("unknown column `{c}`")));
            }
            let e = ident(c);
            let numeric = c == "value" || c == col::SESSION_ID;
            match as_ {
                As::Text if is_string_column(c) => Ok(e),
                As::Text => Ok(cast(e, DataType::Utf8)),
                As::Number if numeric => Ok(cast(e, DataType::Float64)),
                As::Number => Err(invalid(format!("`{c}` is not numeric"))),
                As::Bool => Err(invalid(format!("`{c}` is not a boolean"))),
            }
        }
        FieldRef::Json { column, path } => {
            let mut args = vec![ident(column)];
            args.extend(path.iter().map(|p| lit(p.as_str())));
            let udf = match as_ {
                // Text of any value: a string decoded, a number or an object as its JSON.
                As::Text => json_text_udf(),
                As::Number => json_number_udf(),
                As::Bool => json_get_bool_udf(),
            };
            Ok(udf.call(args))
        }
    }
}

fn is_time_column(f: &FieldRef) -> bool {
    matches!(f, FieldRef::Column(c) if c == col::TIMESTAMP || c == col::RECEIVED_AT)
}

/// The expression and literal to compare `f` with `v`.
fn comparable(f: &FieldRef, v: &Value) -> Result<(Expr, Expr)> {
    if is_time_column(f) {
        let FieldRef::Column(c) = f else {
            unreachable!("time columns are columns")
        };
        let t = v
            .as_str()
            .and_then(tally_core::time::parse_rfc3339)
            .ok_or_else(|| invalid(format!("`{c}` compares with an RFC 3339 timestamp")))?;
        return Ok((ident(c), ts_lit(t.timestamp_micros())));
    }
    match v {
        Value::String(s) => Ok((field_expr(f, As::Text)?, lit(s.as_str()))),
        Value::Number(n) => {
            let n = n.as_f64().unwrap_or(f64::NAN);
            if let FieldRef::Column(c) = f
                && is_string_column(c)
            {
                return Ok((ident(c), lit(format_number(n))));
            }
            Ok((field_expr(f, As::Number)?, lit(n)))
        }
        Value::Bool(b) => Ok((field_expr(f, As::Bool)?, lit(*b))),
        Value::Null | Value::Array(_) | Value::Object(_) => Err(invalid(format!(
            "`{}` can only be compared with a string, number or boolean",
            field_name(f)
        ))),
    }
}

fn format_number(n: f64) -> String {
    if n.fract() == 0.0 && n.abs() < 1e15 {
        format!("{}", n as i64)
    } else {
        n.to_string()
    }
}

pub(super) fn filter_expr(f: &Filter) -> Result<Expr> {
    Ok(match &f.op {
        FilterOp::Eq(Value::Null) => field_expr(&f.field, As::Text)?.is_null(),
        FilterOp::Eq(v) => {
            let (e, l) = comparable(&f.field, v)?;
            e.eq(l)
        }
        FilterOp::Neq(Value::Null) => field_expr(&f.field, As::Text)?.is_not_null(),
        FilterOp::Neq(v) => {
            let (e, l) = comparable(&f.field, v)?;
            binary_expr(e, Operator::IsDistinctFrom, l)
        }
        FilterOp::In(values) => {
            if values.is_empty() {
                return Ok(lit(false));
            }
            let mut parts = Vec::with_capacity(values.len());
            for v in values {
                let (e, l) = comparable(&f.field, v)?;
                parts.push(e.eq(l));
            }
            parts
                .into_iter()
                .reduce(Expr::or)
                .unwrap_or_else(|| lit(false))
        }
        FilterOp::NotIn(values) => {
            let e = field_expr(&f.field, As::Text)?;
            let listed: Vec<Expr> = values
                .iter()
                .filter_map(|v| match v {
                    Value::Null => None,
                    Value::String(s) => Some(lit(s.as_str())),
                    other => Some(lit(other.to_string())),
                })
                .collect();
            let outside = if listed.is_empty() {
                lit(true)
            } else {
                datafusion::functions::expr_fn::coalesce(vec![
                    e.clone().in_list(listed, true),
                    lit(true),
                ])
            };
            if values.iter().any(Value::is_null) {
                outside.and(e.is_not_null())
            } else {
                outside
            }
        }
        FilterOp::Contains(s) => contains(field_expr(&f.field, As::Text)?, lit(s.as_str())),
        FilterOp::Gt(v) => {
            let (e, l) = comparable(&f.field, v)?;
            e.gt(l)
        }
        FilterOp::Lt(v) => {
            let (e, l) = comparable(&f.field, v)?;
            e.lt(l)
        }
        FilterOp::Exists => match &f.field {
            FieldRef::Column(c) if is_column(c) => ident(c).is_not_null(),
            FieldRef::Column(c) => return Err(invalid(format!("unknown column `{c}`"))),
            FieldRef::Json { column, path } => {
                let mut args = vec![ident(column)];
                args.extend(path.iter().map(|p| lit(p.as_str())));
                json_contains_udf().call(args)
            }
        },
    })
}

fn measure_expr(m: &Measure) -> Result<Expr> {
    Ok(match m {
        Measure::Count => count(lit(1i64)),
        Measure::UniquePersons => count_distinct(ident(col::PERSON_KEY)),
        Measure::Sum(f) => sum(field_expr(f, As::Number)?),
        Measure::Avg(f) => avg(field_expr(f, As::Number)?),
        Measure::Min(f) => min(field_expr(f, As::Number)?),
        Measure::Max(f) => max(field_expr(f, As::Number)?),
        Measure::Percentile(f, p) => {
            if !(0.0..=1.0).contains(p) {
                return Err(invalid("a percentile must be between 0 and 1"));
            }
            super::percentile::exact_percentile(*p).call(vec![field_expr(f, As::Number)?])
        }
    })
}

/// The start of the bucket of the timestamp `ts`, computed on the local calendar of `tz`.
///
/// In UTC, buckets of fixed length (minute to week) are integer arithmetic on the timestamp
/// (`date_bin`, weeks from a Monday); elsewhere `date_trunc` converts every row to local time,
/// which is what DST needs but costs far more per row.
pub(super) fn bucket_expr(ts: Expr, interval: Interval, tz: Tz) -> Expr {
    let stride_us = match interval {
        Interval::Minute => Some(60_000_000i64),
        Interval::Hour => Some(3_600_000_000),
        Interval::Day => Some(86_400_000_000),
        Interval::Week => Some(7 * 86_400_000_000),
        Interval::Month => None,
    };
    if let (Some(stride), true) = (stride_us, is_utc(tz)) {
        // 1970-01-05 was a Monday.
        let origin = if interval == Interval::Week {
            4 * 86_400_000_000
        } else {
            0
        };
        let stride = ScalarValue::new_interval_mdn(0, 0, stride * 1_000);
        return date_bin(lit(stride), ts, ts_lit(origin));
    }
    let local = cast(
        ts,
        DataType::Timestamp(TimeUnit::Microsecond, Some(tz.name().into())),
    );
    date_trunc(lit(interval.as_str()), local)
}

/// Is `tz` UTC under one of its names?
fn is_utc(tz: Tz) -> bool {
    matches!(
        tz,
        Tz::UTC | Tz::Etc__UTC | Tz::Etc__GMT | Tz::GMT | Tz::Etc__Universal | Tz::Etc__Zulu
    )
}

/// Runs queries that aggregate the same rows into the same groups
/// ([`AggregateQuery::same_groups`]) as one aggregation with a measure per query, so the events
/// are read, filtered and grouped once (and a field that several measures read, such as a JSON
/// property, is extracted once). Answers in the order of `qs`.
pub(crate) async fn aggregate_many(
    frame: DataFrame,
    qs: &[AggregateQuery],
) -> Result<Vec<ResultTable>> {
    let Some(q) = qs.first() else {
        return Ok(Vec::new());
    };
    if qs.iter().any(|o| !q.same_groups(o)) {
        return Err(StoreError::Internal(
            "queries aggregated together must share filters, buckets and groups".into(),
        ));
    }
    let mut pred = lit(true);
    for f in &q.filters {
        pred = pred.and(filter_expr(f)?);
    }
    let mut groups = Vec::new();
    if let Some(iv) = q.bucket {
        groups.push(bucket_expr(ident(col::TIMESTAMP), iv, q.timezone).alias("bucket"));
    }
    for (i, g) in q.group_by.iter().enumerate() {
        groups.push(field_expr(g, As::Text)?.alias(format!("g{i}")));
    }
    let n_groups = groups.len();
    let measures = qs
        .iter()
        .enumerate()
        .map(|(i, q)| Ok(measure_expr(&q.measure)?.alias(format!("value{i}"))))
        .collect::<Result<Vec<_>>>()?;
    let df = frame.filter(pred)?.aggregate(groups, measures)?;
    let rows = json_rows(df).await?;
    let mut tables: Vec<ResultTable> = qs
        .iter()
        .map(|q| ResultTable {
            columns: result_columns(q),
            rows: Vec::with_capacity(rows.len()),
        })
        .collect();
    for mut row in rows {
        let values = row.split_off(n_groups);
        for (table, value) in tables.iter_mut().zip(values) {
            let mut r = Vec::with_capacity(n_groups + 1);
            r.extend_from_slice(&row);
            r.push(value);
            table.rows.push(r);
        }
    }
    for (table, q) in tables.iter_mut().zip(qs) {
        order_and_limit(&mut table.rows, q.bucket.is_some(), n_groups, q.limit);
    }
    Ok(tables)
}

/// Runs `df` and returns its rows as JSON values.
pub(super) async fn json_rows(df: DataFrame) -> Result<Vec<Vec<Value>>> {
    let mut out = Vec::new();
    for b in df.collect().await? {
        for r in 0..b.num_rows() {
            let mut row = Vec::with_capacity(b.num_columns());
            for c in 0..b.num_columns() {
                row.push(to_json(&ScalarValue::try_from_array(b.column(c), r)?));
            }
            out.push(row);
        }
    }
    Ok(out)
}

/// The column names of `q`'s result: `bucket` (when bucketed), the group fields, `value`.
pub(crate) fn result_columns(q: &AggregateQuery) -> Vec<String> {
    let mut columns = Vec::with_capacity(q.group_by.len() + 2);
    if q.bucket.is_some() {
        columns.push("bucket".to_owned());
    }
    columns.extend(q.group_by.iter().map(field_name));
    columns.push("value".to_owned());
    columns
}

/// Sorts result rows (bucket, then value descending, then groups) and keeps at most `limit`
/// groups per bucket. `n_groups` counts the bucket column too.
pub(crate) fn order_and_limit(
    rows: &mut Vec<Vec<Value>>,
    has_bucket: bool,
    n_groups: usize,
    limit: Option<usize>,
) {
    rows.sort_by(|a, b| compare_rows(a, b, has_bucket, n_groups));
    if let Some(limit) = limit {
        let mut kept = Vec::with_capacity(rows.len().min(limit));
        let mut in_bucket = 0;
        for (i, row) in rows.iter().enumerate() {
            if i > 0 && has_bucket && rows[i - 1][0] != row[0] {
                in_bucket = 0;
            }
            if in_bucket < limit {
                kept.push(row.clone());
            }
            in_bucket += 1;
        }
        *rows = kept;
    }
}

/// One row of a rollup's partial aggregation: an hour (UTC, µs), the group values, and the
/// partial state of the events in it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct PartialRow {
    pub(crate) hour: i64,
    pub(crate) groups: Vec<Option<String>>,
    /// Set when the rollup counts distinct persons: the rows are then per person.
    pub(crate) person: Option<String>,
    pub(crate) count: u64,
    /// Sum, count, min and max of the measure's numeric field (where it has a value).
    pub(crate) sum: f64,
    pub(crate) n: u64,
    pub(crate) min: Option<f64>,
    pub(crate) max: Option<f64>,
}

/// Aggregates `frame` per UTC hour and group (and person, for distinct counts) into the partial
/// states a rollup keeps. The filters compile exactly as for [`aggregate`], so a rollup and a
/// query of the raw events select the same events.
pub(crate) async fn partial_rows(frame: DataFrame, def: &RollupDef) -> Result<Vec<PartialRow>> {
    let mut pred = lit(true);
    for f in &def.filters {
        pred = pred.and(filter_expr(f)?);
    }
    let mut groups = vec![date_trunc(lit("hour"), ident(col::TIMESTAMP)).alias("hour")];
    for (i, g) in def.group_by.iter().enumerate() {
        groups.push(field_expr(g, As::Text)?.alias(format!("g{i}")));
    }
    let per_person = matches!(def.measure, Measure::UniquePersons);
    if per_person {
        groups.push(ident(col::PERSON_ID).alias("person"));
    }
    let field = match &def.measure {
        Measure::Sum(f) | Measure::Avg(f) | Measure::Min(f) | Measure::Max(f) => {
            Some(field_expr(f, As::Number)?)
        }
        Measure::Percentile(..) => return Err(invalid("a rollup cannot hold a percentile")),
        Measure::Count | Measure::UniquePersons => None,
    };
    let x = field.unwrap_or_else(|| lit(ScalarValue::Float64(None)));
    let n_keys = groups.len();
    let df = frame.filter(pred)?.aggregate(
        groups,
        vec![
            count(lit(1i64)).alias("c"),
            sum(x.clone()).alias("s"),
            count(x.clone()).alias("n"),
            min(x.clone()).alias("lo"),
            max(x).alias("hi"),
        ],
    )?;
    let mut out = Vec::new();
    for b in df.collect().await? {
        use datafusion::arrow::array::{Array, AsArray};
        use datafusion::arrow::datatypes::{Float64Type, Int64Type, TimestampMicrosecondType};
        let hour = cast_to(
            b.column(0),
            DataType::Timestamp(TimeUnit::Microsecond, None),
        )?;
        let hour = hour.as_primitive::<TimestampMicrosecondType>();
        let texts: Vec<_> = (1..n_keys)
            .map(|i| cast_to(b.column(i), DataType::Utf8))
            .collect::<Result<_>>()?;
        let num = |i: usize| cast_to(b.column(n_keys + i), DataType::Float64);
        let int = |i: usize| cast_to(b.column(n_keys + i), DataType::Int64);
        let (c, s, n, lo, hi) = (int(0)?, num(1)?, int(2)?, num(3)?, num(4)?);
        let (c, n) = (c.as_primitive::<Int64Type>(), n.as_primitive::<Int64Type>());
        let (s, lo, hi) = (
            s.as_primitive::<Float64Type>(),
            lo.as_primitive::<Float64Type>(),
            hi.as_primitive::<Float64Type>(),
        );
        for r in 0..b.num_rows() {
            let text = |a: &datafusion::arrow::array::ArrayRef| {
                let a = a.as_string::<i32>();
                (!a.is_null(r)).then(|| a.value(r).to_owned())
            };
            let mut groups: Vec<Option<String>> = texts.iter().map(text).collect();
            let person = if per_person {
                groups.pop().flatten()
            } else {
                None
            };
            out.push(PartialRow {
                hour: hour.value(r),
                groups,
                person,
                count: c.value(r) as u64,
                sum: if s.is_null(r) { 0.0 } else { s.value(r) },
                n: n.value(r) as u64,
                min: (!lo.is_null(r)).then(|| lo.value(r)),
                max: (!hi.is_null(r)).then(|| hi.value(r)),
            });
        }
    }
    Ok(out)
}

fn cast_to(
    a: &datafusion::arrow::array::ArrayRef,
    t: DataType,
) -> Result<datafusion::arrow::array::ArrayRef> {
    Ok(datafusion::arrow::compute::cast(a, &t)?)
}

/// Fetches the events that match any step, with a bit mask of the steps each one matches.
/// `frame` holds exactly the project's events of `[q.from, q.to)`.
pub(crate) async fn step_events(frame: DataFrame, q: &StepQuery) -> Result<StepEvents> {
    if q.steps.is_empty() || q.steps.len() > 63 {
        return Err(invalid("a funnel has 1 to 63 steps"));
    }
    // A NULL comparison (a missing property) means "does not match", both to the filter and to
    // CASE. The filter stays a plain disjunction of the steps' filters, which the Parquet
    // reader prunes pages with (the files are sorted by event name).
    let mut any = lit(false);
    let mut mask = lit(0i64);
    for (i, step) in q.steps.iter().enumerate() {
        let mut pred = lit(true);
        for f in step {
            pred = pred.and(filter_expr(f)?);
        }
        any = any.or(pred.clone());
        mask = mask + datafusion::logical_expr::when(pred, lit(1i64 << i)).otherwise(lit(0i64))?;
    }
    let mut select = vec![
        ident(col::PERSON_KEY).alias("person"),
        cast(ident(col::TIMESTAMP), DataType::Int64).alias("ts"),
        mask.alias("steps"),
    ];
    if let Some(f) = &q.breakdown {
        select.push(cast(field_expr(f, As::Text)?, DataType::Utf8).alias("breakdown"));
    }
    let df = frame.filter(any)?.select(select)?;
    // Persons become numbers and the events are grouped here rather than by the engine: sorting
    // millions of (person, time) rows costs far more than numbering each person once.
    let started = std::time::Instant::now();
    let batches = df.collect().await?;
    let scanned = started.elapsed();
    let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
    let with_breakdown = q.breakdown.is_some();
    let events = tokio::task::spawn_blocking(move || group_step_events(&batches, with_breakdown))
        .await
        .map_err(|e| StoreError::Internal(format!("funnel task failed: {e}")))??;
    tracing::debug!(
        rows,
        kept = events.events.len(),
        scan_ms = scanned.as_secs_f64() * 1e3,
        group_ms = (started.elapsed() - scanned).as_secs_f64() * 1e3,
        "funnel step events"
    );
    Ok(events)
}

/// The rows of `batches` (person key, ts, steps[, breakdown]) of the persons with a first-step
/// event, as [`StepEvent`]s grouped by person and ordered by time within each person. The
/// persons are split into two shards by the top bit of their key (a hash already) that two
/// threads number (a hash map per shard), group (a counting sort on the numbers, linear) and
/// order (each person's events sorted by time, stably) on their own.
fn group_step_events(batches: &[RecordBatch], with_breakdown: bool) -> Result<StepEvents> {
    use datafusion::arrow::array::AsArray;
    use datafusion::arrow::datatypes::Int64Type;

    let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
    if u32::try_from(rows).is_err() {
        return Err(invalid("more than 4 billion events in one funnel"));
    }
    let mut keys = Vec::with_capacity(rows);
    let mut times = Vec::with_capacity(rows);
    let mut masks = Vec::with_capacity(rows);
    // The breakdown value of each row, as its index among the distinct values.
    let mut row_breakdowns: Vec<u32> = Vec::with_capacity(if with_breakdown { rows } else { 0 });
    let mut values: datafusion::common::HashMap<Option<&str>, u32> = Default::default();
    for b in batches {
        keys.extend_from_slice(b.column(0).as_primitive::<Int64Type>().values());
        times.extend_from_slice(b.column(1).as_primitive::<Int64Type>().values());
        let steps = b.column(2).as_primitive::<Int64Type>().values();
        masks.extend(steps.iter().map(|&m| m as u64));
        if with_breakdown {
            for v in b.column(3).as_string::<i32>().iter() {
                let next = values.len() as u32;
                row_breakdowns.push(*values.entry(v).or_insert(next));
            }
        }
    }
    let mut breakdowns = vec![None; values.len().max(1)];
    for (v, i) in values {
        breakdowns[i as usize] = v.map(str::to_owned);
    }
    let shard = |k: u64| {
        let (keys, times, masks, row_breakdowns) = (&keys, &times, &masks, &row_breakdowns);
        move || {
            // Only persons with a first-step event can enter the funnel: they are numbered
            // first (a few of the rows), and the others' events are dropped.
            let mut ids: datafusion::common::HashMap<i64, u32> = Default::default();
            for (&p, &m) in keys.iter().zip(masks.iter()) {
                if m & 1 == 1 && (p as u64) >> 63 == k {
                    let next = ids.len() as u32;
                    ids.entry(p).or_insert(next);
                }
            }
            // (row, person number in this shard), in row order.
            let mut mine: Vec<(u32, u32)> = Vec::new();
            // The files are sorted by (event, person): a person's events of one name are
            // adjacent, so the last person is checked before the map.
            let mut last: Option<(i64, Option<u32>)> = None;
            for (row, &p) in keys.iter().enumerate() {
                let id = match last {
                    Some((l, id)) if l == p => id,
                    _ if (p as u64) >> 63 != k => None,
                    _ => ids.get(&p).copied(),
                };
                last = Some((p, id));
                if let Some(id) = id {
                    mine.push((row as u32, id));
                }
            }
            let mut starts = vec![0usize; ids.len() + 1];
            for &(_, p) in &mine {
                starts[p as usize + 1] += 1;
            }
            for i in 1..starts.len() {
                starts[i] += starts[i - 1];
            }
            let mut next = starts.clone();
            let mut order = vec![(0u32, 0u32); mine.len()];
            for &(r, p) in &mine {
                order[next[p as usize]] = (r, p);
                next[p as usize] += 1;
            }
            drop(mine);
            let mut out: Vec<StepEvent> = order
                .into_iter()
                .map(|(r, p)| {
                    let r = r as usize;
                    StepEvent {
                        person: p,
                        breakdown: row_breakdowns.get(r).copied().unwrap_or(0),
                        timestamp: times[r],
                        steps: masks[r],
                    }
                })
                .collect();
            for w in starts.windows(2) {
                out[w[0]..w[1]].sort_by_key(|e| (e.timestamp, e.steps));
            }
            (out, ids.len() as u32)
        }
    };
    let (mine, other) = std::thread::scope(|scope| {
        let other = scope.spawn(shard(1));
        (shard(0)(), other.join())
    });
    let ((mut out, first), (rest, _)) = (
        mine,
        other.map_err(|_| StoreError::Internal("a funnel thread panicked".into()))?,
    );
    out.reserve(rest.len());
    out.extend(rest.into_iter().map(|e| StepEvent {
        person: e.person + first,
        ..e
    }));
    Ok(StepEvents {
        events: out,
        breakdowns,
    })
}

/// Counts retention in the engine: cohorts by the first cohort event per person, then a join of
/// the return events on the person (see [`RetentionQuery`]). `frame` holds exactly the
/// project's events of `[q.from, q.to)`.
pub(crate) async fn retention(frame: DataFrame, q: &RetentionQuery) -> Result<RetentionCounts> {
    use datafusion::arrow::array::AsArray;
    use datafusion::arrow::datatypes::Int64Type;
    use datafusion::common::JoinType;

    // A filter drops the rows where a comparison is NULL (a missing property): "does not
    // match". Left plain, the conjunction also prunes Parquet pages.
    let matches = |filters: &[Filter]| -> Result<Expr> {
        let mut pred = lit(true);
        for f in filters {
            pred = pred.and(filter_expr(f)?);
        }
        Ok(pred)
    };
    // Microseconds since the epoch (`date_bin` may answer in nanoseconds).
    let period = |ts: Expr| {
        let us = DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
        cast(
            cast(bucket_expr(ts, q.period, q.timezone), us),
            DataType::Int64,
        )
    };
    let events = frame;
    let cohorts = events
        .clone()
        .filter(matches(&q.cohort)?.and(ident(col::TIMESTAMP).lt(ts_lit(q.cohort_to))))?
        .aggregate(
            vec![ident(col::PERSON_KEY)],
            vec![min(ident(col::TIMESTAMP)).alias("t0")],
        )?
        .select(vec![
            ident(col::PERSON_KEY).alias("cohort_person"),
            ident("t0"),
            period(ident("t0")).alias("cohort"),
        ])?
        .cache()
        .await?;
    let sizes = cohorts
        .clone()
        .aggregate(vec![ident("cohort")], vec![count(lit(1i64)).alias("n")])?;
    let active = events
        .filter(matches(&q.returns)?)?
        .select(vec![
            ident(col::PERSON_KEY).alias("return_person"),
            ident(col::TIMESTAMP).alias("rt"),
        ])?
        .join(
            cohorts,
            JoinType::Inner,
            &["return_person"],
            &["cohort_person"],
            Some(ident("rt").gt_eq(ident("t0"))),
        )?
        .aggregate(
            vec![
                ident("cohort"),
                period(ident("rt")).alias("active"),
                ident("return_person"),
            ],
            vec![],
        )?
        .aggregate(
            vec![ident("cohort"), ident("active")],
            vec![count(lit(1i64)).alias("n")],
        )?;
    let mut out = RetentionCounts::default();
    for b in sizes.collect().await? {
        let c = b.column(0).as_primitive::<Int64Type>();
        let n = b.column(1).as_primitive::<Int64Type>();
        for r in 0..b.num_rows() {
            out.cohorts.push((c.value(r), n.value(r) as u64));
        }
    }
    for b in active.collect().await? {
        let c = b.column(0).as_primitive::<Int64Type>();
        let a = b.column(1).as_primitive::<Int64Type>();
        let n = b.column(2).as_primitive::<Int64Type>();
        for r in 0..b.num_rows() {
            out.active.push((c.value(r), a.value(r), n.value(r) as u64));
        }
    }
    Ok(out)
}

/// Bucket ascending, then value descending, then group values ascending.
fn compare_rows(a: &[Value], b: &[Value], has_bucket: bool, n_groups: usize) -> std::cmp::Ordering {
    use std::cmp::Ordering;
    // Nulls, then numbers, then strings, then anything else (by its JSON); no copies, since a
    // top-N over many groups compares each row many times.
    let rank = |v: &Value| match v {
        Value::Null => 0u8,
        Value::Number(_) => 1,
        Value::String(_) => 2,
        _ => 3,
    };
    let cmp = |x: &Value, y: &Value| {
        rank(x).cmp(&rank(y)).then_with(|| match (x, y) {
            (Value::Number(a), Value::Number(b)) => {
                let (a, b) = (a.as_f64().unwrap_or(0.0), b.as_f64().unwrap_or(0.0));
                a.partial_cmp(&b).unwrap_or(Ordering::Equal)
            }
            (Value::String(a), Value::String(b)) => a.cmp(b),
            (Value::Null, Value::Null) => Ordering::Equal,
            (a, b) => a.to_string().cmp(&b.to_string()),
        })
    };
    let mut ord = Ordering::Equal;
    if has_bucket {
        ord = cmp(&a[0], &b[0]);
    }
    ord.then_with(|| cmp(&b[n_groups], &a[n_groups]))
        .then_with(|| {
            let start = usize::from(has_bucket);
            (start..n_groups)
                .map(|i| cmp(&a[i], &b[i]))
                .find(|o| o.is_ne())
                .unwrap_or(Ordering::Equal)
        })
}

/// One result cell as JSON. Timestamps become RFC 3339 UTC strings.
pub(crate) fn to_json(v: &ScalarValue) -> Value {
    use ScalarValue as S;
    match v {
        S::Null => Value::Null,
        S::Boolean(b) => b.map_or(Value::Null, Value::Bool),
        S::Int8(x) => x.map_or(Value::Null, |x| x.into()),
        S::Int16(x) => x.map_or(Value::Null, |x| x.into()),
        S::Int32(x) => x.map_or(Value::Null, |x| x.into()),
        S::Int64(x) => x.map_or(Value::Null, |x| x.into()),
        S::UInt8(x) => x.map_or(Value::Null, |x| x.into()),
        S::UInt16(x) => x.map_or(Value::Null, |x| x.into()),
        S::UInt32(x) => x.map_or(Value::Null, |x| x.into()),
        S::UInt64(x) => x.map_or(Value::Null, |x| x.into()),
        S::Float32(x) => x
            .and_then(|x| serde_json::Number::from_f64(f64::from(x)))
            .map_or(Value::Null, Value::Number),
        S::Float64(x) => x
            .and_then(serde_json::Number::from_f64)
            .map_or(Value::Null, Value::Number),
        S::Utf8(s) | S::LargeUtf8(s) | S::Utf8View(s) => {
            s.as_ref().map_or(Value::Null, |s| Value::String(s.clone()))
        }
        S::TimestampMicrosecond(t, _) => t
            .and_then(chrono::DateTime::from_timestamp_micros)
            .map_or(Value::Null, |t| Value::String(format_rfc3339(t))),
        S::TimestampNanosecond(t, _) => t
            .map(chrono::DateTime::from_timestamp_nanos)
            .map_or(Value::Null, |t| Value::String(format_rfc3339(t))),
        S::TimestampMillisecond(t, _) => t
            .and_then(chrono::DateTime::from_timestamp_millis)
            .map_or(Value::Null, |t| Value::String(format_rfc3339(t))),
        S::TimestampSecond(t, _) => t
            .and_then(|t| chrono::DateTime::from_timestamp(t, 0))
            .map_or(Value::Null, |t| Value::String(format_rfc3339(t))),
        S::FixedSizeBinary(_, b) | S::Binary(b) | S::LargeBinary(b) | S::BinaryView(b) => b
            .as_ref()
            .map_or(Value::Null, |b| Value::String(hex_lower(b))),
        other => Value::String(other.to_string()),
    }
}

fn hex_lower(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}
