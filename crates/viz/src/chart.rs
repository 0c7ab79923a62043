//! The origin's `ChartGenerator`: result tables drawn as SVG, and rasterized to PNG.
//!
//! The SVG is written by hand, with coordinates rounded to one decimal, so the same table and
//! options give the same bytes on every machine (golden files check it). PNGs come from the SVG
//! through resvg with the DejaVu Sans font compiled into the binary, never a system font.

use std::fmt::Write as _;
use std::sync::Arc;

use chrono_tz::Tz;
use resvg::{tiny_skia, usvg};
use serde::{Deserialize, Serialize};
use tally_store::ResultTable;

use crate::data::{self, Cohort, FunnelStep, Single, TimeSeries};
use crate::format::{DateStyle, compact, escape, full, nice_ticks, percent, text_width, truncate};

/// The Okabe–Ito palette, which people with any common colour-vision deficiency can tell apart.
pub const PALETTE: [&str; 8] = [
    "#0072B2", "#E69F00", "#009E73", "#D55E00", "#56B4E9", "#CC79A7", "#F0E442", "#999999",
];
const FONT: &str = "DejaVu Sans, Helvetica, Arial, sans-serif";
const INK: &str = "#1f2933";
const MUTED: &str = "#616e7c";
const GRID: &str = "#e4e7eb";
const FONT_REGULAR: &[u8] = include_bytes!("../assets/fonts/DejaVuSans.ttf");
const FONT_BOLD: &[u8] = include_bytes!("../assets/fonts/DejaVuSans-Bold.ttf");
/// The largest chart side, in pixels, a request may ask for.
pub const MAX_SIDE: u32 = 4096;
/// The most pixels a PNG may have (4096 × 4096, 64 MiB of RGBA): size times scale squared.
pub const MAX_PIXELS: u64 = 4096 * 4096;

/// What to draw.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChartKind {
    Line,
    Area,
    /// Stacked bars per bucket.
    #[serde(alias = "stacked_bar")]
    Bar,
    /// Horizontal bars of the top groups.
    #[serde(alias = "horizontal_bar")]
    Hbar,
    Pie,
    Donut,
    Funnel,
    /// A heat-map table of retention cohorts.
    Retention,
    /// One number with its change against the previous period.
    Number,
}

impl ChartKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Line => "line",
            Self::Area => "area",
            Self::Bar => "bar",
            Self::Hbar => "hbar",
            Self::Pie => "pie",
            Self::Donut => "donut",
            Self::Funnel => "funnel",
            Self::Retention => "retention",
            Self::Number => "number",
        }
    }
}

/// How a chart looks.
#[derive(Debug, Clone, PartialEq)]
pub struct ChartOptions {
    pub width: u32,
    pub height: u32,
    pub title: Option<String>,
    /// Dates on the time axis are shown in this zone.
    pub timezone: Tz,
}

impl Default for ChartOptions {
    fn default() -> Self {
        Self {
            width: 640,
            height: 320,
            title: None,
            timezone: Tz::UTC,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ChartError {
    /// The table cannot be drawn as the chart asked for (a user error).
    #[error("{0}")]
    Shape(String),
    #[error(
        "the chart size must be between 120x80 and {MAX_SIDE}x{MAX_SIDE} pixels, and a PNG \
         (size times scale) at most {MAX_PIXELS} pixels"
    )]
    Size,
    #[error("rasterizing the chart failed: {0}")]
    Raster(String),
}

/// Draws charts. Cheap to clone; build one and share it (it holds the parsed fonts).
#[derive(Clone)]
pub struct ChartGenerator {
    fonts: Arc<usvg::fontdb::Database>,
}

impl std::fmt::Debug for ChartGenerator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChartGenerator").finish_non_exhaustive()
    }
}

impl Default for ChartGenerator {
    fn default() -> Self {
        Self::new()
    }
}

impl ChartGenerator {
    pub fn new() -> Self {
        let mut db = usvg::fontdb::Database::new();
        db.load_font_data(FONT_REGULAR.to_vec());
        db.load_font_data(FONT_BOLD.to_vec());
        db.set_sans_serif_family("DejaVu Sans");
        Self {
            fonts: Arc::new(db),
        }
    }

