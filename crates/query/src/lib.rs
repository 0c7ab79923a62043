//! The query layer: the origin's `AggregationRule` and `Aggregator`.
//!
//! A rule (filter, measure, group-by, time bucket) arrives as JSON, is validated here with errors
//! that name the offending field, and is compiled into the store's engine-neutral
//! [`AggregateQuery`](tally_store::AggregateQuery); the `Aggregator` runs the rules of a request
//! over a time range and shapes the results (continuous time series, named results).
//!
//! This crate never touches files or SQL: it speaks to storage only through the `Store` trait.

mod activity;
mod aggregator;
mod fields;
mod formula;
mod funnel;
mod overview;
mod paths;
mod retention;
mod rule;
mod sessions;
mod trends;

pub use activity::ActivityQuery;
pub use aggregator::{
    Aggregator, MAX_BUCKETS, MAX_RULES, QueryError, QueryItem, QueryRequest, QueryResponse,
};
pub use fields::resolve_field;
pub use formula::FormulaQuery;
pub use funnel::{FunnelQuery, FunnelStep};
pub use overview::{
    NOW_MINUTES, Overview, OverviewPlan, ROLLUP_PREFIX as OVERVIEW_ROLLUP_PREFIX, RangeTotals,
    Series, TOP_N, TopRow, Totals,
};
pub use paths::{Direction, PathAnchor, PathItems, PathsQuery};
pub use retention::RetentionQuery;
pub use rule::{AggregationRule, Compare, FilterSpec, MeasureSpec, OTHER_GROUP};
pub use sessions::SessionsQuery;
