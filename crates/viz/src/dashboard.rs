//! The origin's `DashboardManager`: dashboards per project, each a grid of widgets (a query of
//! any kind drawn as a chart), persisted in the catalog, with read-only share links.
//!
//! A dashboard's time range is relative (`past_30_days`, `week_to_date`, ...) and resolved in its
//! time zone each time it is viewed, so a dashboard stays current. Widgets are laid out on a
//! grid of [`GRID_COLUMNS`] columns; a widget saved without a layout is placed in the first free
//! spot.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tally_catalog::{Catalog, CatalogError, CreatedShare, DashboardRow, ShareRow};
use tally_core::time::{RelativeRange, ResolvedRange, range_spec};
use tally_core::{FieldError, ProjectId};
use tally_query::{Aggregator, Compare, QueryError, QueryItem, QueryRequest};
use tally_store::ResultTable;

use crate::{ChartError, ChartGenerator, ChartKind, ChartOptions};

/// Columns of the layout grid.
pub const GRID_COLUMNS: u32 = 12;
/// The highest row a widget may start at.
pub const MAX_GRID_ROW: u32 = 1000;
/// The tallest widget, in rows.
pub const MAX_WIDGET_ROWS: u32 = 12;
/// At most this many widgets on a dashboard.
pub const MAX_WIDGETS: usize = 50;
/// At most this many dashboards per project.
pub const MAX_DASHBOARDS_PER_PROJECT: usize = 200;
const MAX_TITLE: usize = 200;
const MAX_DESCRIPTION: usize = 2000;

#[derive(Debug, thiserror::Error)]
pub enum DashboardError {
    #[error("{0}")]
    Invalid(#[from] FieldError),
    #[error("{what} `{name}` not found")]
    NotFound { what: &'static str, name: String },
    #[error(transparent)]
    Query(#[from] QueryError),
    #[error(transparent)]
    Chart(#[from] ChartError),
    #[error(transparent)]
    Catalog(CatalogError),
    #[error("stored dashboard is invalid: {0}")]
    Json(#[from] serde_json::Error),
}

impl From<CatalogError> for DashboardError {
    fn from(e: CatalogError) -> Self {
        match e {
            CatalogError::NotFound { what, name } => Self::NotFound { what, name },
            CatalogError::Invalid(m) => {
                Self::Invalid(FieldError::new("too_many_dashboards", "", m))
            }
            other => Self::Catalog(other),
        }
    }
}

/// A dashboard as `POST /v1/dashboards` takes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DashboardDefinition {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The range every widget shows unless it has its own; `past_30_days` if absent.
    #[serde(default = "default_range")]
    pub time_range: RelativeRange,
    /// The IANA zone ranges and dates are in; UTC if absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    #[serde(default)]
    pub widgets: Vec<Widget>,
}

fn default_range() -> RelativeRange {
    RelativeRange::PastDays(30)
}

/// One tile of a dashboard.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Widget {
    /// Stable within the dashboard (`w1`, `w2`, ... when left out).
    #[serde(default)]
    pub id: String,
    pub title: String,
    /// How the result is drawn.
    pub chart: ChartKind,
    /// A query as one entry of `/v1/query`'s `rules` (any kind but `formula`); its `name` may
    /// be left out.
    pub query: QueryItem,
    /// This widget's own range, instead of the dashboard's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_range: Option<RelativeRange>,
    /// Where the widget sits; the first free spot of its size when left out.
    #[serde(default)]
    pub layout: Option<Layout>,
}

/// A widget's place on the grid: column `x` (0-based, of [`GRID_COLUMNS`]), row `y`, width `w`
/// in columns and height `h` in rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Layout {
    pub x: u32,
    pub y: u32,
    #[serde(default = "default_w")]
    pub w: u32,
    #[serde(default = "default_h")]
    pub h: u32,
}

fn default_w() -> u32 {
    6
}

fn default_h() -> u32 {
    4
}

impl Layout {
    fn overlaps(&self, o: &Self) -> bool {
        self.x < o.x + o.w && o.x < self.x + self.w && self.y < o.y + o.h && o.y < self.y + self.h
    }
}

/// A saved dashboard as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SavedDashboard {
    pub id: String,
    #[serde(flatten)]
    pub definition: DashboardDefinition,
    pub created_at: String,
    pub updated_at: String,
}

impl SavedDashboard {
    fn from_row(row: &DashboardRow) -> Result<Self, DashboardError> {
        Ok(Self {
            id: row.id.clone(),
            definition: serde_json::from_str(&row.definition)?,
            created_at: row.created_at.clone(),
            updated_at: row.updated_at.clone(),
        })
    }

