//! Enrichment: what the processing stage derives from an event's user agent,
//! page URL, referrer and campaign tags.
//!
//! | module          | input                           | output                                      |
//! |-----------------|---------------------------------|---------------------------------------------|
//! | [`user_agent`]  | `User-Agent` string             | [`UserAgentInfo`]: browser, OS, device type, bot flag |
//! | [`utm`]         | page URL (+ explicit campaign)  | [`Utm`]: `utm_*` tags and ad click id       |
//! | [`referrer`]    | referrer, page URL, [`Utm`]     | [`ReferrerInfo`]: referrer host and [`Channel`] |
//! | [`url_parts`]   | any URL, absolute or relative   | [`UrlParts`]: host and path                 |
//!
//! Everything here is pure and infallible on arbitrary input (garbage gives
//! `None`/`Unknown`/`Direct`, never a panic), so it can run on untrusted
//! events. The only costly object is [`UserAgentParser`]: build it once per
//! process (it compiles uap-core's regexes) and share it in an `Arc`; its
//! [`parse`](UserAgentParser::parse) is cached.
//!
//! Typical use for one event:
//!
//! ```
//! use tally_process::enrich::{
//!     classify, split, Channel, DeviceType, UserAgentParser, Utm,
//! };
//!
//! let parser = UserAgentParser::new(); // once per process
//!
//! let page = "https://www.example.com/pricing?utm_source=newsletter&utm_medium=email";
//! let explicit = Utm::default(); // e.g. from the client's `context.campaign`
//! let utm = Utm::from_url(page).merge_over(explicit);
//! let referrer = classify(Some("https://mail.google.com/"), Some(page), &utm);
//! assert_eq!(referrer.channel, Channel::Email);
//! assert_eq!(referrer.host.as_deref(), Some("mail.google.com"));
//!
//! let parts = split(page).unwrap();
//! assert_eq!(parts.host.as_deref(), Some("www.example.com"));
//! assert_eq!(parts.path, "/pricing");
//!
//! let ua = parser.parse(
//!     "Mozilla/5.0 (iPhone; CPU iPhone OS 17_2 like Mac OS X) AppleWebKit/605.1.15 \
//!      (KHTML, like Gecko) Version/17.2 Mobile/15E148 Safari/604.1",
//! );
//! assert_eq!(ua.browser.as_deref(), Some("Mobile Safari"));
//! assert_eq!(ua.device_type, DeviceType::Mobile);
//! ```

pub mod referrer;
pub mod url_parts;
pub mod user_agent;
pub mod utm;

pub use referrer::{Channel, ReferrerInfo, classify};
pub use url_parts::{UrlParts, normalize_host, split};
pub use user_agent::{DeviceType, UaParserError, UserAgentInfo, UserAgentParser};
pub use utm::Utm;
