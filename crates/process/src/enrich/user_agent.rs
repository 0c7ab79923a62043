//! Browser, OS and device type from a `User-Agent` string.
//!
//! Parsing uses the [`ua_parser`] crate (uap-rust) with uap-core's
//! `regexes.yaml`, vendored in `crates/process/uap/` (version
//! [`UAP_CORE_VERSION`], Apache-2.0, licence next to it) and embedded in the
//! binary. Names are uap-core's: `"Chrome"`, `"Chrome Mobile"`,
//! `"Mobile Safari"`, `"Firefox"`, `"Edge"`, `"Samsung Internet"`,
//! `"Windows"`, `"Mac OS X"`, `"iOS"`, `"Android"`, `"Linux"`; uap's
//! catch-all `"Other"` becomes `None`.
//!
//! # Cost and caching
//!
//! Building a [`UserAgentParser`] compiles about a thousand regexes and
//! takes a noticeable fraction of a second (much more in an unoptimised
//! build): build one per process and share it (`Arc<UserAgentParser>`; it
//! is `Send + Sync`). A cold parse costs tens of microseconds, so
//! [`UserAgentParser::parse`] goes through a bounded cache of results,
//! shared as `Arc<UserAgentInfo>`:
//!
//! * 16 shards, each a `parking_lot::Mutex<HashMap>` holding at most
//!   `capacity / 16` (rounded up) entries; the shard is picked by hash so
//!   concurrent workers rarely contend.
//! * When a shard is full it is **cleared** before inserting. This was
//!   chosen over an LRU because user agents are heavily skewed (a few
//!   hundred strings cover most traffic): after a clear the hot strings come
//!   back after one re-parse each, while a hit stays a read under a
//!   short lock with no bookkeeping (an LRU writes on every hit). Memory is
//!   bounded by `capacity` × (key ≤ [`MAX_UA_LEN`] bytes + result).
//! * Parsing happens outside the lock; two threads missing on the same
//!   string at once both parse it, which is harmless.
//!
//! Inputs are trimmed and cut to [`MAX_UA_LEN`] bytes (at a character
//! boundary) before parsing and caching: real user agents are far shorter,
//! and the cut bounds both the cache's memory and the cost of hostile
//! input. An empty user agent gives [`UserAgentInfo::default`] and is never
//! cached.
//!
//! # Device type
//!
//! First match wins:
//!
//! 1. [`DeviceType::Bot`] (and `is_bot`): uap's device family `"Spider"`,
//!    or a bot token in the user agent: a word ending in `bot`
//!    (`Googlebot/`, `bingbot`, `Slackbot-`; not `Cubot` phones),
//!    `crawl`, `spider`, `slurp`, `preview`, headless browsers and
//!    Lighthouse, and HTTP libraries and tools (`curl/`, `Wget/`,
//!    `python-requests`, `Go-http-client`, `axios/`, `node-fetch`, …).
//! 2. [`DeviceType::Unknown`] for TVs, streaming sticks and consoles
//!    (`SmartTV`, `Android TV`, `AFT…` Fire TV, `CrKey`, `Roku`, `Web0S`,
//!    `PlayStation`, `Xbox`, `Nintendo`), which are neither phones nor
//!    desktops.
//! 3. [`DeviceType::Tablet`]: device family `iPad`, `Kindle…` or
//!    containing `Tablet` (uap's `Generic Tablet`, brand
//!    `Generic_Android_Tablet`), or a `Tablet` token (but not Windows'
//!    `Tablet PC`).
//! 4. [`DeviceType::Mobile`]: device family `iPhone`, `iPod`,
//!    `Generic Smartphone` or `Generic Feature Phone`, a `Mobi` token
//!    (`Mobile`, `Opera Mobi`), or `Opera Mini`.
//! 5. [`DeviceType::Tablet`]: any other Android (Android tablets leave out
//!    the `Mobile` token that phones send).
//! 6. [`DeviceType::Mobile`]: another mobile OS (iOS, Windows
//!    Phone/Mobile, BlackBerry, KaiOS, Symbian, Firefox OS, …).
//! 7. [`DeviceType::Desktop`] for a desktop OS: Windows, Mac OS X, Linux
//!    and its distributions, Chrome OS, the BSDs, Solaris.
//! 8. [`DeviceType::Unknown`] otherwise.
//!
//! iPads running iPadOS 13+ send a Mac user agent by default and are
//! counted as desktops; Windows 11 sends `Windows NT 10.0` and is reported
//! as Windows `10`. Both are limits of the user agent itself (client
//! hints would be needed).