    /// One of the dashboard's widgets.
    pub fn widget(&self, id: &str) -> Result<&Widget, DashboardError> {
        self.definition
            .widgets
            .iter()
            .find(|w| w.id == id)
            .ok_or_else(|| DashboardError::NotFound {
                what: "widget",
                name: id.to_owned(),
            })
    }
}

/// A widget's result: what its chart draws, with the range it was computed over.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WidgetData {
    pub widget_id: String,
    pub title: String,
    pub chart: ChartKind,
    pub time_range: ResolvedRange,
    /// The query as run (a `number` widget's trend runs without interval and with the
    /// previous period).
    pub query: QueryItem,
    pub result: ResultTable,
    /// The result came from a rule's rollup.
    pub from_rollup: bool,
}

fn parse_tz(name: Option<&str>, field: &str) -> Result<Tz, FieldError> {
    name.map_or(Ok(Tz::UTC), |n| {
        n.parse::<Tz>().map_err(|_| {
            FieldError::new(
                "invalid_timezone",
                field,
                format!("unknown IANA time zone `{n}`"),
            )
        })
    })
}

fn check_text(s: &str, max: usize, field: &str, code: &str) -> Result<(), FieldError> {
    if s.trim().is_empty() || s.chars().count() > max {
        return Err(FieldError::new(
            code,
            field,
            format!("1 to {max} characters"),
        ));
    }
    Ok(())
}

/// Whether `chart` can draw the result of `query`; the reason when not.
pub fn chart_fits(chart: ChartKind, query: &QueryItem) -> Result<(), String> {
    let has_buckets = match query {
        QueryItem::Rule(r) => r.interval.is_some(),
        QueryItem::Sessions(s) => s.interval.is_some(),
        QueryItem::Lifecycle(_) => true,
        _ => false,
    };
    let fits = match (chart, query) {
        (_, QueryItem::Formula(_)) => {
            return Err(
                "a formula needs the queries it combines; save those as a rule-based widget each"
                    .into(),
            );
        }
        (ChartKind::Funnel, q) => matches!(q, QueryItem::Funnel(_)),
        (ChartKind::Retention, q) => matches!(q, QueryItem::Retention(_)),
        (_, QueryItem::Funnel(_)) | (_, QueryItem::Retention(_)) => false,
        (ChartKind::Number, q) => matches!(q, QueryItem::Rule(r) if r.group_by.is_empty()),
        (ChartKind::Line | ChartKind::Area | ChartKind::Bar, _) => has_buckets,
        (ChartKind::Hbar | ChartKind::Pie | ChartKind::Donut, _) => !has_buckets,
    };
    if fits {
        Ok(())
    } else {
        Err(format!(
            "a `{}` chart cannot draw a `{}` query{}",
            chart.as_str(),
            query.kind(),
            match chart {
                ChartKind::Line | ChartKind::Area | ChartKind::Bar =>
                    " without an interval (set `interval`, or use hbar, pie or donut)",
                ChartKind::Hbar | ChartKind::Pie | ChartKind::Donut =>
                    " with an interval (leave `interval` out, or use line, area or bar)",
                ChartKind::Number => " with a group-by (a number is one trend value)",
                ChartKind::Funnel | ChartKind::Retention => "",
            }
        ))
    }
}

