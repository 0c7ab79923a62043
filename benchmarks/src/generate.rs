//! `generate`: a deterministic, realistic stream of events as gzip-compressed NDJSON (one
//! `POST /v1/events` event per line, the shape `tally import` reads).
//!
//! The same `--events`, `--days` and `--seed` give a byte-identical file. The model:
//!
//! - **Time**: `--days` days ending at [`END_RFC3339`], in time order. Each hour gets a share of
//!   the events from a daily cycle (peak 14:00 UTC, trough 02:00), a weekly one (weekends are
//!   quieter), slow growth and a little day-to-day noise; times are uniform within the hour.
//! - **People**: `events / 20` persons whose activity follows a Zipf–Mandelbrot law (rank `r`
//!   weighs `1 / (r + 2.7)`); 30% are anonymous-only (`anonymous_id`, a UUID), the others send a
//!   `user_id`. The busiest person (rank 0) always has a `user_id`. A person keeps one browser
//!   (12 real user agents), one country (20, skewed) with its locale, and one IP address.
//! - **Events**: `pageview` (about 70%: ~200 paths with Zipf popularity, a referrer from
//!   Google, Bing, t.co, Facebook, DuckDuckGo, the shop itself or none, UTM parameters on 10%),
//!   `login`, `signup`, `purchase` (`{"value": 1..500, "plan": "free"|"pro"|"team"}`) and the
//!   origin's shape `{"category": "video", "action": "play", "label", "value"}` (about 5%).
//!   Anonymous persons only view pages and play videos.
//! - **Funnels**: 60% of signups are followed by a login within 30 minutes to 3 days, and half
//!   of those by a purchase within 10 minutes to 4 days.
//! - **Ids**: `message_id` is a UUID derived from the seed and the event's index (distinct for
//!   every index by construction).
//!
//! Generation runs on one thread and compression (zlib-rs, level 1) on another.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Instant;

use anyhow::{Context, bail};
use chrono::{DateTime, Datelike, Utc};
use flate2::Compression;
use flate2::write::GzEncoder;

use crate::report::{self, GenerateReport, Outcome};
use crate::rng::{AliasTable, Rng, mix64, zipf_weights};

/// The end (exclusive) of every generated data set.
pub(crate) const END_RFC3339: &str = "2026-11-20T00:00:00Z";
/// [`END_RFC3339`] in milliseconds since the Unix epoch.
#[cfg(test)]
pub(crate) const END_UNIX_MS: i64 = 1_795_132_800_000;
pub(crate) const DAY_MS: i64 = 86_400_000;
const HOUR_MS: i64 = 3_600_000;
const MINUTE_MS: i64 = 60_000;
/// Chunks handed to the compression thread: about this many bytes, cut at event boundaries.
const CHUNK_BYTES: usize = 1 << 20;

#[derive(Debug, clap::Args)]
pub(crate) struct GenerateArgs {
    /// Number of events.
    #[arg(long, default_value_t = 1_000_000)]
    events: u64,
    /// Days of data, ending at `--end`.
    #[arg(long, default_value_t = 90)]
    days: u32,
    /// The end (exclusive) of the data: a UTC midnight. Keep the default for figures comparable
    /// with earlier runs; the overview benchmark needs data that ends about now.
    #[arg(long, default_value = END_RFC3339)]
    end: String,
    /// Seed: the same seed gives a byte-identical file.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Output file; gzip-compressed when it ends in `.gz`.
    #[arg(long)]
    out: PathBuf,
    /// Also write the result as JSON here (for `tally-bench report`).
    #[arg(long)]
    json: Option<PathBuf>,
}

pub(crate) fn run(args: GenerateArgs) -> anyhow::Result<()> {
    let end_ms = end_millis(&args.end)?;
    let started = Instant::now();
    let summary = write_file(&args.out, args.events, args.days, args.seed, end_ms)?;
    let seconds = started.elapsed().as_secs_f64();
    let bytes = std::fs::metadata(&args.out)
        .with_context(|| format!("reading the size of {}", args.out.display()))?
        .len();
    let result = GenerateReport {
        file: args.out.display().to_string(),
        events: args.events,
        days: args.days,
        seed: args.seed,
        persons: summary.persons,
        most_active_user: summary.most_active_user,
        from: summary.from,
        to: args.end.clone(),
        bytes,
        seconds,
        events_per_sec: rate(args.events, seconds),
        kinds: summary.kinds,
    };
    report::emit(&Outcome::Generate(result), args.json.as_deref())
}

pub(crate) fn rate(n: u64, seconds: f64) -> f64 {
    if seconds > 0.0 {
        n as f64 / seconds
    } else {
        0.0
    }
}

/// What a generated file holds, besides the events.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Summary {
    pub(crate) persons: u64,
    pub(crate) most_active_user: String,
    pub(crate) from: String,
    pub(crate) kinds: BTreeMap<String, u64>,
}

