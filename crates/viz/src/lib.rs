//! Visualization: the origin's `ChartGenerator` (result tables drawn as SVG and PNG).
//!
//! This crate draws what it is given; it never queries storage. Its output is deterministic:
//! the same table and options give the same SVG bytes and the same PNG pixels on every machine.

mod chart;
mod data;
pub mod format;

pub use chart::{
    ChartError, ChartGenerator, ChartKind, ChartOptions, MAX_PIXELS, MAX_SIDE, PALETTE,
};