impl DashboardDefinition {
    /// Parses a definition from the API's JSON, filling widget ids, query names and layouts
    /// left out, and checks it, each widget's query as it would run for `project` now. Errors
    /// name the offending field.
    pub fn from_json(mut v: Value, project: &ProjectId) -> Result<Self, FieldError> {
        // Ids first, so that a query's name can default to its widget's id.
        if let Some(widgets) = v.get_mut("widgets").and_then(Value::as_array_mut) {
            let mut next = widgets
                .iter()
                .filter_map(|w| {
                    w.get("id")?
                        .as_str()?
                        .strip_prefix('w')?
                        .parse::<u32>()
                        .ok()
                })
                .max()
                .unwrap_or(0);
            for w in widgets.iter_mut() {
                let Some(obj) = w.as_object_mut() else {
                    continue;
                };
                if !obj.get("id").is_some_and(|id| id.is_string()) {
                    next += 1;
                    obj.insert("id".into(), Value::String(format!("w{next}")));
                }
                let id = obj.get("id").cloned().unwrap_or_default();
                if let Some(q) = obj.get_mut("query").and_then(Value::as_object_mut)
                    && !q.contains_key("name")
                {
                    q.insert("name".into(), id);
                }
            }
        }
        let mut def: Self = serde_path_to_error::deserialize(v).map_err(|e| {
            let field = e.path().to_string();
            let field = if field == "." { String::new() } else { field };
            FieldError::new("invalid_dashboard", field, e.into_inner().to_string())
        })?;
        def.validate()?;
        def.check_queries(project, Utc::now())?;
        def.place_widgets();
        Ok(def)
    }

    /// Checks every widget's query over its range as resolved at `at`, as the `Aggregator`
    /// checks a request, so a dashboard that saves is one that draws.
    fn check_queries(&self, project: &ProjectId, at: DateTime<Utc>) -> Result<(), FieldError> {
        let tz = self.tz();
        for (i, w) in self.widgets.iter().enumerate() {
            let range = w.time_range.unwrap_or(self.time_range).resolve(at, tz);
            widget_query(w).check(project, &range, &format!("widgets[{i}].query"))?;
        }
        Ok(())
    }