/// `--end` in milliseconds since the Unix epoch; it must be a UTC midnight.
fn end_millis(end: &str) -> anyhow::Result<i64> {
    let t = DateTime::parse_from_rfc3339(end).with_context(|| format!("--end `{end}`"))?;
    let ms = t.timestamp_millis();
    if ms.rem_euclid(DAY_MS) != 0 {
        bail!("--end must be a UTC midnight (YYYY-MM-DDT00:00:00Z), not `{end}`");
    }
    Ok(ms)
}

/// Generates the events of the `days` before `end_ms` into `path` (gzip if it ends in `.gz`).
pub(crate) fn write_file(
    path: &Path,
    events: u64,
    days: u32,
    seed: u64,
    end_ms: i64,
) -> anyhow::Result<Summary> {
    let mut generator = Generator::new(events, days, seed, end_ms)?;
    let gzip = path.extension().is_some_and(|e| e == "gz");
    let file = File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let (tx, rx) = mpsc::sync_channel::<Vec<u8>>(4);
    let (recycle_tx, recycle_rx) = mpsc::channel::<Vec<u8>>();

    std::thread::scope(|scope| -> anyhow::Result<()> {
        let writer = scope.spawn(move || -> std::io::Result<()> {
            let out = BufWriter::with_capacity(CHUNK_BYTES, file);
            let mut out: Box<dyn Write> = if gzip {
                Box::new(GzEncoder::new(out, Compression::fast()))
            } else {
                Box::new(out)
            };
            for mut chunk in rx {
                out.write_all(&chunk)?;
                chunk.clear();
                // The generator may have finished already; then the buffer is simply dropped.
                let _ = recycle_tx.send(chunk);
            }
            out.flush()?;
            // Dropping a `GzEncoder` writes the trailer but swallows errors: finish explicitly.
            drop(out);
            Ok(())
        });
        let mut chunk = Vec::with_capacity(CHUNK_BYTES + 4096);
        let mut sent = Ok(());
        while generator.next_event(&mut chunk) {
            if chunk.len() >= CHUNK_BYTES {
                let next = recycle_rx
                    .try_recv()
                    .unwrap_or_else(|_| Vec::with_capacity(CHUNK_BYTES + 4096));
                if tx.send(std::mem::replace(&mut chunk, next)).is_err() {
                    sent = Err(());
                    break;
                }
            }
        }
        if sent.is_ok() && !chunk.is_empty() {
            // An error here surfaces from the writer below.
            let _ = tx.send(chunk);
        }
        drop(tx);
        match writer.join() {
            Ok(result) => result.with_context(|| format!("writing {}", path.display()))?,
            Err(_) => bail!("the compression thread panicked"),
        }
        Ok(())
    })?;
    Ok(generator.summary())
}

// ---------------------------------------------------------------------------------------------
// Fixed vocabularies. Every string here is written into JSON as is: none may need escaping (a
// unit test checks it).

/// Real user agents, with their share of persons. uap-core calls them, in order: Chrome,
/// Chrome, Chrome, Firefox, Firefox, Safari, Edge, Chrome Mobile, Mobile Safari, Mobile Safari,
/// Firefox Mobile, Edge Mobile (`peers_compare.py` mirrors this).
pub(crate) const USER_AGENTS: &[(&str, f64)] = &[
    (
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
        22.0,
    ),
    (
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
        8.0,
    ),
    (
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0.0.0 Safari/537.36",
        3.0,
    ),
    (
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:133.0) Gecko/20100101 Firefox/133.0",
        5.0,
    ),
    (
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10.15; rv:132.0) Gecko/20100101 Firefox/132.0",
        2.0,
    ),
    (
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Safari/605.1.15",
        7.0,
    ),
    (
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36 Edg/131.0.0.0",
        8.0,
    ),
    (
        "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Mobile Safari/537.36",
        22.0,
    ),
    (
        "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1",
        15.0,
    ),
    (
        "Mozilla/5.0 (iPad; CPU OS 17_7 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.6 Mobile/15E148 Safari/604.1",
        3.0,
    ),
    (
        "Mozilla/5.0 (Android 14; Mobile; rv:133.0) Gecko/133.0 Firefox/133.0",
        2.0,
    ),
    (
        "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Mobile Safari/537.36 EdgA/131.0.2903.87",
        3.0,
    ),
];

/// ISO country code, locale, share of persons.
const COUNTRIES: &[(&str, &str, f64)] = &[
    ("US", "en-US", 28.0),
    ("DE", "de-DE", 12.0),
    ("GB", "en-GB", 9.0),
    ("FR", "fr-FR", 7.0),
    ("IN", "en-IN", 6.0),
    ("CA", "en-CA", 5.0),
    ("BR", "pt-BR", 4.0),
    ("NL", "nl-NL", 4.0),
    ("ES", "es-ES", 3.0),
    ("IT", "it-IT", 3.0),
    ("JP", "ja-JP", 3.0),
    ("AU", "en-AU", 3.0),
    ("SE", "sv-SE", 2.0),
    ("PL", "pl-PL", 2.0),
    ("MX", "es-MX", 2.0),
    ("CH", "de-CH", 1.5),
    ("AT", "de-AT", 1.5),
    ("BE", "nl-BE", 1.5),
    ("DK", "da-DK", 1.0),
    ("NO", "nb-NO", 1.0),
];

