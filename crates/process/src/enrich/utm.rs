//! Campaign parameters (`utm_*`) and ad click ids from a page URL.
//!
//! [`Utm::from_url`] reads the query string of a page URL (absolute,
//! protocol-relative, relative, or a bare `?query`), decodes it as
//! `application/x-www-form-urlencoded` (percent-decoding, `+` as space,
//! invalid UTF-8 replaced by U+FFFD) and picks:
//!
//! | parameter                  | field                 |
//! |----------------------------|-----------------------|
//! | `utm_source`               | [`Utm::source`]       |
//! | `utm_medium`               | [`Utm::medium`]       |
//! | `utm_campaign`             | [`Utm::campaign`]     |
//! | `utm_term`                 | [`Utm::term`]         |
//! | `utm_content`              | [`Utm::content`]      |
//! | one of [`CLICK_ID_PARAMS`] | [`Utm::click_id`] and [`Utm::click_id_param`] |
//!
//! Parameter names match ASCII-case-insensitively (`UTM_Source` works).
//! Values are trimmed; empty values count as absent. When a parameter is
//! repeated, the first non-empty occurrence wins. When several click ids
//! are present, the one listed first in [`CLICK_ID_PARAMS`] wins (ad
//! platform ids before `fbclid`). Values keep their case; the referrer
//! classifier compares them case-insensitively. Parameters in the fragment
//! (`#utm_source=…`) are ignored, as GA4 and Plausible do by default,
//! except that a URL whose only `?` is inside the fragment, as hash-routed
//! single-page apps produce (`/#/pricing?utm_source=x`), has that query
//! read.
//!
//! Garbage never panics: an input without a query gives `Utm::default()`.

use url::form_urlencoded;

/// Click-id query parameters recognised by [`Utm::from_url`], in order of
/// preference.
///
/// All but the last two are added by ad platforms to ad clicks only
/// ("auto-tagging") and mark a visit as paid, see [`is_paid_click_param`].
/// `fbclid` is appended by Meta to *every* outbound link (organic posts
/// too) and `twclid` is documented by X as a conversion id, so they are
/// recorded but are no evidence of paid traffic on their own.
pub const CLICK_ID_PARAMS: &[&str] = &[
    "gclid",     // Google Ads
    "gbraid",    // Google Ads (iOS, app-to-web)
    "wbraid",    // Google Ads (iOS, web-to-app)
    "dclid",     // Google Display & Video 360 / Campaign Manager
    "msclkid",   // Microsoft Advertising
    "ttclid",    // TikTok Ads
    "li_fat_id", // LinkedIn Ads
    "yclid",     // Yandex Direct
    "fbclid",    // Meta: every outbound link, not only ads
    "twclid",    // X: conversion tracking
];

/// Whether a click-id parameter name (as stored in
/// [`Utm::click_id_param`]) is evidence of a paid ad click.
pub fn is_paid_click_param(param: &str) -> bool {
    !matches!(param, "fbclid" | "twclid") && CLICK_ID_PARAMS.contains(&param)
}

/// Campaign parameters of a visit.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Utm {
    /// `utm_source`: where the traffic comes from (`google`, `newsletter`).
    pub source: Option<String>,
    /// `utm_medium`: the kind of traffic (`cpc`, `email`, `social`).
    pub medium: Option<String>,
    /// `utm_campaign`.
    pub campaign: Option<String>,
    /// `utm_term`: the paid keyword.
    pub term: Option<String>,
    /// `utm_content`: which ad or link was clicked.
    pub content: Option<String>,
    /// Value of an ad click id (`gclid`, `msclkid`, `fbclid`, … see
    /// [`CLICK_ID_PARAMS`]).
    pub click_id: Option<String>,
    /// Lowercased name of the parameter [`click_id`](Self::click_id) came
    /// from (`"gclid"`). `None` with a `click_id` set means "an explicit
    /// click id of unknown kind", which the referrer classifier treats as
    /// paid.
    pub click_id_param: Option<String>,
}

impl Utm {
    /// Reads campaign parameters from the query string of `url`.
    ///
    /// Accepts absolute URLs, relative ones (`/landing?utm_source=x`) and
    /// bare query strings (`?utm_source=x` or `utm_source=x`). See the
    /// [module documentation](self) for the rules. Never panics.
    pub fn from_url(url: &str) -> Utm {
        let query = match url.split_once('?') {
            Some((_, q)) => q,
            // A bare "a=b&c=d" query without '?' (but not a URL or path).
            None if url.contains('=') && !url.contains(['/', '#']) => url,
            None => return Utm::default(),
        };
        let query = query.split_once('#').map_or(query, |(q, _)| q);
        Self::from_query(query)
    }