use std::collections::HashMap;
use std::fmt;
use std::hash::BuildHasher;
use std::sync::Arc;

use parking_lot::Mutex;

/// uap-core's `regexes.yaml`, as embedded.
pub const REGEXES_YAML: &str = include_str!("../../uap/regexes.yaml");

/// Version of the npm package `uap-core` that [`REGEXES_YAML`] comes from.
pub const UAP_CORE_VERSION: &str = "0.18.0";

/// Default number of distinct user agents [`UserAgentParser::parse`] caches.
pub const DEFAULT_CACHE_CAPACITY: usize = 10_000;

/// User agents are cut to this many bytes before parsing and caching.
pub const MAX_UA_LEN: usize = 1024;

const SHARDS: usize = 16;

/// Broad class of device a user agent runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum DeviceType {
    /// Laptops and desktop computers.
    Desktop,
    /// Phones.
    Mobile,
    /// Tablets.
    Tablet,
    /// Crawlers, monitors, HTTP libraries and headless browsers.
    Bot,
    /// Anything else, and unparseable user agents.
    #[default]
    Unknown,
}

impl DeviceType {
    /// Every device type, in declaration order.
    pub const ALL: [DeviceType; 5] = [
        DeviceType::Desktop,
        DeviceType::Mobile,
        DeviceType::Tablet,
        DeviceType::Bot,
        DeviceType::Unknown,
    ];

    /// Stable lowercase name, as stored: `"desktop"`, `"mobile"`,
    /// `"tablet"`, `"bot"`, `"unknown"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            DeviceType::Desktop => "desktop",
            DeviceType::Mobile => "mobile",
            DeviceType::Tablet => "tablet",
            DeviceType::Bot => "bot",
            DeviceType::Unknown => "unknown",
        }
    }

    /// Inverse of [`as_str`](Self::as_str).
    pub fn from_name(name: &str) -> Option<DeviceType> {
        DeviceType::ALL.into_iter().find(|d| d.as_str() == name)
    }
}

impl fmt::Display for DeviceType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a user agent string says about the visitor's software.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UserAgentInfo {
    /// Browser (or client) family: `"Chrome"`, `"Mobile Safari"`,
    /// `"Googlebot"`, `"curl"`.
    pub browser: Option<String>,
    /// `"major.minor"`, or `"major"` when there is no minor version.
    pub browser_version: Option<String>,
    /// OS family: `"Windows"`, `"Mac OS X"`, `"iOS"`, `"Android"`.
    pub os: Option<String>,
    /// `"major.minor"`, or `"major"` when there is no minor version.
    pub os_version: Option<String>,
    /// Device class, see the [module documentation](self).
    pub device_type: DeviceType,
    /// Whether the client is an automated one; implies
    /// `device_type == DeviceType::Bot`.
    pub is_bot: bool,
}

/// Error loading user agent regexes, see [`UserAgentParser::from_yaml`].
#[derive(Debug, thiserror::Error)]
pub enum UaParserError {
    /// The YAML does not have uap-core's `regexes.yaml` shape.
    #[error("invalid user agent regexes YAML: {0}")]
    Yaml(#[from] serde_yaml::Error),
    /// A regex or its replacement template is invalid.
    #[error("invalid user agent regex: {0}")]
    Regex(#[from] ua_parser::Error),
}

/// User agent parser with a bounded result cache, see the
/// [module documentation](self).
pub struct UserAgentParser {
    extractor: ua_parser::Extractor<'static>,
    cache: Cache,
    empty: Arc<UserAgentInfo>,
}

impl fmt::Debug for UserAgentParser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UserAgentParser")
            .field("cache_capacity", &self.cache.capacity())
            .field("cached", &self.cached_len())
            .finish_non_exhaustive()
    }
}

impl Default for UserAgentParser {
    fn default() -> Self {
        Self::new()
    }
}

impl UserAgentParser {
    /// Builds a parser from the embedded [`REGEXES_YAML`] with a cache of
    /// [`DEFAULT_CACHE_CAPACITY`] entries.
    ///
    /// Slow (regex compilation): build once and share.
    ///
    /// # Panics
    ///
    /// Only if the embedded `regexes.yaml` is invalid, which this crate's
    /// tests rule out.
    pub fn new() -> Self {
        match Self::from_yaml(REGEXES_YAML) {
            Ok(parser) => parser,
            Err(e) => panic!("embedded uap-core regexes.yaml failed to load: {e}"),
        }
    }