    fn validate(&self) -> Result<(), FieldError> {
        check_text(&self.name, MAX_TITLE, "name", "invalid_name")?;
        if let Some(d) = &self.description
            && d.chars().count() > MAX_DESCRIPTION
        {
            return Err(FieldError::new(
                "invalid_description",
                "description",
                format!("at most {MAX_DESCRIPTION} characters"),
            ));
        }
        parse_tz(self.timezone.as_deref(), "timezone")?;
        if self.widgets.len() > MAX_WIDGETS {
            return Err(FieldError::new(
                "too_many_widgets",
                "widgets",
                format!("at most {MAX_WIDGETS} widgets"),
            ));
        }
        let mut ids = std::collections::HashSet::new();
        for (i, w) in self.widgets.iter().enumerate() {
            let at = |f: &str| format!("widgets[{i}].{f}");
            if w.id.is_empty()
                || w.id.len() > 64
                || !w
                    .id
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            {
                return Err(FieldError::new(
                    "invalid_widget_id",
                    at("id"),
                    "1 to 64 letters, digits, `_` or `-`",
                ));
            }
            if !ids.insert(w.id.as_str()) {
                return Err(FieldError::new(
                    "duplicate_widget_id",
                    at("id"),
                    format!("`{}` is used by another widget", w.id),
                ));
            }
            check_text(&w.title, MAX_TITLE, &at("title"), "invalid_title")?;
            chart_fits(w.chart, &w.query)
                .map_err(|m| FieldError::new("invalid_chart", at("chart"), m))?;
            if let Some(l) = w.layout {
                let ok = (1..=GRID_COLUMNS).contains(&l.w)
                    && l.x + l.w <= GRID_COLUMNS
                    && (1..=MAX_WIDGET_ROWS).contains(&l.h)
                    && l.y <= MAX_GRID_ROW;
                if !ok {
                    return Err(FieldError::new(
                        "invalid_layout",
                        at("layout"),
                        format!(
                            "w 1 to {GRID_COLUMNS}, x + w at most {GRID_COLUMNS}, h 1 to \
                             {MAX_WIDGET_ROWS}, y at most {MAX_GRID_ROW}"
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    /// Gives each widget without a layout the first free spot (top to bottom, left to right)
    /// of the default size.
    fn place_widgets(&mut self) {
        let mut taken: Vec<Layout> = self.widgets.iter().filter_map(|w| w.layout).collect();
        for w in self.widgets.iter_mut().filter(|w| w.layout.is_none()) {
            let (width, height) = (default_w(), default_h());
            let spot = (0..=MAX_GRID_ROW)
                .flat_map(|y| (0..=GRID_COLUMNS - width).map(move |x| (x, y)))
                .map(|(x, y)| Layout {
                    x,
                    y,
                    w: width,
                    h: height,
                })
                .find(|c| !taken.iter().any(|t| t.overlaps(c)))
                .unwrap_or(Layout {
                    x: 0,
                    y: MAX_GRID_ROW,
                    w: width,
                    h: height,
                });
            taken.push(spot);
            w.layout = Some(spot);
        }
    }

    pub fn tz(&self) -> Tz {
        parse_tz(self.timezone.as_deref(), "timezone").unwrap_or(Tz::UTC)
    }
}

/// A widget's query as it runs: a `number` widget's trend has no interval and compares with
/// the previous period.
pub fn widget_query(w: &Widget) -> QueryItem {
    match (&w.query, w.chart) {
        (QueryItem::Rule(r), ChartKind::Number) => {
            let mut r = r.clone();
            r.interval = None;
            r.compare = Some(Compare::PreviousPeriod);
            r.cumulative = false;
            QueryItem::Rule(r)
        }
        (q, _) => q.clone(),
    }
}

/// Saved dashboards and their share links in the catalog: what the API and the CLI share, so a
/// dashboard saved either way is checked the same.
#[derive(Debug, Clone, Copy)]
pub struct Dashboards<'a> {
    catalog: &'a Catalog,
}

impl<'a> Dashboards<'a> {
    pub fn new(catalog: &'a Catalog) -> Self {
        Self { catalog }
    }

    pub fn create(
        &self,
        project: &ProjectId,
        body: Value,
    ) -> Result<SavedDashboard, DashboardError> {
        let def = DashboardDefinition::from_json(body, project)?;
        let id = format!("dsh_{}", &uuid::Uuid::new_v4().simple().to_string()[..16]);
        self.catalog.create_dashboard(
            project,
            &id,
            &serde_json::to_string(&def)?,
            MAX_DASHBOARDS_PER_PROJECT,
        )?;
        self.get(project, &id)
    }

    /// Replaces a dashboard's definition (widgets keep their ids when they are sent back).
    pub fn update(
        &self,
        project: &ProjectId,
        id: &str,
        body: Value,
    ) -> Result<SavedDashboard, DashboardError> {
        let def = DashboardDefinition::from_json(body, project)?;
        self.catalog
            .update_dashboard(project, id, &serde_json::to_string(&def)?)?;
        self.get(project, id)
    }

    /// Adds one widget (placed in the first free spot unless it has a layout).
    pub fn add_widget(
        &self,
        project: &ProjectId,
        id: &str,
        widget: Value,
    ) -> Result<SavedDashboard, DashboardError> {
        let saved = self.get(project, id)?;
        let mut body = serde_json::to_value(&saved.definition)?;
        let n = saved.definition.widgets.len();
        if let Some(widgets) = body.get_mut("widgets").and_then(Value::as_array_mut) {
            widgets.push(widget);
        }
        let def = DashboardDefinition::from_json(body, project).map_err(|mut e| {
            // Name the field as the caller sent it.
            let prefix = format!("widgets[{n}]");
            if let Some(rest) = e.field.strip_prefix(&prefix) {
                e.field = rest.trim_start_matches('.').to_owned();
            }
            e
        })?;
        self.catalog
            .update_dashboard(project, id, &serde_json::to_string(&def)?)?;
        self.get(project, id)
    }

    pub fn get(&self, project: &ProjectId, id: &str) -> Result<SavedDashboard, DashboardError> {
        SavedDashboard::from_row(&self.catalog.dashboard(project, id)?)
    }

    pub fn list(&self, project: &ProjectId) -> Result<Vec<SavedDashboard>, DashboardError> {
        self.catalog
            .dashboards(project)?
            .iter()
            .map(SavedDashboard::from_row)
            .collect()
    }

    /// Deletes a dashboard and its share links; false when there was none.
    pub fn delete(&self, project: &ProjectId, id: &str) -> Result<bool, DashboardError> {
        Ok(self.catalog.delete_dashboard(project, id)?)
    }

    /// A new read-only link to the dashboard; its token is shown only now.
    pub fn share(&self, project: &ProjectId, id: &str) -> Result<CreatedShare, DashboardError> {
        Ok(self.catalog.create_share(project, id)?)
    }

    pub fn shares(&self, project: &ProjectId, id: &str) -> Result<Vec<ShareRow>, DashboardError> {
        Ok(self.catalog.shares(project, id)?)
    }

    /// Revokes a share link; false when the dashboard has no such link.
    pub fn revoke(
        &self,
        project: &ProjectId,
        id: &str,
        share_id: &str,
    ) -> Result<bool, DashboardError> {
        Ok(self.catalog.revoke_share(project, id, share_id)?)
    }

    /// The project and dashboard a share token opens; `None` for an unknown or revoked token.
    pub fn shared(
        &self,
        token: &str,
    ) -> Result<Option<(ProjectId, SavedDashboard)>, DashboardError> {
        self.catalog
            .shared_dashboard(token)?
            .map(|row| Ok((row.project.clone(), SavedDashboard::from_row(&row)?)))
            .transpose()
    }
}

/// The origin's `DashboardManager`: dashboards saved in the catalog, their widgets run by the
/// `Aggregator` and drawn by the `ChartGenerator`.
#[derive(Debug, Clone)]
pub struct DashboardManager {
    catalog: Arc<Catalog>,
    aggregator: Aggregator,
    charts: ChartGenerator,
}

impl DashboardManager {
    pub fn new(catalog: Arc<Catalog>, aggregator: Aggregator, charts: ChartGenerator) -> Self {
        Self {
            catalog,
            aggregator,
            charts,
        }
    }

    /// The saved dashboards.
    pub fn saved(&self) -> Dashboards<'_> {
        Dashboards::new(&self.catalog)
    }

    /// Runs one widget as of `at` (its range resolved then, in the dashboard's zone), or with
    /// `range` instead of its own.
    pub async fn widget_data(
        &self,
        project: &ProjectId,
        dashboard: &DashboardDefinition,
        widget: &Widget,
        at: DateTime<Utc>,
        range: Option<RelativeRange>,
    ) -> Result<WidgetData, DashboardError> {
        let relative = range.or(widget.time_range).unwrap_or(dashboard.time_range);
        let tz = dashboard.tz();
        let resolved = relative.resolve(at, tz);
        let query = widget_query(widget);
        let name = query.name().to_owned();
        let request = QueryRequest {
            time_range: range_spec(&resolved),
            rules: vec![query.clone()],
            exact: false,
        };
        let mut response = self.aggregator.run(project, &request).await?;
        let result = response.results.remove(&name).unwrap_or(ResultTable {
            columns: Vec::new(),
            rows: Vec::new(),
        });
        Ok(WidgetData {
            widget_id: widget.id.clone(),
            title: widget.title.clone(),
            chart: widget.chart,
            time_range: ResolvedRange::new(relative, &resolved),
            query,
            result,
            from_rollup: response.from_rollups.contains(&name),
        })
    }

    /// A widget's result drawn as SVG (`width` x `height`), dates in its range's zone.
    pub fn widget_svg(
        &self,
        data: &WidgetData,
        width: u32,
        height: u32,
        title: bool,
    ) -> Result<String, DashboardError> {
        let timezone = data.time_range.timezone.parse::<Tz>().unwrap_or(Tz::UTC);
        let options = ChartOptions {
            width,
            height,
            title: title.then(|| data.title.clone()),
            timezone,
        };
        Ok(self.charts.svg(data.chart, &data.result, &options)?)
    }

    /// The chart generator (for PNG rasterizing).
    pub fn charts(&self) -> &ChartGenerator {
        &self.charts
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn def(v: Value) -> Result<DashboardDefinition, FieldError> {
        DashboardDefinition::from_json(
            v,
            &ProjectId::parse("p0123456789abcdef").expect("a project id"),
        )
    }

    #[test]
    fn ids_names_and_layouts_are_filled_in() {
        let d = def(json!({"name": "Product", "widgets": [
            {"title": "Views", "chart": "line",
             "query": {"event": "pageview", "measure": {"op": "count"}, "interval": "day"},
             "layout": {"x": 0, "y": 0, "w": 12, "h": 3}},
            {"id": "w7", "title": "Signups", "chart": "number",
             "query": {"event": "signup", "measure": {"op": "count"}}},
            {"title": "Browsers", "chart": "pie",
             "query": {"measure": {"op": "count"}, "group_by": ["browser"]}},
            {"title": "Countries", "chart": "hbar",
             "query": {"measure": {"op": "count"}, "group_by": ["context.country"]}}
        ]}))
        .unwrap();
        let ids: Vec<_> = d.widgets.iter().map(|w| w.id.as_str()).collect();
        assert_eq!(ids, ["w8", "w7", "w9", "w10"]);
        assert_eq!(d.widgets[0].query.name(), "w8");
        let layouts: Vec<_> = d.widgets.iter().map(|w| w.layout.unwrap()).collect();
        assert_eq!((layouts[1].x, layouts[1].y), (0, 3));
        assert_eq!((layouts[2].x, layouts[2].y), (6, 3));
        assert_eq!((layouts[3].x, layouts[3].y), (0, 7));
        assert_eq!(d.time_range, RelativeRange::PastDays(30));
    }

    #[test]
    fn bad_definitions_name_the_field() {
        let line = |q: Value| json!({"title": "t", "chart": "line", "query": q});
        let cases = [
            (json!({"name": ""}), "name"),
            (json!({"name": "x", "timezone": "Mars/Base"}), "timezone"),
            (
                json!({"name": "x", "time_range": "last_year_or_so"}),
                "time_range",
            ),
            (
                json!({"name": "x", "widgets": [line(json!({"measure": {"op": "count"}}))]}),
                "widgets[0].chart",
            ),
            (
                json!({"name": "x", "widgets": [{"title": "t", "chart": "line",
                    "query": {"kind": "funnel", "steps": [{"event": "a"}, {"event": "b"}], "window": "1d"}}]}),
                "widgets[0].chart",
            ),
            (
                json!({"name": "x", "widgets": [{"title": "t", "chart": "pie",
                    "query": {"measure": {"op": "count"}, "group_by": ["browser"]},
                    "layout": {"x": 8, "y": 0, "w": 6, "h": 4}}]}),
                "widgets[0].layout",
            ),
            (
                json!({"name": "x", "widgets": [
                    {"id": "a", "title": "t", "chart": "number", "query": {"measure": {"op": "count"}}},
                    {"id": "a", "title": "u", "chart": "number", "query": {"measure": {"op": "count"}}}]}),
                "widgets[1].id",
            ),
            (
                json!({"name": "x", "widgets": [{"title": "t", "chart": "number",
                    "query": {"measure": {"op": "median"}}}]}),
                "widgets[0].query.measure.op",
            ),
            (
                // 43,200 minutes in 30 days: more buckets than a query may have.
                json!({"name": "x", "widgets": [{"title": "t", "chart": "line",
                    "query": {"measure": {"op": "count"}, "interval": "minute"}}]}),
                "widgets[0].query.interval",
            ),
            (
                json!({"name": "x", "widgets": [{"title": "t", "chart": "sparkline",
                    "query": {"measure": {"op": "count"}}}]}),
                "widgets[0].chart",
            ),
        ];
        for (body, field) in cases {
            let e = def(body.clone()).unwrap_err();
            assert_eq!(e.field, field, "{body}: {e:?}");
        }
    }

    #[test]
    fn a_number_widget_runs_its_trend_against_the_previous_period() {
        let d = def(
            json!({"name": "x", "widgets": [{"title": "t", "chart": "number",
            "query": {"measure": {"op": "count"}, "interval": "day", "cumulative": true}}]}),
        )
        .unwrap();
        let QueryItem::Rule(r) = widget_query(&d.widgets[0]) else {
            panic!("a rule")
        };
        assert!(r.interval.is_none() && !r.cumulative);
        assert_eq!(r.compare, Some(Compare::PreviousPeriod));
    }
}
