//! The origin's `ReportGenerator`: runs a report's sections for an instant and records what it
//! ran, so that running it again for the same instant gives the same numbers.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tally_core::ProjectId;
use tally_core::time::{ResolvedRange, format_rfc3339};
use tally_query::{Aggregator, QueryRequest};
use tally_store::{ResultTable, Store};
use tally_viz::ChartKind;

use crate::ReportError;
use crate::definition::{Display, ReportDefinition, range_spec};

/// A report's results with everything needed to run it again: the resolved range, the
/// queries, the instant and the data watermark.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RenderedReport {
    pub report_id: String,
    pub title: String,
    /// The instant the relative range was resolved against (the scheduled slot, or now).
    pub at: String,
    /// Only events received before this instant were counted.
    pub watermark: String,
    pub time_range: ResolvedRange,
    pub sections: Vec<RenderedSection>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RenderedSection {
    pub title: String,
    pub display: Display,
    /// The chart drawn when `display` is `chart`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chart: Option<ChartKind>,
    /// The query as it ran (one entry of `/v1/query`'s `rules`).
    pub query: Value,
    pub result: ResultTable,
}

/// Renders reports from the store.
#[derive(Debug, Clone)]
pub struct ReportGenerator {
    store: Arc<dyn Store>,
}

impl ReportGenerator {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self { store }
    }

    /// Runs `def` for instant `at`, counting the events received before `watermark`.
    pub async fn generate(
        &self,
        project: &ProjectId,
        report_id: &str,
        def: &ReportDefinition,
        at: DateTime<Utc>,
        watermark: DateTime<Utc>,
    ) -> Result<RenderedReport, ReportError> {
        let tz = def.tz();
        let range = def.time_range.resolve(at, tz);
        let queries: Vec<_> = (0..def.sections.len())
            .map(|i| def.section_query(i))
            .collect();
        let request = QueryRequest {
            time_range: range_spec(&range),
            rules: queries.clone(),
            // Sketches in rollups are approximate and see every event received so far.
            exact: true,
        };
        let store = self.store.as_of(watermark.timestamp_micros());
        let mut response = Aggregator::new(store).run(project, &request).await?;
        let sections = def
            .sections
            .iter()
            .zip(&queries)
            .enumerate()
            .map(|(i, (s, q))| {
                let result = response
                    .results
                    .remove(q.name())
                    .unwrap_or_else(|| ResultTable {
                        columns: Vec::new(),
                        rows: Vec::new(),
                    });
                Ok(RenderedSection {
                    title: s.title.clone(),
                    display: s.display,
                    chart: (s.display == Display::Chart).then(|| def.section_chart(i)),
                    query: serde_json::to_value(q)?,
                    result,
                })
            })
            .collect::<Result<Vec<_>, serde_json::Error>>()
            .map_err(|e| ReportError::Internal(format!("serializing a query: {e}")))?;
        Ok(RenderedReport {
            report_id: report_id.to_owned(),
            title: def.title.clone(),
            at: format_rfc3339(at),
            watermark: format_rfc3339(watermark),
            time_range: ResolvedRange::new(def.time_range, &range),
            sections,
        })
    }
}
