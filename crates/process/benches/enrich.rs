//! Enrichment benchmarks: user agent parsing (warm cache, cold), referrer classification and
//! PII scrubbing.
//!
//! Run with `cargo bench -p tally-process --bench enrich`.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use tally_process::enrich::{UserAgentParser, Utm, classify, split};

const USER_AGENTS: &[&str] = &[
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.2 Safari/605.1.15",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_2_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.2 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Mobile Safari/537.36",
    "Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0",
    "Mozilla/5.0 (Linux; Android 13; SAMSUNG SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/23.0 Chrome/115.0.0.0 Mobile Safari/537.36",
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    "curl/8.4.0",
];

fn user_agent(c: &mut Criterion) {
    let parser = UserAgentParser::new();
    for ua in USER_AGENTS {
        parser.parse(ua);
    }
    let mut group = c.benchmark_group("user_agent");
    group.bench_function("parse_warm_cache", |b| {
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) % USER_AGENTS.len();
            parser.parse(black_box(USER_AGENTS[i]))
        })
    });
    group.bench_function("parse_cold", |b| {
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) % USER_AGENTS.len();
            parser.parse_uncached(black_box(USER_AGENTS[i]))
        })
    });
    group.sample_size(10);
    group.bench_function("new", |b| b.iter(UserAgentParser::new));
    group.finish();
}

fn referrer(c: &mut Criterion) {
    let page = "https://www.example.com/pricing?utm_source=newsletter&utm_medium=email&utm_campaign=spring";
    let referrers = [
        "https://www.google.com/",
        "https://l.facebook.com/l.php?u=https%3A%2F%2Fexample.com",
        "https://www.example.com/blog/post",
        "https://blog.rust-lang.org/2024/01/01/post.html",
    ];
    let mut group = c.benchmark_group("referrer");
    group.bench_function("classify", |b| {
        let utm = Utm::default();
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) % referrers.len();
            classify(black_box(Some(referrers[i])), black_box(Some(page)), &utm)
        })
    });
    group.bench_function("utm_from_url_and_classify", |b| {
        b.iter(|| {
            let utm = Utm::from_url(black_box(page));
            classify(black_box(Some(referrers[0])), black_box(Some(page)), &utm)
        })
    });
    group.bench_function("split", |b| b.iter(|| split(black_box(page))));
    group.finish();
}

fn pii(c: &mut Criterion) {
    use tally_process::{IpMode, PiiPolicy, PiiScrubber};
    let scrubber = PiiScrubber::new(PiiPolicy::default(), IpMode::Truncate, b"bench salt");
    let mut group = c.benchmark_group("pii");
    // The common case: properties with nothing personal (the pre-filter skips most strings).
    let clean: serde_json::Map<String, serde_json::Value> = serde_json::from_str(
        r#"{"plan": "pro", "value": 129.5, "sku": "SKU-2291", "path": "/pricing", "items": ["a", "b"], "coupon": "WINTER26"}"#,
    )
    .expect("json");
    group.bench_function("scrub_clean_properties", |b| {
        b.iter(|| {
            let mut m = clean.clone();
            scrubber.scrub_map(black_box(&mut m));
            m
        })
    });
    let dirty: serde_json::Map<String, serde_json::Value> = serde_json::from_str(
        r#"{"email": "jane@example.com", "note": "card 4111 1111 1111 1111, call +49 30 1234567", "password": "x", "plan": "pro", "order": "20261202153000"}"#,
    )
    .expect("json");
    group.bench_function("scrub_personal_properties", |b| {
        b.iter(|| {
            let mut m = dirty.clone();
            scrubber.scrub_map(black_box(&mut m));
            m
        })
    });
    group.bench_function("scrub_page_url", |b| {
        b.iter(|| {
            scrubber.scrub_str(black_box(
                "https://shop.test/pricing?utm_source=news&ref=2291",
            ))
        })
    });
    group.finish();
}

criterion_group!(benches, user_agent, referrer, pii);
criterion_main!(benches);