    /// Builds a parser from a `regexes.yaml` in uap-core's format, for
    /// instance a newer one than the embedded copy.
    pub fn from_yaml(yaml: &str) -> Result<Self, UaParserError> {
        let regexes: ua_parser::Regexes<'static> = serde_yaml::from_str(yaml)?;
        let extractor = ua_parser::Extractor::try_from(regexes)?;
        Ok(Self {
            extractor,
            cache: Cache::new(DEFAULT_CACHE_CAPACITY),
            empty: Arc::new(UserAgentInfo::default()),
        })
    }

    /// Replaces the cache by an empty one holding up to `capacity`
    /// distinct user agents; `0` disables caching.
    #[must_use]
    pub fn with_cache_capacity(mut self, capacity: usize) -> Self {
        self.cache = Cache::new(capacity);
        self
    }

    /// Parses a user agent, through the cache. Never panics.
    pub fn parse(&self, ua: &str) -> Arc<UserAgentInfo> {
        let ua = clip(ua);
        if ua.is_empty() {
            return Arc::clone(&self.empty);
        }
        if self.cache.capacity() == 0 {
            return Arc::new(self.parse_clipped(ua));
        }
        let shard = self.cache.shard(ua);
        if let Some(hit) = shard.lock().get(ua) {
            return Arc::clone(hit);
        }
        let info = Arc::new(self.parse_clipped(ua));
        let mut map = shard.lock();
        if map.len() >= self.cache.per_shard {
            map.clear();
        }
        map.insert(ua.into(), Arc::clone(&info));
        info
    }

    /// Parses a user agent without touching the cache (same trimming and
    /// clipping as [`parse`](Self::parse)).
    pub fn parse_uncached(&self, ua: &str) -> UserAgentInfo {
        let ua = clip(ua);
        if ua.is_empty() {
            return UserAgentInfo::default();
        }
        self.parse_clipped(ua)
    }

    /// Number of user agents currently cached.
    pub fn cached_len(&self) -> usize {
        self.cache.shards.iter().map(|s| s.lock().len()).sum()
    }

    fn parse_clipped(&self, ua: &str) -> UserAgentInfo {
        let e = &self.extractor;
        let browser = e.ua.extract(ua);
        let os = e.os.extract(ua);
        let device = e.dev.extract(ua);

        let browser_name = browser.as_ref().and_then(|b| known(&b.family));
        let browser_version = browser.as_ref().and_then(|b| version(b.major, b.minor));
        let os_name = os.as_ref().and_then(|o| known(&o.os));
        let os_version = os
            .as_ref()
            .and_then(|o| version(o.major.as_deref(), o.minor.as_deref()));
        let device_family = device.as_ref().map_or("", |d| &d.device);
        let device_brand = device
            .as_ref()
            .and_then(|d| d.brand.as_deref())
            .unwrap_or("");

        let lower = ua.to_ascii_lowercase();
        let is_bot = device_family == "Spider" || has_bot_token(&lower);
        let device_type = if is_bot {
            DeviceType::Bot
        } else {
            device_type(&lower, os_name.as_deref(), device_family, device_brand)
        };
        UserAgentInfo {
            browser: browser_name,
            browser_version,
            os: os_name,
            os_version,
            device_type,
            is_bot,
        }
    }
}

/// Trims and cuts to at most [`MAX_UA_LEN`] bytes at a char boundary.
fn clip(ua: &str) -> &str {
    let ua = ua.trim();
    if ua.len() <= MAX_UA_LEN {
        return ua;
    }
    let mut end = MAX_UA_LEN;
    while !ua.is_char_boundary(end) {
        end -= 1;
    }
    ua[..end].trim_end()
}

/// uap's placeholder `"Other"` (and empty names) mean "unknown".
fn known(name: &str) -> Option<String> {
    let name = name.trim();
    (!name.is_empty() && name != "Other").then(|| name.to_owned())
}

fn version(major: Option<&str>, minor: Option<&str>) -> Option<String> {
    let major = major.map(str::trim).filter(|m| !m.is_empty())?;
    Some(match minor.map(str::trim).filter(|m| !m.is_empty()) {
        Some(minor) => format!("{major}.{minor}"),
        None => major.to_owned(),
    })
}