const SITE: &str = "https://shop.example";

#[derive(Debug, Clone, Copy, PartialEq)]
enum Referrer {
    Direct,
    Internal,
    External(&'static str),
}

const REFERRERS: &[(Referrer, f64)] = &[
    (Referrer::Direct, 40.0),
    (Referrer::External("https://www.google.com/"), 30.0),
    (Referrer::Internal, 12.0),
    (Referrer::External("https://www.bing.com/"), 6.0),
    (Referrer::External("https://t.co/"), 5.0),
    (Referrer::External("https://www.facebook.com/"), 4.0),
    (Referrer::External("https://duckduckgo.com/"), 3.0),
];

/// Query strings of the 10% of page views that carry UTM parameters.
const CAMPAIGNS: &[&str] = &[
    "?utm_source=newsletter&utm_medium=email&utm_campaign=black_friday",
    "?utm_source=google&utm_medium=cpc&utm_campaign=brand",
    "?utm_source=facebook&utm_medium=social&utm_campaign=winter_sale",
    "?utm_source=partner_blog&utm_medium=referral&utm_campaign=launch",
    "?utm_source=newsletter&utm_medium=email&utm_campaign=weekly_digest",
];

const VIDEO_LABELS: &[&str] = &[
    "intro",
    "product-tour",
    "how-to-size",
    "unboxing",
    "black-friday-teaser",
    "customer-story",
];

const SIGNUP_METHODS: &[&str] = &["email", "google", "github"];
const LOGIN_METHODS: &[&str] = &["password", "google", "magic_link"];

/// Plan, share of purchases, value range in cents.
const PLANS: &[(&str, f64, u64, u64)] = &[
    ("free", 0.50, 100, 5_000),
    ("pro", 0.35, 2_000, 20_000),
    ("team", 0.15, 10_000, 50_000),
];

/// About 200 page paths, the most popular first.
pub(crate) fn page_paths() -> Vec<String> {
    let mut paths: Vec<String> = [
        "/",
        "/products",
        "/pricing",
        "/cart",
        "/checkout",
        "/login",
        "/signup",
        "/account",
        "/search",
        "/about",
        "/blog",
        "/help",
        "/contact",
        "/careers",
        "/legal/privacy",
        "/legal/terms",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    let categories = [
        "shoes",
        "shirts",
        "jackets",
        "bags",
        "hats",
        "socks",
        "watches",
        "sunglasses",
    ];
    paths.extend(categories.iter().map(|c| format!("/products/{c}")));
    for n in 1..=20 {
        paths.extend(
            categories
                .iter()
                .map(|c| format!("/products/{c}/{c}-{n:03}")),
        );
    }
    for n in 1..=16 {
        paths.push(format!("/blog/2026/post-{n:02}"));
    }
    paths
}

// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Pageview,
    Video,
    Signup,
    Login,
    Purchase,
}

impl Kind {
    const ALL: [Kind; 5] = [
        Kind::Pageview,
        Kind::Video,
        Kind::Signup,
        Kind::Login,
        Kind::Purchase,
    ];

    fn name(self) -> &'static str {
        match self {
            Kind::Pageview => "pageview",
            // The origin's shape: Tally names the event after its `action`.
            Kind::Video => "play",
            Kind::Signup => "signup",
            Kind::Login => "login",
            Kind::Purchase => "purchase",
        }
    }
}

/// A follow-up event a funnel has scheduled: (due time, person, is it the purchase).
type Pending = Reverse<(i64, u32, bool)>;

#[derive(Debug, Clone, Copy)]
struct Person {
    /// Distinct for every rank (a bijection of it): the source of the person's ids.
    key: u64,
    ua: u8,
    country: u8,
    anonymous: bool,
}

/// Produces the events one by one, in time order.
#[derive(Debug)]
pub(crate) struct Generator {
    rng: Rng,
    start_ms: i64,
    /// `YYYY-MM-DDT` of each day.
    day_prefixes: Vec<[u8; 11]>,
    hour_counts: Vec<u64>,
    next_hour: usize,
    /// Sorted millisecond offsets of the events of the current hour.
    offsets: Vec<u32>,
    offset_pos: usize,
    hour_start_ms: i64,
    persons: Vec<Person>,
    person_table: AliasTable,
    signed_up: Vec<bool>,
    paths: Vec<String>,
    path_table: AliasTable,
    referrer_table: AliasTable,
    pending: BinaryHeap<Pending>,
    message_salt: u64,
    index: u64,
    kinds: [u64; 5],
}

