//! A rendered report written out: JSON, CSV (one file per section, or a zip of them) and
//! self-contained HTML that email clients show and browsers print.
//!
//! The HTML uses tables and inline styles only (what email clients keep). Charts are inline SVG
//! for browsers and files, or `cid:` images for email, whose PNGs are returned beside the HTML.

use std::fmt::Write as _;
use std::io::Write as _;

use chrono::{DateTime, Duration, Timelike, Utc};
use chrono_tz::Tz;
use serde_json::Value;
use tally_core::FieldError;
use tally_core::time::parse_rfc3339;
use tally_viz::format::{escape, full, percent};
use tally_viz::{ChartGenerator, ChartOptions};

use crate::ReportError;
use crate::definition::Display;
use crate::generator::{RenderedReport, RenderedSection};

/// At most this many rows of a table section are shown in HTML (the CSV has them all).
pub const MAX_HTML_ROWS: usize = 100;
const CHART_WIDTH: u32 = 632;
const CHART_HEIGHT: u32 = 280;

/// How HTML carries its charts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChartEmbed {
    /// `<svg>` elements in the page.
    InlineSvg,
    /// `<img src="cid:...">`, with the PNGs returned for the email's related parts.
    ContentId,
}

/// A chart image an email carries beside its HTML.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InlineImage {
    pub content_id: String,
    pub png: Vec<u8>,
}

/// A CSV file of one section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CsvFile {
    pub name: String,
    pub content: String,
}

pub fn to_json(report: &RenderedReport) -> Result<Vec<u8>, ReportError> {
    let mut out = serde_json::to_vec_pretty(report)
        .map_err(|e| ReportError::Internal(format!("serializing the report: {e}")))?;
    out.push(b'\n');
    Ok(out)
}

/// A file name from a title: lower case letters, digits and dashes.
fn slug(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars().flat_map(char::to_lowercase) {
        if c.is_ascii_alphanumeric() {
            out.push(c);
        } else if !out.ends_with('-') && !out.is_empty() {
            out.push('-');
        }
    }
    let out = out.trim_end_matches('-');
    if out.is_empty() {
        "section".to_owned()
    } else {
        out.chars().take(60).collect()
    }
}

fn csv_field(out: &mut String, v: &Value) {
    let text = match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    // RFC 4180; a leading =, +, - or @ is prefixed so spreadsheets never run it as a formula.
    let guarded = match text.chars().next() {
        Some('=' | '+' | '@') | Some('-') if !matches!(v, Value::Number(_)) => format!("'{text}"),
        _ => text,
    };
    if guarded.contains([',', '"', '\n', '\r']) {
        out.push('"');
        out.push_str(&guarded.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(&guarded);
    }
}

/// One section's result as CSV (header line, then rows; CRLF line ends as RFC 4180 says).
pub fn section_csv(section: &RenderedSection) -> String {
    let mut out = String::new();
    let header: Vec<Value> = section
        .result
        .columns
        .iter()
        .map(|c| Value::String(c.clone()))
        .collect();
    for row in std::iter::once(&header).chain(&section.result.rows) {
        for (i, v) in row.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            csv_field(&mut out, v);
        }
        out.push_str("\r\n");
    }
    out
}

/// Every section as a CSV file, named `01-title.csv`, `02-...`.
pub fn csv_files(report: &RenderedReport) -> Vec<CsvFile> {
    report
        .sections
        .iter()
        .enumerate()
        .map(|(i, s)| CsvFile {
            name: format!("{:02}-{}.csv", i + 1, slug(&s.title)),
            content: section_csv(s),
        })
        .collect()
}

/// The sections' CSV files in one zip.
pub fn csv_zip(report: &RenderedReport) -> Result<Vec<u8>, ReportError> {
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    // A fixed timestamp keeps the archive's bytes the same for the same report.
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .last_modified_time(zip::DateTime::default());
    let err = |e: &dyn std::fmt::Display| ReportError::Internal(format!("writing the zip: {e}"));
    for f in csv_files(report) {
        zip.start_file(f.name, options).map_err(|e| err(&e))?;
        zip.write_all(f.content.as_bytes()).map_err(|e| err(&e))?;
    }
    Ok(zip.finish().map_err(|e| err(&e))?.into_inner())
}