/// Bot heuristics on the lowercased user agent, complementing uap's
/// `Spider` device family (whose catch-all only looks at the first 100
/// characters and misses HTTP libraries).
fn has_bot_token(lower: &str) -> bool {
    const TOKENS: &[&str] = &[
        "crawl",
        "spider",
        "slurp",
        "preview",
        "headless",
        "lighthouse",
        "pagespeed",
        "phantomjs",
        "selenium",
        "puppeteer",
        "playwright",
        "facebookexternalhit",
        "meta-externalagent",
        "chatgpt-user",
        "perplexity",
        "google-",
        "curl/",
        "wget/",
        "libwww",
        "python-",
        "python/",
        "aiohttp",
        "httpx",
        "go-http-client",
        "java/",
        "apache-httpclient",
        "axios/",
        "node-fetch",
        "undici",
        "postmanruntime",
        "insomnia",
        "httpie",
        "scrapy",
        "ruby",
        "guzzlehttp",
        "reqwest",
        "hyper/",
    ];
    if TOKENS.iter().any(|t| lower.contains(t)) {
        return true;
    }
    // A word ending in "bot": "googlebot/2.1", "bingbot", "slackbot-",
    // "robot", but not "cubot" (a phone brand) nor "botanic".
    let bytes = lower.as_bytes();
    lower.match_indices("bot").any(|(i, _)| {
        let next_is_letter = bytes.get(i + 3).is_some_and(u8::is_ascii_alphabetic);
        let cubot = i >= 2 && &bytes[i - 2..i] == b"cu";
        !next_is_letter && !cubot
    })
}

fn device_type(lower: &str, os: Option<&str>, device: &str, brand: &str) -> DeviceType {
    const TV_TOKENS: &[&str] = &[
        "smarttv",
        "smart-tv",
        "smart tv",
        "googletv",
        "android tv",
        "androidtv",
        "; aft",
        "crkey",
        "roku",
        "web0s",
        "webos.tv",
        "hbbtv",
        "bravia",
        "tizen",
        "playstation",
        "xbox",
        "nintendo",
    ];
    const MOBILE_OS: &[&str] = &[
        "iOS",
        "Android",
        "Windows Phone",
        "Windows Mobile",
        "BlackBerry OS",
        "KaiOS",
        "Firefox OS",
        "Symbian OS",
        "Symbian^3",
        "Symbian^3 Anna",
        "Symbian^3 Belle",
        "Nokia Series 40",
        "Nokia Series 30 Plus",
        "Sailfish",
        "Bada",
        "Brew MP",
        "webOS",
        "WatchOS",
    ];
    const DESKTOP_OS: &[&str] = &[
        "Windows",
        "Mac OS X",
        "Mac OS",
        "Linux",
        "Chrome OS",
        "Ubuntu",
        "Kubuntu",
        "Lubuntu",
        "Linux Mint",
        "Debian",
        "Fedora",
        "Red Hat",
        "CentOS",
        "SUSE",
        "openSUSE",
        "Gentoo",
        "Arch Linux",
        "Slackware",
        "Mageia",
        "PCLinuxOS",
        "FreeBSD",
        "OpenBSD",
        "NetBSD",
        "Solaris",
    ];

    if TV_TOKENS.iter().any(|t| lower.contains(t)) {
        return DeviceType::Unknown;
    }
    let tablet_token = lower.contains("tablet") && !lower.contains("tablet pc");
    if device == "iPad"
        || device.starts_with("Kindle")
        || device.contains("Tablet")
        || brand == "Generic_Android_Tablet"
        || tablet_token
    {
        return DeviceType::Tablet;
    }
    if matches!(
        device,
        "iPhone" | "iPod" | "iPod Touch" | "Generic Smartphone" | "Generic Feature Phone"
    ) || lower.contains("mobi")
        || lower.contains("opera mini")
    {
        return DeviceType::Mobile;
    }
    if os == Some("Android") {
        // Android tablets leave out the "Mobile" token phones send.
        return DeviceType::Tablet;
    }
    if os.is_some_and(|o| MOBILE_OS.contains(&o)) {
        return DeviceType::Mobile;
    }
    if let Some(os) = os
        && (DESKTOP_OS.contains(&os) || (os.starts_with("Windows") && !os.contains("CE")))
    {
        return DeviceType::Desktop;
    }
    DeviceType::Unknown
}

