//! Visualization: the origin's `ChartGenerator` (result tables drawn as SVG and PNG) and
//! `DashboardManager` (saved grids of widgets, each a query drawn as a chart, with share links).
//!
//! Charts draw what they are given; their output is deterministic: the same table and options
//! give the same SVG bytes and the same PNG pixels on every machine. Dashboards run their
//! widgets' queries through the `Aggregator`, never the store directly.

mod chart;
mod dashboard;
mod data;
pub mod format;

pub use chart::{
    ChartError, ChartGenerator, ChartKind, ChartOptions, MAX_PIXELS, MAX_SIDE, PALETTE,
};
pub use dashboard::{
    DashboardDefinition, DashboardError, DashboardManager, Dashboards, GRID_COLUMNS, Layout,
    MAX_DASHBOARDS_PER_PROJECT, MAX_GRID_ROW, MAX_WIDGET_ROWS, MAX_WIDGETS, SavedDashboard, Widget,
    WidgetData, chart_fits, widget_query,
};