impl Generator {
    pub(crate) fn new(events: u64, days: u32, seed: u64, end_ms: i64) -> anyhow::Result<Self> {
        if days == 0 || days > 3650 {
            bail!("--days must be between 1 and 3650");
        }
        let start_ms = end_ms - i64::from(days) * DAY_MS;
        let day_prefixes = (0..i64::from(days))
            .map(|d| {
                let t = DateTime::<Utc>::from_timestamp_millis(start_ms + d * DAY_MS)
                    .context("date out of range")?;
                let s = t.format("%Y-%m-%dT").to_string();
                let mut p = [0u8; 11];
                p.copy_from_slice(s.as_bytes());
                Ok(p)
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let mut rng = Rng::new(seed, 0);
        let hour_counts = hour_counts(events, days, start_ms, &mut Rng::new(seed, 1))?;

        let n_persons = (events / 20).clamp(1, u64::from(u32::MAX)) as usize;
        let person_salt = mix64(seed ^ 0x7065_7273_6f6e_7321);
        let ua_table = AliasTable::new(&USER_AGENTS.iter().map(|u| u.1).collect::<Vec<_>>());
        let country_table = AliasTable::new(&COUNTRIES.iter().map(|c| c.2).collect::<Vec<_>>());
        let mut person_rng = Rng::new(seed, 2);
        let persons = (0..n_persons as u64)
            .map(|rank| Person {
                key: mix64(rank ^ person_salt),
                ua: ua_table.sample(&mut person_rng) as u8,
                country: country_table.sample(&mut person_rng) as u8,
                anonymous: rank != 0 && person_rng.chance(0.3),
            })
            .collect::<Vec<_>>();
        let person_table = AliasTable::new(&zipf_weights(n_persons, 2.7, 1.0));
        let paths = page_paths();
        let path_table = AliasTable::new(&zipf_weights(paths.len(), 1.0, 1.0));
        let referrer_table = AliasTable::new(&REFERRERS.iter().map(|r| r.1).collect::<Vec<_>>());
        // Keep the first draws of the main stream independent of the tables above.
        rng.next_u64();
        Ok(Self {
            rng,
            start_ms,
            day_prefixes,
            hour_counts,
            next_hour: 0,
            offsets: Vec::new(),
            offset_pos: 0,
            hour_start_ms: start_ms,
            signed_up: vec![false; persons.len()],
            persons,
            person_table,
            paths,
            path_table,
            referrer_table,
            pending: BinaryHeap::new(),
            message_salt: mix64(seed ^ 0x6d65_7373_6167_6573),
            index: 0,
            kinds: [0; 5],
        })
    }

    /// Appends the next event and a newline to `out`; false when all events were produced.
    pub(crate) fn next_event(&mut self, out: &mut Vec<u8>) -> bool {
        while self.offset_pos == self.offsets.len() {
            let Some(&count) = self.hour_counts.get(self.next_hour) else {
                return false;
            };
            self.hour_start_ms = self.start_ms + self.next_hour as i64 * HOUR_MS;
            self.next_hour += 1;
            self.offsets.clear();
            for _ in 0..count {
                self.offsets.push(self.rng.below(HOUR_MS as u64) as u32);
            }
            self.offsets.sort_unstable();
            self.offset_pos = 0;
        }
        let t = self.hour_start_ms + i64::from(self.offsets[self.offset_pos]);
        self.offset_pos += 1;

        // A follow-up that is due takes this slot (and its time), so the stream stays sorted.
        let due = self
            .pending
            .peek()
            .is_some_and(|Reverse((due, _, _))| *due <= t);
        let (p, kind, from_funnel) = match due.then(|| self.pending.pop()).flatten() {
            Some(Reverse((_, p, purchase))) => {
                let kind = if purchase {
                    Kind::Purchase
                } else {
                    Kind::Login
                };
                (p as usize, kind, true)
            }
            None => {
                let p = self.person_table.sample(&mut self.rng);
                (p, self.free_kind(p), false)
            }
        };
        match kind {
            Kind::Signup => {
                self.signed_up[p] = true;
                if self.rng.chance(0.6) {
                    let due = t + self.rng.range(30 * MINUTE_MS as u64, 3 * DAY_MS as u64) as i64;
                    self.pending.push(Reverse((due, p as u32, false)));
                }
            }
            Kind::Login if from_funnel && self.rng.chance(0.5) => {
                let due = t + self.rng.range(10 * MINUTE_MS as u64, 4 * DAY_MS as u64) as i64;
                self.pending.push(Reverse((due, p as u32, true)));
            }
            _ => {}
        }
        self.write_event(out, t, p, kind);
        self.kinds[kind as usize] += 1;
        self.index += 1;
        true
    }

    /// The kind of an unscheduled event of person `p`.
    fn free_kind(&mut self, p: usize) -> Kind {
        let r = self.rng.f64();
        if self.persons[p].anonymous {
            return if r < 0.93 {
                Kind::Pageview
            } else {
                Kind::Video
            };
        }
        match r {
            r if r < 0.63 => Kind::Pageview,
            r if r < 0.68 => Kind::Video,
            r if r < 0.83 => Kind::Login,
            // One signup per person: a second one is a login.
            r if r < 0.92 && !self.signed_up[p] => Kind::Signup,
            r if r < 0.92 => Kind::Login,
            _ => Kind::Purchase,
        }
    }

    fn write_event(&mut self, out: &mut Vec<u8>, t: i64, p: usize, kind: Kind) {
        let person = self.persons[p];
        out.push(b'{');
        if kind == Kind::Video {
            out.extend_from_slice(b"\"category\":\"video\",\"action\":\"play\",\"label\":\"");
            out.extend_from_slice(pick(&mut self.rng, VIDEO_LABELS).as_bytes());
            out.extend_from_slice(b"\",\"value\":");
            push_u64(out, self.rng.range(5, 600));
        } else {
            out.extend_from_slice(b"\"event\":\"");
            out.extend_from_slice(kind.name().as_bytes());
            out.push(b'"');
        }
        if person.anonymous {
            out.extend_from_slice(b",\"anonymous_id\":\"");
            push_uuid(out, person.key, 0x616e_6f6e);
        } else {
            out.extend_from_slice(b",\"user_id\":\"");
            push_user_id(out, person.key);
        }
        out.extend_from_slice(b"\",\"timestamp\":\"");
        self.push_timestamp(out, t);
        out.extend_from_slice(b"\",\"message_id\":\"");
        push_uuid(
            out,
            mix64(self.index ^ self.message_salt),
            self.message_salt,
        );
        out.push(b'"');

        match kind {
            Kind::Signup => {
                out.extend_from_slice(b",\"properties\":{\"method\":\"");
                out.extend_from_slice(pick(&mut self.rng, SIGNUP_METHODS).as_bytes());
                out.extend_from_slice(b"\"}");
            }
            Kind::Login => {
                out.extend_from_slice(b",\"properties\":{\"method\":\"");
                out.extend_from_slice(pick(&mut self.rng, LOGIN_METHODS).as_bytes());
                out.extend_from_slice(b"\"}");
            }
            Kind::Purchase => {
                let r = self.rng.f64();
                let mut acc = 0.0;
                let mut plan = PLANS[PLANS.len() - 1];
                for candidate in PLANS {
                    acc += candidate.1;
                    if r < acc {
                        plan = *candidate;
                        break;
                    }
                }
                let cents = self.rng.range(plan.2, plan.3);
                out.extend_from_slice(b",\"properties\":{\"value\":");
                push_u64(out, cents / 100);
                out.push(b'.');
                push_two_digits(out, cents % 100);
                out.extend_from_slice(b",\"plan\":\"");
                out.extend_from_slice(plan.0.as_bytes());
                out.extend_from_slice(b"\"}");
            }
            Kind::Pageview | Kind::Video => {}
        }

        out.extend_from_slice(b",\"context\":{");
        if kind == Kind::Pageview {
            out.extend_from_slice(b"\"page\":{\"url\":\"");
            out.extend_from_slice(SITE.as_bytes());
            let path = self.path_table.sample(&mut self.rng);
            out.extend_from_slice(self.paths[path].as_bytes());
            if self.rng.chance(0.1) {
                out.extend_from_slice(pick(&mut self.rng, CAMPAIGNS).as_bytes());
            }
            out.push(b'"');
            match REFERRERS[self.referrer_table.sample(&mut self.rng)].0 {
                Referrer::Direct => {}
                Referrer::Internal => {
                    out.extend_from_slice(b",\"referrer\":\"");
                    out.extend_from_slice(SITE.as_bytes());
                    let from = self.path_table.sample(&mut self.rng);
                    out.extend_from_slice(self.paths[from].as_bytes());
                    out.push(b'"');
                }
                Referrer::External(url) => {
                    out.extend_from_slice(b",\"referrer\":\"");
                    out.extend_from_slice(url.as_bytes());
                    out.push(b'"');
                }
            }
            out.extend_from_slice(b"},");
        }
        let (country, locale, _) = COUNTRIES[usize::from(person.country)];
        out.extend_from_slice(b"\"user_agent\":\"");
        out.extend_from_slice(USER_AGENTS[usize::from(person.ua)].0.as_bytes());
        out.extend_from_slice(b"\",\"ip\":\"");
        push_ip(out, person.key);
        out.extend_from_slice(b"\",\"country\":\"");
        out.extend_from_slice(country.as_bytes());
        out.extend_from_slice(b"\",\"locale\":\"");
        out.extend_from_slice(locale.as_bytes());
        out.extend_from_slice(b"\"}}\n");
    }

    /// `YYYY-MM-DDTHH:MM:SS.mmmZ`.
    fn push_timestamp(&self, out: &mut Vec<u8>, t: i64) {
        let since = t - self.start_ms;
        let day = (since / DAY_MS) as usize;
        let ms = since % DAY_MS;
        out.extend_from_slice(&self.day_prefixes[day]);
        push_two_digits(out, (ms / HOUR_MS) as u64);
        out.push(b':');
        push_two_digits(out, (ms % HOUR_MS / MINUTE_MS) as u64);
        out.push(b':');
        push_two_digits(out, (ms % MINUTE_MS / 1000) as u64);
        out.push(b'.');
        let millis = (ms % 1000) as u64;
        out.push(b'0' + (millis / 100) as u8);
        push_two_digits(out, millis % 100);
        out.push(b'Z');
    }

    pub(crate) fn summary(&self) -> Summary {
        let mut id = Vec::new();
        push_user_id(&mut id, self.persons[0].key);
        Summary {
            persons: self.persons.len() as u64,
            most_active_user: String::from_utf8_lossy(&id).into_owned(),
            from: DateTime::<Utc>::from_timestamp_millis(self.start_ms)
                .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
                .unwrap_or_default(),
            kinds: Kind::ALL
                .iter()
                .map(|k| (k.name().to_owned(), self.kinds[*k as usize]))
                .collect(),
        }
    }
}

/// Events per hour of the range, summing to exactly `events`.
fn hour_counts(events: u64, days: u32, start_ms: i64, rng: &mut Rng) -> anyhow::Result<Vec<u64>> {
    let mut weights = Vec::with_capacity(days as usize * 24);
    for d in 0..i64::from(days) {
        let date = DateTime::<Utc>::from_timestamp_millis(start_ms + d * DAY_MS)
            .context("date out of range")?;
        let weekend = date.weekday().number_from_monday() >= 6;
        let growth = 1.0 + 0.3 * d as f64 / f64::from(days);
        let noise = 0.95 + 0.1 * rng.f64();
        let day_weight = growth * noise * if weekend { 0.8 } else { 1.0 };
        for h in 0..24 {
            let cycle = 1.0 + 0.8 * ((h as f64 - 8.0) * std::f64::consts::TAU / 24.0).sin();
            weights.push(day_weight * cycle);
        }
    }
    let total: f64 = weights.iter().sum();
    let mut cum = 0.0;
    let mut placed = 0u64;
    let last = weights.len() - 1;
    Ok(weights
        .iter()
        .enumerate()
        .map(|(i, w)| {
            cum += w;
            let target = if i == last {
                events
            } else {
                ((cum / total * events as f64).round() as u64).clamp(placed, events)
            };
            let n = target - placed;
            placed = target;
            n
        })
        .collect())
}

fn pick<'a>(rng: &mut Rng, items: &[&'a str]) -> &'a str {
    items[rng.below(items.len() as u64) as usize]
}