    /// The chart as an SVG document.
    pub fn svg(
        &self,
        kind: ChartKind,
        table: &ResultTable,
        options: &ChartOptions,
    ) -> Result<String, ChartError> {
        let (w, h) = (options.width, options.height);
        if !(120..=MAX_SIDE).contains(&w) || !(80..=MAX_SIDE).contains(&h) {
            return Err(ChartError::Size);
        }
        let mut c = Canvas::new(f64::from(w), f64::from(h), options);
        match kind {
            ChartKind::Line | ChartKind::Area | ChartKind::Bar => {
                let s = data::time_series(table)?;
                c.time_chart(kind, &s);
            }
            ChartKind::Hbar => c.hbar(&data::categories(table, 10)?),
            ChartKind::Pie | ChartKind::Donut => {
                c.pie(
                    &data::categories(table, data::MAX_SERIES)?,
                    kind == ChartKind::Donut,
                );
            }
            ChartKind::Funnel => c.funnel(&data::funnel(table)?),
            ChartKind::Retention => c.retention(&data::retention(table)?),
            ChartKind::Number => c.number(data::single(table)?),
        }
        Ok(c.finish())
    }

    /// An SVG document (one this generator made) as PNG, `scale` pixels per SVG unit.
    pub fn png(&self, svg: &str, scale: f32) -> Result<Vec<u8>, ChartError> {
        let options = usvg::Options {
            fontdb: Arc::clone(&self.fonts),
            font_family: "DejaVu Sans".to_owned(),
            ..usvg::Options::default()
        };
        let tree =
            usvg::Tree::from_str(svg, &options).map_err(|e| ChartError::Raster(e.to_string()))?;
        let size = tree.size();
        let scale = scale.clamp(0.25, 4.0);
        let (w, h) = (
            (size.width() * scale).ceil() as u32,
            (size.height() * scale).ceil() as u32,
        );
        if u64::from(w) * u64::from(h) > MAX_PIXELS {
            return Err(ChartError::Size);
        }
        let mut pixmap = tiny_skia::Pixmap::new(w.max(1), h.max(1))
            .ok_or_else(|| ChartError::Raster("the image is too large".into()))?;
        pixmap.fill(tiny_skia::Color::WHITE);
        resvg::render(
            &tree,
            tiny_skia::Transform::from_scale(scale, scale),
            &mut pixmap.as_mut(),
        );
        pixmap
            .encode_png()
            .map_err(|e| ChartError::Raster(e.to_string()))
    }

    /// The chart as PNG.
    pub fn render_png(
        &self,
        kind: ChartKind,
        table: &ResultTable,
        options: &ChartOptions,
        scale: f32,
    ) -> Result<Vec<u8>, ChartError> {
        self.png(&self.svg(kind, table, options)?, scale)
    }
}

/// Writes one SVG document.
struct Canvas {
    out: String,
    w: f64,
    h: f64,
    /// Where the chart body starts, below the title.
    top: f64,
    tz: Tz,
}

/// Rounds a coordinate to one decimal, so output is stable and small.
fn r(v: f64) -> f64 {
    (v * 10.0).round() / 10.0
}