/// `[from, to)` for people: `Nov 16 – Nov 22, 2026`, or with times when not whole days.
pub fn describe_range(from: &str, to: &str, tz: Tz) -> String {
    let (Some(f), Some(t)) = (parse_rfc3339(from), parse_rfc3339(to)) else {
        return format!("{from} – {to}");
    };
    let (lf, lt) = (f.with_timezone(&tz), t.with_timezone(&tz));
    let midnight = |d: &DateTime<Tz>| d.hour() == 0 && d.minute() == 0 && d.second() == 0;
    if midnight(&lf) && midnight(&lt) {
        let last = (t - Duration::seconds(1)).with_timezone(&tz);
        if last.date_naive() == lf.date_naive() {
            return lf.format("%a %b %-d, %Y").to_string();
        }
        return format!("{} – {}", lf.format("%b %-d"), last.format("%b %-d, %Y"));
    }
    format!(
        "{} – {}",
        lf.format("%b %-d, %Y %H:%M"),
        lt.format("%b %-d, %Y %H:%M")
    )
}

fn cell(v: &Value) -> String {
    match v {
        Value::Null => "–".to_owned(),
        Value::String(s) => escape(s),
        Value::Number(n) => n.as_f64().map_or_else(|| n.to_string(), full),
        other => escape(&other.to_string()),
    }
}

const TD: &str = "padding:4px 8px;border-bottom:1px solid #e4e7eb;font-size:13px;";