fn push_u64(out: &mut Vec<u8>, mut n: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[i..]);
}

fn push_two_digits(out: &mut Vec<u8>, n: u64) {
    out.push(b'0' + (n / 10 % 10) as u8);
    out.push(b'0' + (n % 10) as u8);
}

const HEX: &[u8; 16] = b"0123456789abcdef";

fn push_hex(out: &mut Vec<u8>, v: u64, digits: u32) {
    for i in (0..digits).rev() {
        out.push(HEX[((v >> (i * 4)) & 0xf) as usize]);
    }
}

/// `u_` and 16 hex digits.
fn push_user_id(out: &mut Vec<u8>, key: u64) {
    out.extend_from_slice(b"u_");
    push_hex(out, key, 16);
}

/// A version-4-shaped UUID, as text, holding all 64 bits of `unique` (so distinct values give
/// distinct UUIDs) and 58 bits derived from it and `salt`.
fn push_uuid(out: &mut Vec<u8>, unique: u64, salt: u64) {
    let (hi, lo) = uuid_bits(unique, salt);
    push_hex(out, hi >> 32, 8);
    out.push(b'-');
    push_hex(out, (hi >> 16) & 0xffff, 4);
    out.push(b'-');
    push_hex(out, hi & 0xffff, 4);
    out.push(b'-');
    push_hex(out, lo >> 48, 4);
    out.push(b'-');
    push_hex(out, lo & 0xffff_ffff_ffff, 12);
}

