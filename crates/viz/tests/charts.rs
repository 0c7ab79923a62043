//! Chart golden files: every chart kind drawn from a fixed result table is compared with
//! `tests/golden/charts/NAME.svg` byte for byte, and its PNG with `NAME.png` pixel by pixel
//! (a small tolerance, for anti-aliasing differences between CPUs). `TALLY_BLESS=1` rewrites
//! them; look at the new files before committing them.

use std::path::PathBuf;

use serde_json::{Value, json};
use tally_store::ResultTable;
use tally_viz::{ChartGenerator, ChartKind, ChartOptions};

fn golden_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/golden/charts")
}

fn table(v: Value) -> ResultTable {
    serde_json::from_value(v).unwrap()
}

type Case = (&'static str, ChartKind, ResultTable, Option<&'static str>);

fn cases() -> Vec<Case> {
    let days = table(json!({"columns": ["bucket", "browser", "value"], "rows": [
        ["2026-10-23T22:00:00Z", "Chrome", 1200], ["2026-10-23T22:00:00Z", "Firefox", 300],
        ["2026-10-24T22:00:00Z", "Chrome", 1500], ["2026-10-24T22:00:00Z", "Firefox", 450],
        ["2026-10-25T23:00:00Z", "Chrome", 900], ["2026-10-25T23:00:00Z", "Firefox", 500],
        ["2026-10-26T23:00:00Z", "Chrome", 2100], ["2026-10-26T23:00:00Z", "Firefox", 250],
        ["2026-10-27T23:00:00Z", "Chrome", 1800], ["2026-10-27T23:00:00Z", "Firefox", 610]]}));
    let pages = table(json!({"columns": ["path", "value"], "rows": [
        ["/", 12345], ["/pricing", 4321], ["/docs/getting-started/installation-on-linux", 2100],
        ["/blog", 999], ["/signup", 512]]}));
    vec![
        (
            "line_days_berlin",
            ChartKind::Line,
            days.clone(),
            Some("Page views by browser"),
        ),
        ("area_days_berlin", ChartKind::Area, days.clone(), None),
        ("bar_days_berlin", ChartKind::Bar, days, None),
        (
            "hbar_pages",
            ChartKind::Hbar,
            pages.clone(),
            Some("Top pages"),
        ),
        ("pie_pages", ChartKind::Pie, pages.clone(), None),
        ("donut_pages", ChartKind::Donut, pages, None),
        (
            "funnel",
            ChartKind::Funnel,
            table(json!({
                "columns": ["step", "event", "persons", "conversion_from_first", "conversion_from_previous", "median_seconds_to_convert"],
                "rows": [[1, "signup", 1000, 1.0, 1.0, null], [2, "activate", 420, 0.42, 0.42, 3600.0],
                         [3, "purchase", 105, 0.105, 0.25, 86400.0]]})),
            None,
        ),
        (
            "retention",
            ChartKind::Retention,
            table(json!({
                "columns": ["cohort", "size", "period", "persons", "fraction"],
                "rows": [["2026-09-07T00:00:00Z", 200, 0, 200, 1.0], ["2026-09-07T00:00:00Z", 200, 1, 90, 0.45],
                         ["2026-09-07T00:00:00Z", 200, 2, 61, 0.305], ["2026-09-14T00:00:00Z", 150, 0, 150, 1.0],
                         ["2026-09-14T00:00:00Z", 150, 1, 42, 0.28]]})),
            None,
        ),
        (
            "number_delta",
            ChartKind::Number,
            table(
                json!({"columns": ["value", "previous", "delta", "delta_ratio"],
                         "rows": [[1234567, 1100000, 134567, 0.1223]]}),
            ),
            Some("Events"),
        ),
        (
            "line_empty",
            ChartKind::Line,
            table(json!({"columns": ["bucket", "value"], "rows": []})),
            None,
        ),
    ]
}