    /// Reads campaign parameters from a query string without its leading
    /// `?` (`utm_source=x&gclid=y`).
    pub fn from_query(query: &str) -> Utm {
        let mut utm = Utm::default();
        let mut click_rank = usize::MAX;
        for (key, value) in form_urlencoded::parse(query.as_bytes()) {
            let value = value.trim();
            if value.is_empty() || key.len() > 16 {
                continue;
            }
            let key = key.to_ascii_lowercase();
            let slot = match key.as_str() {
                "utm_source" => &mut utm.source,
                "utm_medium" => &mut utm.medium,
                "utm_campaign" => &mut utm.campaign,
                "utm_term" => &mut utm.term,
                "utm_content" => &mut utm.content,
                other => {
                    if let Some(rank) = CLICK_ID_PARAMS.iter().position(|p| *p == other)
                        && rank < click_rank
                    {
                        click_rank = rank;
                        utm.click_id = Some(value.to_owned());
                        utm.click_id_param = Some(CLICK_ID_PARAMS[rank].to_owned());
                    }
                    continue;
                }
            };
            if slot.is_none() {
                *slot = Some(value.to_owned());
            }
        }
        utm
    }

    /// Overlays `explicit` values (for instance from a client's
    /// `context.campaign`) on top of `self` (usually parsed from the page
    /// URL): every field set in `explicit` wins, the others keep `self`'s
    /// value.
    ///
    /// Explicit values are trimmed and empty ones count as absent, like in
    /// [`from_url`](Self::from_url). The click id and its parameter name
    /// move together: an explicit `click_id` replaces both.
    pub fn merge_over(self, explicit: Utm) -> Utm {
        fn pick(base: Option<String>, explicit: Option<String>) -> Option<String> {
            match explicit {
                Some(v) if !v.trim().is_empty() => Some(v.trim().to_owned()),
                _ => base,
            }
        }
        let explicit_click = explicit
            .click_id
            .as_deref()
            .is_some_and(|v| !v.trim().is_empty());
        let (click_id, click_id_param) = if explicit_click {
            (
                pick(None, explicit.click_id),
                pick(None, explicit.click_id_param).map(|p| p.to_ascii_lowercase()),
            )
        } else {
            (self.click_id, self.click_id_param)
        };
        Utm {
            source: pick(self.source, explicit.source),
            medium: pick(self.medium, explicit.medium),
            campaign: pick(self.campaign, explicit.campaign),
            term: pick(self.term, explicit.term),
            content: pick(self.content, explicit.content),
            click_id,
            click_id_param,
        }
    }

    /// Whether any `utm_*` parameter is set (click ids not included).
    pub fn has_campaign_params(&self) -> bool {
        self.source.is_some()
            || self.medium.is_some()
            || self.campaign.is_some()
            || self.term.is_some()
            || self.content.is_some()
    }