type Shard = Mutex<HashMap<Box<str>, Arc<UserAgentInfo>>>;

/// Sharded clear-on-full cache, see the module documentation.
struct Cache {
    shards: Box<[Shard]>,
    per_shard: usize,
    hasher: std::hash::RandomState,
}

impl Cache {
    fn new(capacity: usize) -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            per_shard: capacity.div_ceil(SHARDS),
            hasher: std::hash::RandomState::new(),
        }
    }

    fn capacity(&self) -> usize {
        self.per_shard * SHARDS
    }

    fn shard(&self, key: &str) -> &Shard {
        let h = self.hasher.hash_one(key);
        // The shard count is a power of two; the high bits are independent
        // of those the shard's own HashMap (with its own keys) uses.
        &self.shards[(h >> 60) as usize % SHARDS]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::sync::LazyLock;
    use std::time::Instant;

    static PARSER: LazyLock<UserAgentParser> = LazyLock::new(|| {
        let start = Instant::now();
        let p = UserAgentParser::new();
        eprintln!("UserAgentParser::new() took {:?}", start.elapsed());
        p
    });

    struct Case {
        ua: &'static str,
        browser: Option<&'static str>,
        major: Option<&'static str>,
        os: Option<&'static str>,
        device: DeviceType,
        bot: bool,
    }

    const fn case(
        ua: &'static str,
        browser: Option<&'static str>,
        major: Option<&'static str>,
        os: Option<&'static str>,
        device: DeviceType,
    ) -> Case {
        Case {
            ua,
            browser,
            major,
            os,
            device,
            bot: matches!(device, DeviceType::Bot),
        }
    }

    use DeviceType::*;

    const CASES: &[Case] = &[
        case(
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36",
            Some("Chrome"),
            Some("120"),
            Some("Windows"),
            Desktop,
        ),
        case(
            "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.2 Safari/605.1.15",
            Some("Safari"),
            Some("17"),
            Some("Mac OS X"),
            Desktop,
        ),
        case(
            "Mozilla/5.0 (iPhone; CPU iPhone OS 17_2_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.2 Mobile/15E148 Safari/604.1",
            Some("Mobile Safari"),
            Some("17"),
            Some("iOS"),
            Mobile,
        ),
        case(
            "Mozilla/5.0 (iPad; CPU OS 16_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/16.6 Mobile/15E148 Safari/604.1",
            Some("Mobile Safari"),
            Some("16"),
            Some("iOS"),
            Tablet,
        ),
        case(
            "Mozilla/5.0 (iPhone; CPU iPhone OS 17_2 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) CriOS/120.0.6099.119 Mobile/15E148 Safari/604.1",
            Some("Chrome Mobile iOS"),
            Some("120"),
            Some("iOS"),
            Mobile,
        ),
        case(
            "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Mobile Safari/537.36",
            Some("Chrome Mobile"),
            Some("120"),
            Some("Android"),
            Mobile,
        ),
        case(
            "Mozilla/5.0 (Linux; Android 13; SM-X700) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36",
            Some("Chrome"),
            Some("120"),
            Some("Android"),
            Tablet,
        ),
        case(
            "Mozilla/5.0 (Linux; Android 9; KFMAWI) AppleWebKit/537.36 (KHTML, like Gecko) Silk/120.3.1 like Chrome/120.0.6099.230 Safari/537.36",
            Some("Amazon Silk"),
            Some("120"),
            Some("Android"),
            Tablet,
        ),
        case(
            "Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0",
            Some("Firefox"),
            Some("121"),
            Some("Linux"),
            Desktop,
        ),
        case(
            "Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:109.0) Gecko/20100101 Firefox/115.0",
            Some("Firefox"),
            Some("115"),
            Some("Ubuntu"),
            Desktop,
        ),
        case(
            "Mozilla/5.0 (Android 14; Mobile; rv:121.0) Gecko/121.0 Firefox/121.0",
            Some("Firefox Mobile"),
            Some("121"),
            Some("Android"),
            Mobile,
        ),
        case(
            "Mozilla/5.0 (Android 14; Tablet; rv:121.0) Gecko/121.0 Firefox/121.0",
            Some("Firefox Mobile"),
            Some("121"),
            Some("Android"),
            Tablet,
        ),
        case(
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36 Edg/120.0.2210.91",
            Some("Edge"),
            Some("120"),
            Some("Windows"),
            Desktop,
        ),
        case(
            "Mozilla/5.0 (Linux; Android 13; SAMSUNG SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/23.0 Chrome/115.0.0.0 Mobile Safari/537.36",
            Some("Samsung Internet"),
            Some("23"),
            Some("Android"),
            Mobile,
        ),
        case(
            "Mozilla/5.0 (X11; CrOS x86_64 14541.0.0) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36",
            Some("Chrome"),
            Some("120"),
            Some("Chrome OS"),
            Desktop,
        ),
        case(
            "Mozilla/5.0 (Windows NT 6.1; WOW64; Trident/7.0; rv:11.0) like Gecko",
            Some("IE"),
            Some("11"),
            Some("Windows"),
            Desktop,
        ),
        case(
            "Mozilla/5.0 (Windows NT 6.1; WOW64; Trident/7.0; Tablet PC 2.0; rv:11.0) like Gecko",
            Some("IE"),
            Some("11"),
            Some("Windows"),
            Desktop,
        ),
        case(
            "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36 OPR/106.0.0.0",
            Some("Opera"),
            Some("106"),
            Some("Mac OS X"),
            Desktop,
        ),
        case(
            "Mozilla/5.0 (Linux; Android 12; CUBOT X50) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Mobile Safari/537.36",
            Some("Chrome Mobile"),
            Some("120"),
            Some("Android"),
            Mobile,
        ),
        // Bots and tools.
        case(
            "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
            Some("Googlebot"),
            Some("2"),
            None,
            Bot,
        ),
        case(
            "Mozilla/5.0 (Linux; Android 6.0.1; Nexus 5X Build/MMB29P) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.6099.216 Mobile Safari/537.36 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
            Some("Googlebot"),
            Some("2"),
            Some("Android"),
            Bot,
        ),
        case(
            "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
            Some("bingbot"),
            Some("2"),
            None,
            Bot,
        ),
        case("curl/8.4.0", Some("curl"), Some("8"), None, Bot),
        case("Wget/1.21.4", Some("Wget"), Some("1"), None, Bot),
        case(
            "python-requests/2.31.0",
            Some("Python Requests"),
            Some("2"),
            None,
            Bot,
        ),
        case(
            "Go-http-client/2.0",
            Some("Go-http-client"),
            Some("2"),
            None,
            Bot,
        ),
        case(
            "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/120.0.6099.71 Safari/537.36",
            Some("HeadlessChrome"),
            Some("120"),
            Some("Linux"),
            Bot,
        ),
        case(
            "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)",
            Some("FacebookBot"),
            Some("1"),
            None,
            Bot,
        ),
        case(
            "Opera/9.80 (Android; Opera Mini/36.2.2254/119.132; U; id) Presto/2.12.423 Version/12.16",
            Some("Opera Mini"),
            Some("36"),
            Some("Android"),
            Mobile,
        ),
        case(
            "Mozilla/5.0 (Linux; Android 14; Pixel Tablet) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36",
            Some("Chrome"),
            Some("120"),
            Some("Android"),
            Tablet,
        ),
        case(
            "Mozilla/5.0 (Linux; Android 13; Pixel 7 Build/TQ3A.230901.001; wv) AppleWebKit/537.36 (KHTML, like Gecko) Version/4.0 Chrome/119.0.6045.163 Mobile Safari/537.36",
            Some("Chrome Mobile WebView"),
            Some("119"),
            Some("Android"),
            Mobile,
        ),
        case(
            "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1_2 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 [FBAN/FBIOS;FBAV/442.0.0.36.112;FBBV/539089596;FBDV/iPhone14,5;FBMD/iPhone;FBSN/iOS;FBSV/17.1.2;FBSS/3;FBID/phone;FBLC/en_US;FBOP/5;FBRV/541212614]",
            Some("Facebook"),
            Some("442"),
            Some("iOS"),
            Mobile,
        ),
        case(
            "Mozilla/5.0 (Mobile; Nokia 8000 4G; rv:48.0) Gecko/48.0 Firefox/48.0 KAIOS/2.5.2",
            Some("Firefox Mobile"),
            Some("48"),
            Some("KaiOS"),
            Mobile,
        ),
        case(
            "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; GPTBot/1.0; +https://openai.com/gptbot)",
            Some("GPTBot"),
            Some("1"),
            None,
            Bot,
        ),
        case(
            "Mozilla/5.0 (Linux; Android 11; moto g power (2022)) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/119.0.0.0 Mobile Safari/537.36 Chrome-Lighthouse",
            Some("Chrome Mobile"),
            Some("119"),
            Some("Android"),
            Bot,
        ),
        // TVs and consoles.
        case(
            "Mozilla/5.0 (Linux; Android 9; AFTMM Build/PS7233; wv) AppleWebKit/537.36 (KHTML, like Gecko) Version/4.0 Chrome/108.0.5359.160 Mobile Safari/537.36",
            Some("Chrome Mobile WebView"),
            Some("108"),
            Some("Android"),
            Unknown,
        ),
        case(
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64; Xbox; Xbox One) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/70.0.3538.102 Safari/537.36 Edge/18.19041",
            Some("Edge"),
            Some("18"),
            Some("Windows"),
            Unknown,
        ),
        case(
            "Mozilla/5.0 (SMART-TV; Linux; Tizen 6.0) AppleWebKit/537.36 (KHTML, like Gecko) 76.0.3809.146/6.0 TV Safari/537.36",
            Some("Safari"),
            None,
            Some("Tizen"),
            Unknown,
        ),
        // Garbage.
        case("", None, None, None, Unknown),
        case("   ", None, None, None, Unknown),
        case("-", None, None, None, Unknown),
        case("\u{0}\u{1}\u{ffff}", None, None, None, Unknown),
        case("Mozilla/5.0", None, None, None, Unknown),
    ];

    #[test]
    fn real_world_user_agents() {
        let mut failures = Vec::new();
        for c in CASES {
            let got = PARSER.parse(c.ua);
            let major = got
                .browser_version
                .as_deref()
                .map(|v| v.split('.').next().unwrap_or_default());
            let ok = got.browser.as_deref() == c.browser
                && major == c.major
                && got.os.as_deref() == c.os
                && got.device_type == c.device
                && got.is_bot == c.bot;
            if !ok {
                failures.push(format!("{:?}\n    got {got:?}", c.ua));
            }
        }
        assert!(
            failures.is_empty(),
            "{} failures:\n{}",
            failures.len(),
            failures.join("\n")
        );
    }

    #[test]
    fn versions_are_major_minor() {
        let chrome = PARSER.parse(CASES[0].ua);
        assert_eq!(chrome.browser_version.as_deref(), Some("120.0"));
        assert_eq!(chrome.os_version.as_deref(), Some("10"));
        let mac = PARSER.parse(CASES[1].ua);
        assert_eq!(mac.browser_version.as_deref(), Some("17.2"));
        assert_eq!(mac.os_version.as_deref(), Some("10.15"));
        let iphone = PARSER.parse(CASES[2].ua);
        assert_eq!(iphone.os_version.as_deref(), Some("17.2"));
        let android = PARSER.parse(CASES[5].ua);
        assert_eq!(android.os_version.as_deref(), Some("10"));
    }

    #[test]
    fn empty_is_default_and_not_cached() {
        let parser = UserAgentParser::new().with_cache_capacity(4);
        assert_eq!(*parser.parse(""), UserAgentInfo::default());
        assert_eq!(*parser.parse(" \t\n"), UserAgentInfo::default());
        assert_eq!(parser.parse_uncached(""), UserAgentInfo::default());
        assert_eq!(parser.cached_len(), 0);
    }

    #[test]
    fn cache_hits_share_the_result_and_stay_bounded() {
        let parser = UserAgentParser::new().with_cache_capacity(32);
        let a = parser.parse(CASES[0].ua);
        let b = parser.parse(CASES[0].ua);
        assert!(Arc::ptr_eq(&a, &b), "second parse is a cache hit");
        assert_eq!(*a, parser.parse_uncached(CASES[0].ua));
        // Surrounding whitespace does not make a new entry.
        let c = parser.parse(&format!("  {}  ", CASES[0].ua));
        assert!(Arc::ptr_eq(&a, &c));
        for i in 0..1_000 {
            parser.parse(&format!("Mozilla/5.0 (X11; Linux x86_64) Firefox/{i}.0"));
            assert!(parser.cached_len() <= 32);
        }
        assert!(parser.cached_len() > 0);
        // A full cache still answers correctly.
        assert_eq!(
            parser.parse(CASES[2].ua).browser.as_deref(),
            Some("Mobile Safari")
        );
    }

    #[test]
    fn zero_capacity_disables_the_cache() {
        let parser = UserAgentParser::new().with_cache_capacity(0);
        let a = parser.parse(CASES[0].ua);
        let b = parser.parse(CASES[0].ua);
        assert_eq!(a, b);
        assert!(!Arc::ptr_eq(&a, &b));
        assert_eq!(parser.cached_len(), 0);
    }

    #[test]
    fn garbage_10kb_does_not_panic() {
        let garbage: String = (0..10_240)
            .map(|i| char::from(b' ' + (i * 37 % 95) as u8))
            .collect();
        let info = PARSER.parse(&garbage);
        assert!(!info.is_bot || info.device_type == Bot);
        // Long input is clipped at a char boundary, even mid-character.
        let long = format!("{}{}", "a".repeat(MAX_UA_LEN - 1), "\u{e9}".repeat(5_000));
        let _ = PARSER.parse(&long);
        assert_eq!(clip(&long).len(), MAX_UA_LEN - 1);
        // A real UA padded to 10 KB still parses from its start.
        let padded = format!("{} {}", CASES[0].ua, "x".repeat(10_000));
        assert_eq!(PARSER.parse(&padded).browser.as_deref(), Some("Chrome"));
    }

    #[test]
    fn bot_token_heuristic() {
        for (ua, want) in [
            ("mozilla/5.0 (compatible; googlebot/2.1)", true),
            ("slackbot-linkexpanding 1.0", true),
            ("mozilla/5.0 robot", true),
            ("my-bot", true),
            ("linux; android 12; cubot x50", false),
            ("botanic garden browser", false),
            ("abbott", false),
            ("", false),
        ] {
            assert_eq!(has_bot_token(ua), want, "{ua}");
        }
    }

    #[test]
    fn device_type_names() {
        for d in DeviceType::ALL {
            assert_eq!(DeviceType::from_name(d.as_str()), Some(d));
            assert_eq!(d.to_string(), d.as_str());
        }
        assert_eq!(Desktop.as_str(), "desktop");
        assert_eq!(DeviceType::default(), Unknown);
    }

    #[test]
    fn parser_is_send_sync_and_shareable() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<UserAgentParser>();
        let parser = Arc::new(UserAgentParser::new().with_cache_capacity(64));
        let handles: Vec<_> = (0..4)
            .map(|t| {
                let parser = Arc::clone(&parser);
                std::thread::spawn(move || {
                    for i in 0..50 {
                        let c = &CASES[(t + i) % CASES.len()];
                        assert_eq!(parser.parse(c.ua).device_type, c.device, "{}", c.ua);
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().expect("worker panicked");
        }
    }

    #[test]
    fn from_yaml_rejects_bad_input() {
        assert!(matches!(
            UserAgentParser::from_yaml("not: [valid"),
            Err(UaParserError::Yaml(_))
        ));
        let bad_regex =
            "user_agent_parsers:\n  - regex: '(unclosed'\nos_parsers: []\ndevice_parsers: []\n";
        assert!(matches!(
            UserAgentParser::from_yaml(bad_regex),
            Err(UaParserError::Regex(_))
        ));
        let tiny = "user_agent_parsers:\n  - regex: '(Tally)/(\\d+)'\nos_parsers: []\ndevice_parsers: []\n";
        let parser = UserAgentParser::from_yaml(tiny).expect("tiny yaml loads");
        let info = parser.parse("Tally/7");
        assert_eq!(info.browser.as_deref(), Some("Tally"));
        assert_eq!(info.browser_version.as_deref(), Some("7"));
        assert_eq!(info.device_type, Unknown);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn parse_never_panics(s in any::<String>()) {
            let info = PARSER.parse(&s);
            prop_assert_eq!(info.is_bot, info.device_type == Bot);
        }

        #[test]
        fn parse_ua_like_never_panics(
            s in "Mozilla/5\\.0 \\((Linux|Windows NT|iPhone|iPad|Macintosh|X11)[; A-Za-z0-9_.]{0,30}\\)( [A-Za-z]{1,10}/[0-9.]{1,8}){0,4}"
        ) {
            let info = PARSER.parse(&s);
            prop_assert_eq!(info.is_bot, info.device_type == Bot);
        }
    }
}