fn options(title: Option<&str>) -> ChartOptions {
    ChartOptions {
        title: title.map(str::to_owned),
        timezone: "Europe/Berlin".parse().unwrap(),
        ..ChartOptions::default()
    }
}

#[test]
fn every_chart_kind_matches_its_golden_svg_and_png() {
    let charts = ChartGenerator::new();
    let bless = std::env::var_os("TALLY_BLESS").is_some();
    let dir = golden_dir();
    for (name, kind, t, title) in cases() {
        let svg = charts.svg(kind, &t, &options(title)).unwrap();
        assert_eq!(
            svg,
            charts.svg(kind, &t, &options(title)).unwrap(),
            "{name}: deterministic"
        );
        let png = charts.png(&svg, 1.0).unwrap();
        let svg_path = dir.join(format!("{name}.svg"));
        let png_path = dir.join(format!("{name}.png"));
        if bless {
            std::fs::write(&svg_path, &svg).unwrap();
            std::fs::write(&png_path, &png).unwrap();
            continue;
        }
        let want = std::fs::read_to_string(&svg_path).unwrap_or_else(|_| {
            panic!("{} is missing: run with TALLY_BLESS=1", svg_path.display())
        });
        assert_eq!(svg, want, "{name}.svg differs from the golden file");
        let want =
            resvg::tiny_skia::Pixmap::decode_png(&std::fs::read(&png_path).unwrap()).unwrap();
        let got = resvg::tiny_skia::Pixmap::decode_png(&png).unwrap();
        assert_eq!(
            (got.width(), got.height()),
            (want.width(), want.height()),
            "{name}.png size"
        );
        let differing = got
            .data()
            .chunks(4)
            .zip(want.data().chunks(4))
            .filter(|(a, b)| a.iter().zip(*b).any(|(x, y)| x.abs_diff(*y) > 16))
            .count();
        let total = (got.width() * got.height()) as usize;
        assert!(
            differing * 200 <= total,
            "{name}.png: {differing} of {total} pixels differ"
        );
    }
}

#[test]
fn charts_carry_what_a_reader_checks() {
    let charts = ChartGenerator::new();
    let find = |name: &str| cases().into_iter().find(|c| c.0 == name).unwrap();
    let (_, kind, t, _) = find("line_days_berlin");
    let svg = charts.svg(kind, &t, &options(None)).unwrap();
    // Dates in the chart's zone (the buckets start at local midnight), compact numbers, legend.
    for text in [">Oct 24<", ">Oct 28<", ">2k<", ">Chrome<", ">Firefox<"] {
        assert!(svg.contains(text), "line chart lacks {text}");
    }
    let (_, kind, t, _) = find("number_delta");
    let svg = charts.svg(kind, &t, &options(None)).unwrap();
    assert!(
        svg.contains(">1,234,567<") && svg.contains("▲ 12% (+135k) vs previous period"),
        "{svg}"
    );
    let (_, kind, t, _) = find("line_empty");
    assert!(
        charts
            .svg(kind, &t, &options(None))
            .unwrap()
            .contains("No data for this range")
    );
    // A chart that does not fit the table is a clear error, not a blank picture.
    let (_, _, t, _) = find("hbar_pages");
    let e = charts.svg(ChartKind::Line, &t, &options(None)).unwrap_err();
    assert!(e.to_string().contains("interval"), "{e}");
    let e = charts
        .svg(ChartKind::Funnel, &t, &options(None))
        .unwrap_err();
    assert!(e.to_string().contains("funnel"), "{e}");
    let big = ChartOptions {
        width: 10_000,
        ..options(None)
    };
    assert!(charts.svg(ChartKind::Hbar, &t, &big).is_err());
    // Text is escaped.
    let nasty = table(json!({"columns": ["path", "value"], "rows": [["<script>&", 1]]}));
    let svg = charts.svg(ChartKind::Hbar, &nasty, &options(None)).unwrap();
    assert!(svg.contains("&lt;script&gt;&amp;") && !svg.contains("<script>"));
}