impl Canvas {
    fn new(w: f64, h: f64, options: &ChartOptions) -> Self {
        let mut out = String::new();
        let _ = write!(
            out,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="{FONT}" font-size="12" fill="{INK}">"#
        );
        let _ = write!(out, r##"<rect width="{w}" height="{h}" fill="#ffffff"/>"##);
        let mut top = 8.0;
        if let Some(t) = &options.title {
            let max = ((w - 16.0) / (14.0 * 0.6)) as usize;
            let _ = write!(
                out,
                r#"<text x="8" y="22" font-size="14" font-weight="bold">{}</text>"#,
                escape(&truncate(t, max))
            );
            top = 34.0;
        }
        Self {
            out,
            w,
            h,
            top,
            tz: options.timezone,
        }
    }

    fn finish(mut self) -> String {
        self.out.push_str("</svg>\n");
        self.out
    }

    fn text(&mut self, x: f64, y: f64, anchor: &str, attrs: &str, s: &str) {
        let _ = write!(
            self.out,
            r#"<text x="{}" y="{}" text-anchor="{anchor}"{attrs}>{}</text>"#,
            r(x),
            r(y),
            escape(s)
        );
    }

    fn rect(&mut self, x: f64, y: f64, w: f64, h: f64, fill: &str, extra: &str) {
        let _ = write!(
            self.out,
            r#"<rect x="{}" y="{}" width="{}" height="{}" fill="{fill}"{extra}/>"#,
            r(x),
            r(y),
            r(w.max(0.0)),
            r(h.max(0.0))
        );
    }

    fn empty(&mut self) {
        let (x, y) = (self.w / 2.0, (self.top + self.h) / 2.0);
        self.text(
            x,
            y,
            "middle",
            &format!(r#" fill="{MUTED}""#),
            "No data for this range",
        );
    }

    /// A legend row of the series names; returns its height.
    fn legend(&mut self, names: &[&str]) -> f64 {
        if names.len() < 2 {
            return 0.0;
        }
        let (mut x, mut y) = (8.0, self.top + 10.0);
        for (i, n) in names.iter().enumerate() {
            let label = truncate(n, 24);
            let width = 16.0 + text_width(&label, 11.0) + 12.0;
            if x + width > self.w - 8.0 && x > 8.0 {
                x = 8.0;
                y += 16.0;
            }
            self.rect(
                x,
                y - 8.0,
                10.0,
                10.0,
                PALETTE[i % PALETTE.len()],
                r#" rx="2""#,
            );
            self.text(x + 14.0, y + 1.0, "start", r#" font-size="11""#, &label);
            x += width;
        }
        y - self.top + 12.0
    }

    /// Y grid lines and labels over `[lo, hi]`; returns the value → y mapping's plot bounds.
    fn y_axis(&mut self, lo: f64, hi: f64, left: f64, top: f64, bottom: f64) -> (f64, f64) {
        let ticks = nice_ticks(lo, hi, 4);
        let (min, max) = (ticks[0], *ticks.last().unwrap_or(&1.0));
        for t in &ticks {
            let y = bottom - (t - min) / (max - min) * (bottom - top);
            let _ = write!(
                self.out,
                r#"<line x1="{}" y1="{}" x2="{}" y2="{}" stroke="{GRID}"/>"#,
                r(left),
                r(y),
                r(self.w - 12.0),
                r(y)
            );
            self.text(
                left - 6.0,
                y + 4.0,
                "end",
                &format!(r#" fill="{MUTED}" font-size="11""#),
                &compact(*t),
            );
        }
        (min, max)
    }

    fn time_chart(&mut self, kind: ChartKind, s: &TimeSeries) {
        if s.x.is_empty() || s.series.is_empty() {
            return self.empty();
        }
        let names: Vec<&str> = s.series.iter().map(|(n, _)| n.as_str()).collect();
        let legend = self.legend(&names);
        let stacked = kind != ChartKind::Line;
        let n = s.x.len();
        let totals: Vec<f64> = (0..n)
            .map(|i| s.series.iter().map(|(_, ys)| ys[i]).sum())
            .collect();
        let all = s.series.iter().flat_map(|(_, ys)| ys.iter().copied());
        let (lo, hi) = if stacked {
            (0.0, totals.iter().copied().fold(0.0, f64::max))
        } else {
            all.fold((0.0f64, 0.0f64), |(a, b), v| (a.min(v), b.max(v)))
        };
        let top = self.top + legend + 8.0;
        let bottom = self.h - 28.0;
        let widest = nice_ticks(lo, hi, 4)
            .iter()
            .map(|t| text_width(&compact(*t), 11.0))
            .fold(0.0, f64::max);
        let left = 14.0 + widest;
        let right = self.w - 12.0;
        let (min, max) = self.y_axis(lo, hi, left, top, bottom);
        let y_of = |v: f64| bottom - (v - min) / (max - min) * (bottom - top);
        let band = (right - left) / n as f64;
        let x_of = |i: usize| {
            if kind == ChartKind::Bar {
                left + band * (i as f64 + 0.5)
            } else if n == 1 {
                (left + right) / 2.0
            } else {
                left + (right - left) * i as f64 / (n - 1) as f64
            }
        };
        // X labels: at most one per 80 px.
        let every = (n as f64 / ((right - left) / 80.0).max(1.0))
            .ceil()
            .max(1.0) as usize;
        let step = if n > 1 {
            (s.x[1] - s.x[0]).num_seconds()
        } else {
            86_400
        };
        let style = DateStyle::for_step(step);
        let mut previous = None;
        for i in (0..n).step_by(every) {
            let label = style.label(s.x[i], previous, self.tz);
            previous = Some(s.x[i]);
            // The outermost labels of a line end at the plot's edges, not beyond them.
            let anchor = match (kind != ChartKind::Bar && n > 1, i) {
                (true, 0) => "start",
                (true, i) if i == n - 1 => "end",
                _ => "middle",
            };
            self.text(
                x_of(i),
                bottom + 16.0,
                anchor,
                &format!(r#" fill="{MUTED}" font-size="11""#),
                &label,
            );
        }
        let _ = write!(
            self.out,
            r#"<line x1="{}" y1="{}" x2="{}" y2="{}" stroke="{MUTED}"/>"#,
            r(left),
            r(y_of(0.0f64.clamp(min, max))),
            r(right),
            r(y_of(0.0f64.clamp(min, max)))
        );
        let mut base = vec![0.0; n];
        for (k, (name, ys)) in s.series.iter().enumerate() {
            let color = PALETTE[k % PALETTE.len()];
            let _ = write!(self.out, r#"<g data-series="{}">"#, escape(name));
            match kind {
                ChartKind::Bar => {
                    let bw = (band * 0.7).max(1.0);
                    for i in 0..n {
                        let (y0, y1) = (y_of(base[i]), y_of(base[i] + ys[i]));
                        if ys[i] != 0.0 {
                            self.rect(x_of(i) - bw / 2.0, y1, bw, y0 - y1, color, "");
                        }
                        base[i] += ys[i];
                    }
                }
                ChartKind::Area => {
                    let mut d = String::new();
                    for i in 0..n {
                        let _ = write!(
                            d,
                            "{}{},{}",
                            if i == 0 { "M" } else { "L" },
                            r(x_of(i)),
                            r(y_of(base[i] + ys[i]))
                        );
                    }
                    for i in (0..n).rev() {
                        let _ = write!(d, "L{},{}", r(x_of(i)), r(y_of(base[i])));
                    }
                    let _ = write!(
                        self.out,
                        r#"<path d="{d}Z" fill="{color}" fill-opacity="0.75" stroke="{color}"/>"#
                    );
                    for (b, y) in base.iter_mut().zip(ys) {
                        *b += y;
                    }
                }
                _ => {
                    let mut d = String::new();
                    for (i, y) in ys.iter().enumerate() {
                        let _ = write!(
                            d,
                            "{}{},{}",
                            if i == 0 { "M" } else { "L" },
                            r(x_of(i)),
                            r(y_of(*y))
                        );
                    }
                    let _ = write!(
                        self.out,
                        r#"<path d="{d}" fill="none" stroke="{color}" stroke-width="2" stroke-linejoin="round"/>"#
                    );
                    if n <= 40 {
                        for (i, y) in ys.iter().enumerate() {
                            let _ = write!(
                                self.out,
                                r#"<circle cx="{}" cy="{}" r="2.5" fill="{color}"/>"#,
                                r(x_of(i)),
                                r(y_of(*y))
                            );
                        }
                    }
                }
            }
            self.out.push_str("</g>");
        }
    }

    fn hbar(&mut self, items: &[(String, f64)]) {
        if items.is_empty() {
            return self.empty();
        }
        let top = self.top + 4.0;
        let row = ((self.h - top - 8.0) / items.len() as f64).min(28.0);
        let label_w = (self.w * 0.35).min(220.0);
        let max_chars = (label_w / (12.0 * 0.6)) as usize;
        let max = items
            .iter()
            .map(|(_, v)| *v)
            .fold(0.0, f64::max)
            .max(f64::MIN_POSITIVE);
        let value_w = 56.0;
        let bar_w = self.w - label_w - value_w - 24.0;
        for (i, (name, v)) in items.iter().enumerate() {
            let y = top + row * i as f64;
            self.text(
                label_w + 4.0,
                y + row * 0.5 + 4.0,
                "end",
                "",
                &truncate(name, max_chars),
            );
            let w = (v / max).max(0.0) * bar_w;
            self.rect(
                label_w + 12.0,
                y + row * 0.15,
                w,
                row * 0.7,
                PALETTE[0],
                r#" rx="2""#,
            );
            self.text(
                label_w + 18.0 + w,
                y + row * 0.5 + 4.0,
                "start",
                &format!(r#" fill="{MUTED}""#),
                &compact(*v),
            );
        }
    }

    fn pie(&mut self, items: &[(String, f64)], donut: bool) {
        let total: f64 = items.iter().map(|(_, v)| v.max(0.0)).sum();
        if items.is_empty() || total <= 0.0 {
            return self.empty();
        }
        let body = self.h - self.top - 8.0;
        let radius = (body / 2.0 - 4.0).min(self.w * 0.25);
        let (cx, cy) = (8.0 + radius + 4.0, self.top + body / 2.0);
        let inner = if donut { radius * 0.55 } else { 0.0 };
        let mut angle = -std::f64::consts::FRAC_PI_2;
        for (i, (_, v)) in items.iter().enumerate() {
            let share = v.max(0.0) / total;
            if share <= 0.0 {
                continue;
            }
            let color = PALETTE[i % PALETTE.len()];
            if share >= 0.9999 {
                let _ = write!(
                    self.out,
                    r#"<circle cx="{}" cy="{}" r="{}" fill="{color}"/>"#,
                    r(cx),
                    r(cy),
                    r(radius)
                );
            } else {
                let end = angle + share * std::f64::consts::TAU;
                let large = u8::from(share > 0.5);
                let p = |a: f64, rad: f64| (r(cx + rad * a.cos()), r(cy + rad * a.sin()));
                let (x0, y0) = p(angle, radius);
                let (x1, y1) = p(end, radius);
                let d = if donut {
                    let (x2, y2) = p(end, inner);
                    let (x3, y3) = p(angle, inner);
                    format!(
                        "M{x0},{y0}A{radius},{radius} 0 {large} 1 {x1},{y1}L{x2},{y2}A{inner},{inner} 0 {large} 0 {x3},{y3}Z",
                        radius = r(radius),
                        inner = r(inner)
                    )
                } else {
                    format!(
                        "M{},{}L{x0},{y0}A{radius},{radius} 0 {large} 1 {x1},{y1}Z",
                        r(cx),
                        r(cy),
                        radius = r(radius)
                    )
                };
                let _ = write!(
                    self.out,
                    r##"<path d="{d}" fill="{color}" stroke="#ffffff" stroke-width="1"/>"##
                );
                angle = end;
            }
        }
        if donut {
            self.circle_hole(cx, cy, inner);
            self.text(
                cx,
                cy + 6.0,
                "middle",
                r#" font-size="16" font-weight="bold""#,
                &compact(total),
            );
        }
        let lx = cx + radius + 24.0;
        let row = (body / items.len() as f64).min(22.0);
        let start = cy - row * items.len() as f64 / 2.0;
        let max_chars = ((self.w - lx - 80.0) / (12.0 * 0.6)).max(4.0) as usize;
        for (i, (name, v)) in items.iter().enumerate() {
            let y = start + row * (i as f64 + 0.5);
            self.rect(
                lx,
                y - 6.0,
                10.0,
                10.0,
                PALETTE[i % PALETTE.len()],
                r#" rx="2""#,
            );
            let label = format!(
                "{} · {}",
                truncate(name, max_chars),
                percent(v.max(0.0) / total)
            );
            self.text(lx + 16.0, y + 3.0, "start", "", &label);
        }
    }

    fn circle_hole(&mut self, cx: f64, cy: f64, radius: f64) {
        if radius > 0.0 {
            let _ = write!(
                self.out,
                r##"<circle cx="{}" cy="{}" r="{}" fill="#ffffff"/>"##,
                r(cx),
                r(cy),
                r(radius)
            );
        }
    }

    fn funnel(&mut self, steps: &[FunnelStep]) {
        let first = steps.first().map_or(0.0, |s| s.persons);
        if steps.is_empty() || first <= 0.0 {
            return self.empty();
        }
        let top = self.top + 30.0;
        let bottom = self.h - 28.0;
        let band = (self.w - 16.0) / steps.len() as f64;
        let bw = (band * 0.6).min(120.0);
        for (i, s) in steps.iter().enumerate() {
            let x = 8.0 + band * (i as f64 + 0.5);
            let full_h = bottom - top;
            let h = full_h * s.persons / first;
            self.rect(
                x - bw / 2.0,
                top,
                bw,
                full_h,
                PALETTE[0],
                r#" fill-opacity="0.15""#,
            );
            self.rect(x - bw / 2.0, bottom - h, bw, h, PALETTE[0], "");
            let conv = percent(s.persons / first);
            self.text(x, top - 16.0, "middle", r#" font-weight="bold""#, &conv);
            self.text(
                x,
                top - 4.0,
                "middle",
                &format!(r#" fill="{MUTED}" font-size="11""#),
                &format!("{} persons", compact(s.persons)),
            );
            let max_chars = (band / (11.0 * 0.6)) as usize;
            self.text(
                x,
                bottom + 16.0,
                "middle",
                r#" font-size="11""#,
                &truncate(&format!("{}. {}", i + 1, s.label), max_chars),
            );
        }
    }

    fn retention(&mut self, cohorts: &[Cohort]) {
        let periods = cohorts.iter().map(|c| c.periods.len()).max().unwrap_or(0);
        if cohorts.is_empty() || periods == 0 {
            return self.empty();
        }
        let top = self.top + 4.0;
        let row = ((self.h - top - 8.0) / (cohorts.len() + 1) as f64).min(26.0);
        let (label_w, size_w) = (84.0, 56.0);
        let cell = (self.w - label_w - size_w - 16.0) / periods as f64;
        let header = format!(r#" fill="{MUTED}" font-size="11""#);
        self.text(8.0, top + row * 0.6, "start", &header, "Cohort");
        self.text(
            label_w + size_w - 6.0,
            top + row * 0.6,
            "end",
            &header,
            "Persons",
        );
        for p in 0..periods {
            let x = label_w + size_w + cell * (p as f64 + 0.5);
            self.text(x, top + row * 0.6, "middle", &header, &p.to_string());
        }
        let style = if cohorts.len() > 1 {
            DateStyle::for_step((cohorts[1].start - cohorts[0].start).num_seconds())
        } else {
            DateStyle::Day
        };
        for (i, c) in cohorts.iter().enumerate() {
            let y = top + row * (i + 1) as f64;
            let label = style.label(c.start, None, self.tz);
            self.text(8.0, y + row * 0.6, "start", "", &label);
            self.text(
                label_w + size_w - 6.0,
                y + row * 0.6,
                "end",
                "",
                &compact(c.size),
            );
            for (p, cellv) in c.periods.iter().enumerate() {
                let Some((_, fraction)) = cellv else { continue };
                let x = label_w + size_w + cell * p as f64;
                let opacity = 0.08 + 0.92 * fraction.clamp(0.0, 1.0);
                self.rect(
                    x + 1.0,
                    y + 1.0,
                    cell - 2.0,
                    row - 2.0,
                    PALETTE[0],
                    &format!(r#" fill-opacity="{:.2}""#, opacity),
                );
                let ink = if *fraction > 0.5 { "#ffffff" } else { INK };
                self.text(
                    x + cell / 2.0,
                    y + row * 0.6,
                    "middle",
                    &format!(r#" fill="{ink}" font-size="11""#),
                    &percent(*fraction),
                );
            }
        }
    }

    fn number(&mut self, single: Option<Single>) {
        let Some(s) = single else {
            return self.empty();
        };
        let cy = (self.top + self.h) / 2.0;
        let size = ((self.h - self.top) * 0.35).clamp(18.0, 64.0);
        self.text(
            self.w / 2.0,
            cy + size * 0.3,
            "middle",
            &format!(r#" font-size="{}" font-weight="bold""#, r(size)),
            &full(s.value),
        );
        if let Some(p) = s.previous {
            let delta = s.value - p;
            let (arrow, color) = match delta.partial_cmp(&0.0) {
                Some(std::cmp::Ordering::Greater) => ("▲", PALETTE[0]),
                Some(std::cmp::Ordering::Less) => ("▼", PALETTE[3]),
                _ => ("=", MUTED),
            };
            let change = if p != 0.0 {
                format!(
                    "{arrow} {} ({}) vs previous period",
                    percent(delta.abs() / p.abs()),
                    signed(delta)
                )
            } else {
                format!("{arrow} {} vs previous period", signed(delta))
            };
            self.text(
                self.w / 2.0,
                cy + size * 0.3 + 24.0,
                "middle",
                &format!(r#" fill="{color}""#),
                &change,
            );
        }
    }
}

fn signed(v: f64) -> String {
    if v > 0.0 {
        format!("+{}", compact(v))
    } else {
        compact(v)
    }
}