    /// Whether the click id marks a paid ad click: a click id from an ad
    /// platform's auto-tagging parameter, or an explicit click id of
    /// unknown kind.
    pub fn has_paid_click_id(&self) -> bool {
        self.click_id.is_some()
            && self
                .click_id_param
                .as_deref()
                .is_none_or(is_paid_click_param)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn s(v: &str) -> Option<String> {
        Some(v.to_owned())
    }

    #[test]
    fn from_url_table() {
        let cases: &[(&str, Utm)] = &[
            (
                "https://example.com/?utm_source=google&utm_medium=cpc&utm_campaign=spring&utm_term=shoes&utm_content=ad1",
                Utm {
                    source: s("google"),
                    medium: s("cpc"),
                    campaign: s("spring"),
                    term: s("shoes"),
                    content: s("ad1"),
                    ..Utm::default()
                },
            ),
            // Percent-encoding, '+' as space, UTF-8.
            (
                "https://example.com/?utm_campaign=spring%20sale+2024&utm_source=caf%C3%A9&utm_term=a%26b%3Dc",
                Utm {
                    source: s("caf\u{e9}"),
                    campaign: s("spring sale 2024"),
                    term: s("a&b=c"),
                    ..Utm::default()
                },
            ),
            // Invalid UTF-8 and broken escapes are tolerated.
            (
                "/?utm_source=%FF%FE&utm_medium=%zz%4",
                Utm {
                    source: s("\u{fffd}\u{fffd}"),
                    medium: s("%zz%4"),
                    ..Utm::default()
                },
            ),
            // Empty and blank values are ignored; first non-empty wins.
            (
                "/?utm_source=&utm_source=%20&utm_source=bing&utm_source=yahoo&utm_medium",
                Utm {
                    source: s("bing"),
                    ..Utm::default()
                },
            ),
            // Case-insensitive keys, values trimmed, case kept.
            (
                "https://example.com/p?UTM_Source=%20Newsletter%20&Utm_Medium=Email",
                Utm {
                    source: s("Newsletter"),
                    medium: s("Email"),
                    ..Utm::default()
                },
            ),
            // Fragment ignored, also for parameters inside it.
            (
                "https://example.com/?utm_source=a#utm_medium=b",
                Utm {
                    source: s("a"),
                    ..Utm::default()
                },
            ),
            ("https://example.com/#utm_source=a", Utm::default()),
            // Hash-routed apps: the query inside the fragment is read...
            (
                "https://example.com/#/pricing?utm_source=a",
                Utm {
                    source: s("a"),
                    ..Utm::default()
                },
            ),
            // ...unless the URL has a real query.
            ("https://example.com/?x=1#/p?utm_source=a", Utm::default()),
            // Click ids, ad platforms preferred over fbclid.
            (
                "https://example.com/?fbclid=IwAR0&gclid=Cj0KCQ",
                Utm {
                    click_id: s("Cj0KCQ"),
                    click_id_param: s("gclid"),
                    ..Utm::default()
                },
            ),
            (
                "https://example.com/?fbclid=IwAR0",
                Utm {
                    click_id: s("IwAR0"),
                    click_id_param: s("fbclid"),
                    ..Utm::default()
                },
            ),
            (
                "/landing?MSCLKID=abc&utm_source=bing",
                Utm {
                    source: s("bing"),
                    click_id: s("abc"),
                    click_id_param: s("msclkid"),
                    ..Utm::default()
                },
            ),
            // Relative and bare queries.
            (
                "?utm_medium=social",
                Utm {
                    medium: s("social"),
                    ..Utm::default()
                },
            ),
            (
                "utm_medium=social&utm_source=x",
                Utm {
                    source: s("x"),
                    medium: s("social"),
                    ..Utm::default()
                },
            ),
            // Unrelated parameters and no query at all.
            ("https://example.com/?q=utm_source&ref=hn", Utm::default()),
            ("https://example.com/utm_source=x", Utm::default()),
            ("https://example.com/", Utm::default()),
            ("", Utm::default()),
            ("?", Utm::default()),
            ("?&&==&", Utm::default()),
            ("not a url at all", Utm::default()),
        ];
        for (input, want) in cases {
            assert_eq!(&Utm::from_url(input), want, "from_url({input:?})");
        }
    }

    #[test]
    fn merge_over_explicit_wins() {
        let from_url = Utm {
            source: s("google"),
            medium: s("cpc"),
            campaign: s("url-campaign"),
            click_id: s("g1"),
            click_id_param: s("gclid"),
            ..Utm::default()
        };
        let explicit = Utm {
            campaign: s("client-campaign"),
            content: s("banner"),
            medium: s("  "),
            ..Utm::default()
        };
        assert_eq!(
            from_url.clone().merge_over(explicit),
            Utm {
                source: s("google"),
                medium: s("cpc"),
                campaign: s("client-campaign"),
                content: s("banner"),
                click_id: s("g1"),
                click_id_param: s("gclid"),
                ..Utm::default()
            }
        );
        // An explicit click id replaces the pair, even without a name.
        let explicit = Utm {
            click_id: s(" x9 "),
            ..Utm::default()
        };
        let merged = from_url.clone().merge_over(explicit);
        assert_eq!(merged.click_id, s("x9"));
        assert_eq!(merged.click_id_param, None);
        assert!(merged.has_paid_click_id());
        // Merging nothing changes nothing, merging onto nothing copies.
        assert_eq!(from_url.clone().merge_over(Utm::default()), from_url);
        assert_eq!(Utm::default().merge_over(from_url.clone()), from_url);
    }

    #[test]
    fn paid_click_ids() {
        for (param, paid) in [
            ("gclid", true),
            ("gbraid", true),
            ("wbraid", true),
            ("dclid", true),
            ("msclkid", true),
            ("ttclid", true),
            ("li_fat_id", true),
            ("yclid", true),
            ("fbclid", false),
            ("twclid", false),
            ("ref", false),
        ] {
            assert_eq!(is_paid_click_param(param), paid, "{param}");
        }
        assert!(!Utm::default().has_paid_click_id());
        assert!(!Utm::from_url("/?fbclid=1").has_paid_click_id());
        assert!(Utm::from_url("/?gclid=1").has_paid_click_id());
        assert!(Utm::from_url("/?utm_term=x").has_campaign_params());
        assert!(!Utm::from_url("/?gclid=x").has_campaign_params());
    }

    #[test]
    fn long_garbage_does_not_panic() {
        let garbage: String = (0..10_000)
            .map(|i| char::from(b' ' + (i * 13 % 95) as u8))
            .collect();
        let _ = Utm::from_url(&garbage);
        let long = format!("/?utm_source={}", "%".repeat(10_000));
        assert_eq!(Utm::from_url(&long).source.map(|v| v.len()), Some(10_000));
    }

    proptest! {
        #[test]
        fn from_url_never_panics(s in any::<String>()) {
            let utm = Utm::from_url(&s);
            let fields = [&utm.source, &utm.medium, &utm.campaign, &utm.term, &utm.content, &utm.click_id];
            for v in fields.into_iter().flatten() {
                prop_assert!(!v.is_empty());
                prop_assert_eq!(v.trim(), v.as_str());
            }
        }

        #[test]
        fn from_url_query_like_never_panics(s in "[?]?((utm_[a-z]{0,8}|gclid|fbclid)=[a-zA-Z0-9%+ &=#]{0,12}&?){0,4}") {
            let _ = Utm::from_url(&s);
        }

        #[test]
        fn roundtrip_encoded_values(v in "[^\\s]{1,20}") {
            let encoded: String = form_urlencoded::byte_serialize(v.as_bytes()).collect();
            let utm = Utm::from_url(&format!("https://example.com/?utm_campaign={encoded}"));
            prop_assert_eq!(utm.campaign, Some(v));
        }
    }
}