fn html_table(out: &mut String, s: &RenderedSection) {
    let r = &s.result;
    if r.rows.is_empty() {
        out.push_str(r#"<p style="color:#616e7c;font-size:13px;">No data for this range.</p>"#);
        return;
    }
    out.push_str(r#"<table role="presentation" cellpadding="0" cellspacing="0" width="100%" style="border-collapse:collapse;">"#);
    out.push_str("<tr>");
    for (i, c) in r.columns.iter().enumerate() {
        // Numeric columns are right-aligned, their headings too.
        let align = if r.rows.iter().any(|row| row[i].is_number()) {
            "right"
        } else {
            "left"
        };
        let _ = write!(
            out,
            r#"<th align="{align}" style="{TD}color:#616e7c;font-weight:normal;">{}</th>"#,
            escape(c)
        );
    }
    out.push_str("</tr>");
    for row in r.rows.iter().take(MAX_HTML_ROWS) {
        out.push_str("<tr>");
        for v in row {
            let align = if v.is_number() { "right" } else { "left" };
            let _ = write!(out, r#"<td align="{align}" style="{TD}">{}</td>"#, cell(v));
        }
        out.push_str("</tr>");
    }
    out.push_str("</table>");
    if r.rows.len() > MAX_HTML_ROWS {
        let _ = write!(
            out,
            r#"<p style="color:#616e7c;font-size:12px;">The first {MAX_HTML_ROWS} of {} rows; the CSV has them all.</p>"#,
            r.rows.len()
        );
    }
}

fn column(s: &RenderedSection, name: &str) -> Option<f64> {
    let i = s.result.columns.iter().position(|c| c == name)?;
    Some(s.result.rows.iter().filter_map(|r| r[i].as_f64()).sum())
}

fn html_number(out: &mut String, s: &RenderedSection) {
    let Some(value) = column(s, "value").filter(|_| !s.result.rows.is_empty()) else {
        out.push_str(r#"<p style="color:#616e7c;font-size:13px;">No data for this range.</p>"#);
        return;
    };
    let _ = write!(
        out,
        r#"<div style="font-size:36px;font-weight:bold;line-height:44px;">{}</div>"#,
        full(value)
    );
    if let Some(previous) = column(s, "previous") {
        let delta = value - previous;
        let (arrow, color) = if delta > 0.0 {
            ("▲", "#0072B2")
        } else if delta < 0.0 {
            ("▼", "#D55E00")
        } else {
            ("=", "#616e7c")
        };
        let change = if previous != 0.0 {
            format!(
                "{} ({}{})",
                percent(delta.abs() / previous.abs()),
                if delta > 0.0 { "+" } else { "" },
                full(delta)
            )
        } else {
            format!("{}{}", if delta > 0.0 { "+" } else { "" }, full(delta))
        };
        let _ = write!(
            out,
            r#"<div style="font-size:14px;color:{color};">{arrow} {change} <span style="color:#616e7c;">vs previous period ({})</span></div>"#,
            full(previous)
        );
    }
}

/// The report as one HTML document.
pub fn to_html(
    report: &RenderedReport,
    charts: &ChartGenerator,
    embed: ChartEmbed,
) -> Result<(String, Vec<InlineImage>), ReportError> {
    let tz: Tz = report.time_range.timezone.parse().unwrap_or(Tz::UTC);
    let title = escape(&report.title);
    let range = escape(&describe_range(
        &report.time_range.from,
        &report.time_range.to,
        tz,
    ));
    let mut images = Vec::new();
    let mut out = String::new();
    let _ = write!(
        out,
        r#"<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>@media print {{ body {{ background:#ffffff !important; }} .card {{ box-shadow:none !important; }} .section {{ page-break-inside:avoid; }} }}</style>
</head>
<body style="margin:0;padding:0;background:#f5f7fa;color:#1f2933;font-family:'DejaVu Sans',Helvetica,Arial,sans-serif;">
<table role="presentation" cellpadding="0" cellspacing="0" width="100%" style="background:#f5f7fa;"><tr><td align="center" style="padding:24px 8px;">
<table role="presentation" class="card" cellpadding="0" cellspacing="0" width="680" style="width:680px;max-width:100%;background:#ffffff;border-radius:6px;box-shadow:0 1px 3px rgba(0,0,0,.1);">
<tr><td style="padding:24px 24px 8px 24px;"><h1 style="margin:0 0 4px 0;font-size:22px;">{title}</h1>
<p style="margin:0;color:#616e7c;font-size:13px;">{range} ({tz})</p></td></tr>
"#,
        tz = escape(tz.name()),
    );
    for (i, s) in report.sections.iter().enumerate() {
        let _ = write!(
            out,
            r#"<tr><td class="section" style="padding:16px 24px;border-top:1px solid #e4e7eb;"><h2 style="margin:0 0 8px 0;font-size:16px;">{}</h2>"#,
            escape(&s.title)
        );
        match (s.display, s.chart) {
            (Display::Number, _) => html_number(&mut out, s),
            (Display::Chart, Some(kind)) => {
                let options = ChartOptions {
                    width: CHART_WIDTH,
                    height: CHART_HEIGHT,
                    title: None,
                    timezone: tz,
                };
                match charts.svg(kind, &s.result, &options) {
                    Ok(svg) => match embed {
                        ChartEmbed::InlineSvg => out.push_str(&svg),
                        ChartEmbed::ContentId => {
                            let id = format!("chart-{}@tally", i + 1);
                            let png = charts.png(&svg, 2.0)?;
                            let _ = write!(
                                out,
                                r#"<img src="cid:{id}" width="{CHART_WIDTH}" height="{CHART_HEIGHT}" alt="{}" style="display:block;width:100%;max-width:{CHART_WIDTH}px;height:auto;">"#,
                                escape(&s.title)
                            );
                            images.push(InlineImage {
                                content_id: id,
                                png,
                            });
                        }
                    },
                    // A result this chart cannot draw is shown as its table.
                    Err(tally_viz::ChartError::Shape(_)) => html_table(&mut out, s),
                    Err(e) => return Err(e.into()),
                }
            }
            _ => html_table(&mut out, s),
        }
        out.push_str("</td></tr>\n");
    }
    let _ = write!(
        out,
        r#"<tr><td style="padding:16px 24px 24px 24px;border-top:1px solid #e4e7eb;color:#616e7c;font-size:11px;">Report {id} for {at}, counting events received before {watermark}. Sent by Tally.</td></tr>
</table></td></tr></table>
</body></html>
"#,
        id = escape(&report.report_id),
        at = escape(&report.at),
        watermark = escape(&report.watermark),
    );
    Ok((out, images))
}

/// A plain-text summary for the email's text part.
pub fn to_text(report: &RenderedReport) -> String {
    let tz: Tz = report.time_range.timezone.parse().unwrap_or(Tz::UTC);
    let mut out = format!(
        "{}\n{} ({})\n",
        report.title,
        describe_range(&report.time_range.from, &report.time_range.to, tz),
        tz.name()
    );
    for s in &report.sections {
        let _ = write!(out, "\n{}\n", s.title);
        if s.display == Display::Number {
            if let Some(v) = column(s, "value") {
                let _ = write!(out, "  {}", full(v));
                if let Some(p) = column(s, "previous") {
                    let _ = write!(out, " (previous period: {})", full(p));
                }
                out.push('\n');
            }
            continue;
        }
        let _ = writeln!(out, "  {}", s.result.columns.join(" | "));
        for row in s.result.rows.iter().take(20) {
            let cells: Vec<String> = row
                .iter()
                .map(|v| match v {
                    Value::String(s) => s.clone(),
                    Value::Null => "-".into(),
                    other => other.to_string(),
                })
                .collect();
            let _ = writeln!(out, "  {}", cells.join(" | "));
        }
        if s.result.rows.len() > 20 {
            let _ = writeln!(
                out,
                "  ... {} rows in the attached CSV",
                s.result.rows.len()
            );
        }
    }
    let _ = write!(
        out,
        "\nReport {} for {}, counting events received before {}.\n",
        report.report_id, report.at, report.watermark
    );
    out
}

/// A rendering in one of the formats the API and the CLI offer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub content_type: &'static str,
    /// The file name to offer for downloads (`None`: shown inline).
    pub file_name: Option<String>,
    pub bytes: Vec<u8>,
}

/// Renders `report` as `format` (`json`, `html`, `csv`, `zip`). `csv` is one section's CSV
/// (`section`, 1-based, or the only one), or a zip of all when there are several.
pub fn render(
    report: &RenderedReport,
    format: &str,
    section: Option<usize>,
    charts: &ChartGenerator,
) -> Result<Rendered, ReportError> {
    let inline = |content_type, bytes| Rendered {
        content_type,
        file_name: None,
        bytes,
    };
    Ok(match format {
        "json" => inline("application/json", to_json(report)?),
        "html" => inline(
            "text/html; charset=utf-8",
            to_html(report, charts, ChartEmbed::InlineSvg)?
                .0
                .into_bytes(),
        ),
        "csv" if section.is_some() || report.sections.len() == 1 => {
            let files = csv_files(report);
            let n = section.unwrap_or(1);
            let f = n
                .checked_sub(1)
                .and_then(|i| files.into_iter().nth(i))
                .ok_or_else(|| {
                    FieldError::new(
                        "invalid_section",
                        "section",
                        format!("the report has sections 1 to {}", report.sections.len()),
                    )
                })?;
            Rendered {
                content_type: "text/csv; charset=utf-8",
                file_name: Some(f.name),
                bytes: f.content.into_bytes(),
            }
        }
        "csv" | "zip" => Rendered {
            content_type: "application/zip",
            file_name: Some(format!("{}.zip", report.report_id)),
            bytes: csv_zip(report)?,
        },
        other => {
            return Err(FieldError::new(
                "invalid_format",
                "format",
                format!("unknown format `{other}`: use json, csv, zip or html"),
            )
            .into());
        }
    })
}

/// The instant a run is for, as a file-name-safe stamp: `2026-11-23T08-00-00Z`.
pub fn stamp(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%dT%H-%M-%SZ").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn csv_quotes_and_guards_cells() {
        let s = RenderedSection {
            title: "Top pages".into(),
            display: Display::Table,
            chart: None,
            query: json!({}),
            result: serde_json::from_value(json!({"columns": ["path", "value"], "rows": [
                ["/a,b", 3], ["say \"hi\"", 2], ["=cmd()", -1], [null, 0.5]]}))
            .unwrap(),
        };
        assert_eq!(
            section_csv(&s),
            "path,value\r\n\"/a,b\",3\r\n\"say \"\"hi\"\"\",2\r\n'=cmd(),-1\r\n,0.5\r\n"
        );
        assert_eq!(slug("Top pages (last 7 days)!"), "top-pages-last-7-days");
        assert_eq!(slug("…"), "section");
    }

    #[test]
    fn ranges_read_as_days_in_their_zone() {
        let berlin: Tz = "Europe/Berlin".parse().unwrap();
        assert_eq!(
            describe_range("2026-11-15T23:00:00Z", "2026-11-22T23:00:00Z", berlin),
            "Nov 16 – Nov 22, 2026"
        );
        assert_eq!(
            describe_range("2026-11-21T23:00:00Z", "2026-11-22T23:00:00Z", berlin),
            "Sun Nov 22, 2026"
        );
        assert_eq!(
            describe_range("2026-11-22T23:00:00Z", "2026-11-23T08:00:00Z", berlin),
            "Nov 23, 2026 00:00 – Nov 23, 2026 09:00"
        );
    }
}