fn uuid_bits(unique: u64, salt: u64) -> (u64, u64) {
    // 60 bits of `unique` around the version nibble, its 4 low bits at the end of `lo`.
    let x = unique >> 4;
    let hi = ((x >> 12) << 16) | (0x4 << 12) | (x & 0xfff);
    let r = mix64(unique ^ salt);
    let lo = 0x8000_0000_0000_0000 | (r & 0x3fff_ffff_ffff_fff0) | (unique & 0xf);
    (hi, lo)
}

/// A public-looking IPv4 address derived from the person's key.
fn push_ip(out: &mut Vec<u8>, key: u64) {
    let h = mix64(key ^ 0x6970_7634);
    let first = match 11 + h % 200 {
        127 => 128,
        n => n,
    };
    push_u64(out, first);
    for shift in [8, 16, 24] {
        out.push(b'.');
        push_u64(out, (h >> shift) & 0xff);
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::io::Read;

    use super::*;

    #[test]
    fn the_end_is_a_utc_midnight() {
        assert_eq!(end_millis(END_RFC3339).expect("the default"), END_UNIX_MS);
        assert!(end_millis("2026-11-20T12:00:00Z").is_err());
        assert!(end_millis("2026-11-20T00:00:00+01:00").is_err());
        assert!(end_millis("tomorrow").is_err());
    }

    fn events(n: u64, days: u32, seed: u64) -> Vec<serde_json::Value> {
        let mut g = Generator::new(n, days, seed, END_UNIX_MS).expect("generator");
        let mut out = Vec::new();
        while g.next_event(&mut out) {}
        out.split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| serde_json::from_slice(l).expect("every line is JSON"))
            .collect()
    }

    #[test]
    fn end_constant_matches_the_date() {
        let end = DateTime::parse_from_rfc3339(END_RFC3339).expect("valid");
        assert_eq!(end.timestamp_millis(), END_UNIX_MS);
    }

    #[test]
    fn vocabularies_need_no_json_escaping() {
        let mut all: Vec<String> = page_paths();
        all.extend(USER_AGENTS.iter().map(|u| u.0.to_owned()));
        all.extend(
            COUNTRIES
                .iter()
                .flat_map(|c| [c.0.to_owned(), c.1.to_owned()]),
        );
        all.extend(CAMPAIGNS.iter().map(|s| (*s).to_owned()));
        all.extend(VIDEO_LABELS.iter().map(|s| (*s).to_owned()));
        all.extend(
            SIGNUP_METHODS
                .iter()
                .chain(LOGIN_METHODS)
                .map(|s| (*s).to_owned()),
        );
        all.extend(PLANS.iter().map(|p| p.0.to_owned()));
        for r in REFERRERS {
            if let Referrer::External(u) = r.0 {
                all.push(u.to_owned());
            }
        }
        for s in all {
            assert_eq!(
                serde_json::to_string(&s).expect("string"),
                format!("\"{s}\"")
            );
        }
    }

    #[test]
    fn there_are_about_200_distinct_paths() {
        let paths = page_paths();
        let distinct: HashSet<&String> = paths.iter().collect();
        assert_eq!(distinct.len(), paths.len());
        assert!((190..=210).contains(&paths.len()), "{}", paths.len());
    }

    #[test]
    fn same_seed_same_bytes_other_seed_other_bytes() {
        let dir = tempfile::tempdir().expect("temp dir");
        let a = dir.path().join("a.ndjson.gz");
        let b = dir.path().join("b.ndjson.gz");
        let c = dir.path().join("c.ndjson.gz");
        // Enough events for several chunks.
        let sa = write_file(&a, 30_000, 10, 7, END_UNIX_MS).expect("a");
        let sb = write_file(&b, 30_000, 10, 7, END_UNIX_MS).expect("b");
        write_file(&c, 30_000, 10, 8, END_UNIX_MS).expect("c");
        let (a, b, c) = (
            std::fs::read(a).expect("read"),
            std::fs::read(b).expect("read"),
            std::fs::read(c).expect("read"),
        );
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(sa, sb);

        let mut text = String::new();
        flate2::read::MultiGzDecoder::new(&a[..])
            .read_to_string(&mut text)
            .expect("valid gzip");
        assert_eq!(text.lines().count(), 30_000);
    }

    #[test]
    fn exact_count_sorted_in_range_unique_ids() {
        let evs = events(20_000, 30, 1);
        assert_eq!(evs.len(), 20_000);
        let start = END_UNIX_MS - 30 * DAY_MS;
        let mut last = i64::MIN;
        let mut ids = HashSet::new();
        for e in &evs {
            let ts = e["timestamp"].as_str().expect("timestamp");
            let t = DateTime::parse_from_rfc3339(ts)
                .expect("RFC 3339")
                .timestamp_millis();
            assert!(t >= start && t < END_UNIX_MS, "{ts}");
            assert!(t >= last, "sorted");
            last = t;
            let id = e["message_id"].as_str().expect("message_id");
            assert_eq!(id.len(), 36);
            assert_eq!(&id[14..15], "4", "version 4: {id}");
            assert!(
                matches!(&id[19..20], "8" | "9" | "a" | "b"),
                "variant: {id}"
            );
            assert!(ids.insert(id.to_owned()), "duplicate {id}");
            assert!(e["user_id"].is_string() ^ e["anonymous_id"].is_string());
            assert!(e["context"]["user_agent"].is_string());
        }
    }

    #[test]
    fn uuids_are_distinct_for_distinct_inputs() {
        let mut seen = HashSet::new();
        for i in 0..50_000u64 {
            assert!(seen.insert(uuid_bits(mix64(i ^ 99), 99)));
        }
        // Two inputs differing only in low bits.
        assert_ne!(uuid_bits(0x10, 1), uuid_bits(0x11, 1));
        assert_ne!(uuid_bits(1 << 63, 1), uuid_bits(0, 1));
    }

    #[test]
    fn the_mix_is_realistic() {
        let evs = events(50_000, 30, 3);
        let n = evs.len() as f64;
        let share = |name: &str| {
            evs.iter()
                .filter(|e| e["event"] == name || e["action"] == name)
                .count() as f64
                / n
        };
        let pv = share("pageview");
        assert!((0.66..0.76).contains(&pv), "pageviews {pv}");
        let video = share("play");
        assert!((0.03..0.07).contains(&video), "videos {video}");
        for name in ["signup", "login", "purchase"] {
            assert!(share(name) > 0.005, "{name}");
        }
        let anonymous_persons: HashSet<&str> = evs
            .iter()
            .filter_map(|e| e["anonymous_id"].as_str())
            .collect();
        let users: HashSet<&str> = evs.iter().filter_map(|e| e["user_id"].as_str()).collect();
        let anon_share =
            anonymous_persons.len() as f64 / (anonymous_persons.len() + users.len()) as f64;
        assert!(
            (0.2..0.4).contains(&anon_share),
            "anonymous persons {anon_share}"
        );

        // The busiest person is the rank-0 user the summary names.
        let mut per_user: BTreeMap<&str, u32> = BTreeMap::new();
        for u in evs.iter().filter_map(|e| e["user_id"].as_str()) {
            *per_user.entry(u).or_default() += 1;
        }
        let top = per_user.iter().max_by_key(|(_, n)| **n).map(|(u, _)| *u);
        let g = Generator::new(50_000, 30, 3, END_UNIX_MS).expect("generator");
        assert_eq!(top, Some(g.summary().most_active_user.as_str()));

        // Purchases carry a value within 1..500 and a plan.
        for e in evs.iter().filter(|e| e["event"] == "purchase") {
            let v = e["properties"]["value"].as_f64().expect("value");
            assert!((1.0..=500.0).contains(&v), "{v}");
            assert!(matches!(
                e["properties"]["plan"].as_str(),
                Some("free" | "pro" | "team")
            ));
        }

        // UTM parameters on about 10% of page views.
        let pvs: Vec<&serde_json::Value> =
            evs.iter().filter(|e| e["event"] == "pageview").collect();
        let utm = pvs
            .iter()
            .filter(|e| {
                e["context"]["page"]["url"]
                    .as_str()
                    .is_some_and(|u| u.contains("utm_"))
            })
            .count() as f64
            / pvs.len() as f64;
        assert!((0.08..0.12).contains(&utm), "utm {utm}");
    }

    #[test]
    fn signups_lead_to_logins_and_purchases() {
        let evs = events(50_000, 30, 5);
        let mut signup_at: BTreeMap<String, i64> = BTreeMap::new();
        let mut login_after = 0;
        let mut purchase_after = 0;
        let mut seen_login: HashSet<String> = HashSet::new();
        let mut seen_purchase: HashSet<String> = HashSet::new();
        for e in &evs {
            let Some(u) = e["user_id"].as_str() else {
                continue;
            };
            let t = DateTime::parse_from_rfc3339(e["timestamp"].as_str().unwrap_or_default())
                .expect("timestamp")
                .timestamp_millis();
            match e["event"].as_str() {
                Some("signup") => {
                    assert!(
                        signup_at.insert(u.to_owned(), t).is_none(),
                        "one signup per person"
                    );
                }
                Some("login") if signup_at.contains_key(u) && seen_login.insert(u.to_owned()) => {
                    login_after += 1;
                }
                Some("purchase")
                    if signup_at.contains_key(u) && seen_purchase.insert(u.to_owned()) =>
                {
                    purchase_after += 1;
                }
                _ => {}
            }
        }
        let signups = signup_at.len();
        assert!(signups > 100, "{signups}");
        assert!(
            login_after as f64 > 0.5 * signups as f64,
            "{login_after} of {signups}"
        );
        assert!(
            purchase_after as f64 > 0.25 * signups as f64,
            "{purchase_after} of {signups}"
        );
    }

    #[test]
    fn hour_counts_sum_and_follow_the_daily_cycle() {
        let counts = hour_counts(1_000_003, 7, END_UNIX_MS - 7 * DAY_MS, &mut Rng::new(1, 1))
            .expect("counts");
        assert_eq!(counts.len(), 7 * 24);
        assert_eq!(counts.iter().sum::<u64>(), 1_000_003);
        assert!(
            counts[14] > 3 * counts[2],
            "{} vs {}",
            counts[14],
            counts[2]
        );
        let zero =
            hour_counts(0, 3, END_UNIX_MS - 3 * DAY_MS, &mut Rng::new(1, 1)).expect("counts");
        assert_eq!(zero.iter().sum::<u64>(), 0);
    }
}
