//! Traffic channel of a visit, from its referrer, page URL and UTM tags.
//!
//! [`classify`] assigns one [`Channel`]. Campaign tags take precedence over
//! the referrer, as in GA4's and Plausible's default channel groupings,
//! because a tagged link says explicitly what the site owner meant while a
//! referrer is often missing (in-app browsers, `noreferrer`, HTTPS to
//! HTTP) or only shows an intermediate redirector.
//!
//! # Precedence
//!
//! The first rule that matches wins. `medium` and `source` are compared
//! case-insensitively after trimming, with `-` and spaces read as `_`.
//!
//! 1. **Paid**: [`Utm::has_paid_click_id`], i.e. an ad platform's
//!    auto-tagging id (`gclid`, `gbraid`, `wbraid`, `dclid`, `msclkid`,
//!    `ttclid`, `li_fat_id`, `yclid`) or an explicit click id of unknown
//!    kind. `fbclid` and `twclid` are *not* paid evidence: Meta appends
//!    `fbclid` to every outbound link, organic posts included.
//! 2. **Paid**: `utm_medium` is `cpc`, `ppc`, `cpm`, `cpv`, `cpa`, `cpp`,
//!    `cpi`, `display`, `banner`, `interstitial`, `retargeting`,
//!    `remarketing`, `sem`, `ad`, `ads`, `adwords`, `sponsored`, starts
//!    with `paid` (`paid`, `paidsearch`, `paid_social`, …) or contains
//!    `cpc`/`ppc` (`google_cpc`).
//! 3. **Email**: `utm_medium` or `utm_source` is `email`, `e_mail`, `mail`,
//!    `newsletter` or `newsletters`.
//! 4. **Social**: `utm_medium` is `social`, `social_media`,
//!    `social_network`, `socialmedia`, `social_organic`, `organic_social`
//!    or `sm`.
//! 5. **Organic search**: `utm_medium` is `organic`, `organic_search` or
//!    `seo`.
//! 6. **Referral**: `utm_medium` is `referral`, `link`, `affiliate` or
//!    `affiliates`.
//! 7. `utm_source` names a known network, either by name (`google`, `bing`,
//!    `facebook`, `fb`, `ig`, `twitter`, `x`, `hn`, `mailchimp`, …) or as a
//!    host that rules 10–12 below recognise (`news.ycombinator.com`): that
//!    network's channel. Otherwise an `fbclid` or `twclid` click id means
//!    **Social** (in-app browsers often drop the referrer).
//! 8. No usable referrer (absent, empty, unparseable, `about:blank`, or
//!    without a host and not a `/path`): **Referral** if any `utm_*`
//!    parameter is set (tagged traffic is never direct; GA4 would say
//!    "Unassigned", which this model does not have), else **Direct**.
//! 9. **Internal**: the referrer's host equals the page's host, both
//!    lowercased with a leading `www.` removed (`example.com` and
//!    `www.example.com` are the same site; `blog.example.com` is not); a
//!    relative referrer (`/pricing`) is internal too.
//! 10. **Email**: a webmail host: `mail.google.com`, Outlook on the web
//!     (`outlook.live.com`, `outlook.office.com`, `outlook.office365.com`),
//!     any host whose first label is `mail` or `webmail`
//!     (`mail.yahoo.com`, `webmail.example.net`), and the Gmail and
//!     Outlook Android apps (`android-app://com.google.android.gm`).
//! 11. **Organic search**: a search engine's result page: Google
//!     (`google.<tld>`, `google.co.<cc>`, `google.com.<cc>`, only the bare
//!     or `www.` host, so `docs.google.com` stays a referral; and the
//!     Google app), Bing, DuckDuckGo, Yahoo search, Baidu, Yandex, Ecosia,
//!     Brave Search, Startpage, Qwant, Naver, Seznam, Sogou, 360 Search,
//!     Daum, Ask, AOL search, Yep, Kagi, Mojeek, Coc Coc, Presearch,
//!     Swisscows, MetaGer, Dogpile, Petal Search.
//! 12. **Social**: Facebook (`fb.com`, `fb.me`, Messenger), Instagram,
//!     Threads, X/Twitter (`t.co`, `x.com`, `twitter.com`), LinkedIn
//!     (`lnkd.in`), Reddit (`redd.it`), YouTube (`youtu.be`), Pinterest
//!     (every country domain, `pin.it`), TikTok, Hacker News
//!     (`news.ycombinator.com`), Bluesky, `mastodon.social` (other
//!     Mastodon instances cannot be told from ordinary sites and stay
//!     referrals), Tumblr, VK, Weibo, Quora, Discord, Telegram, WhatsApp,
//!     Snapchat, and the Android apps of the main networks.
//! 13. **Referral**: anything else.
//!
//! [`ReferrerInfo::host`] is the referrer's normalised host whenever the
//! referrer has one, whatever the channel (for a visit tagged
//! `utm_medium=email` from `t.co` it is `t.co`).

use std::fmt;

use super::url_parts::{normalize_host, split};
use super::utm::Utm;

/// Marketing channel of a visit, see the [module documentation](self).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Channel {
    /// No referrer and no campaign tags.
    Direct,
    /// Referred by a page of the same site.
    Internal,
    /// Unpaid search engine results.
    OrganicSearch,
    /// Social networks and community sites.
    Social,
    /// Email campaigns and webmail.
    Email,
    /// Ads: paid search, paid social, display.
    Paid,
    /// Any other site.
    Referral,
}

impl Channel {
    /// Every channel, in declaration order.
    pub const ALL: [Channel; 7] = [
        Channel::Direct,
        Channel::Internal,
        Channel::OrganicSearch,
        Channel::Social,
        Channel::Email,
        Channel::Paid,
        Channel::Referral,
    ];

    /// Stable snake_case name, as stored: `"direct"`, `"internal"`,
    /// `"organic_search"`, `"social"`, `"email"`, `"paid"`, `"referral"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Channel::Direct => "direct",
            Channel::Internal => "internal",
            Channel::OrganicSearch => "organic_search",
            Channel::Social => "social",
            Channel::Email => "email",
            Channel::Paid => "paid",
            Channel::Referral => "referral",
        }
    }

    /// Inverse of [`as_str`](Self::as_str).
    pub fn from_name(name: &str) -> Option<Channel> {
        Channel::ALL.into_iter().find(|c| c.as_str() == name)
    }
}

impl fmt::Display for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Result of [`classify`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReferrerInfo {
    /// Referrer host, lowercased, without `www.`, port or trailing dot;
    /// `None` when the referrer is absent or has no host.
    pub host: Option<String>,
    /// Channel of the visit.
    pub channel: Channel,
}

/// Classifies a visit from its referrer, the page it landed on and its
/// campaign tags (typically `Utm::from_url(page_url).merge_over(explicit)`).
///
/// See the [module documentation](self) for the exact rules. Never panics.
pub fn classify(referrer: Option<&str>, page_url: Option<&str>, utm: &Utm) -> ReferrerInfo {
    let referrer = referrer.map(str::trim).filter(|r| !r.is_empty());
    let parts = referrer.and_then(split);
    let host = parts
        .as_ref()
        .and_then(|p| p.host.as_deref())
        .map(normalize_host)
        .filter(|h| !h.is_empty());
    let channel = channel(referrer, host.as_deref(), page_url, utm);
    ReferrerInfo { host, channel }
}

fn channel(
    referrer: Option<&str>,
    host: Option<&str>,
    page_url: Option<&str>,
    utm: &Utm,
) -> Channel {
    if let Some(c) = utm_channel(utm) {
        return c;
    }
    let Some(host) = host else {
        let relative = referrer.is_some_and(|r| r.starts_with('/') && !r.starts_with("//"));
        return if relative {
            Channel::Internal
        } else if utm.has_campaign_params() {
            Channel::Referral
        } else {
            Channel::Direct
        };
    };
    let page_host = page_url
        .and_then(split)
        .and_then(|p| p.host)
        .map(|h| normalize_host(&h));
    if page_host.as_deref() == Some(host) {
        return Channel::Internal;
    }
    host_channel(host).unwrap_or(Channel::Referral)
}

/// Rules 1–7 of the module documentation.
fn utm_channel(utm: &Utm) -> Option<Channel> {
    if utm.has_paid_click_id() {
        return Some(Channel::Paid);
    }
    let medium = utm.medium.as_deref().map(normalize_tag);
    let source = utm.source.as_deref().map(normalize_tag);
    let medium = medium.as_deref();
    let source = source.as_deref();

    if medium.is_some_and(is_paid_medium) {
        return Some(Channel::Paid);
    }
    if medium.is_some_and(is_email_tag) || source.is_some_and(is_email_tag) {
        return Some(Channel::Email);
    }
    if let Some(m) = medium {
        let by_medium = match m {
            "social" | "social_media" | "social_network" | "socialmedia" | "social_organic"
            | "organic_social" | "sm" => Some(Channel::Social),
            "organic" | "organic_search" | "seo" => Some(Channel::OrganicSearch),
            "referral" | "link" | "affiliate" | "affiliates" => Some(Channel::Referral),
            _ => None,
        };
        if by_medium.is_some() {
            return by_medium;
        }
    }
    if let Some(c) = source.and_then(source_channel) {
        return Some(c);
    }
    if utm.click_id.is_some() {
        // Only non-paid click ids are left here: fbclid and twclid.
        return Some(Channel::Social);
    }
    None
}

/// Lowercases, trims and maps `-` and spaces to `_`.
fn normalize_tag(s: &str) -> String {
    s.trim()
        .chars()
        .map(|c| match c {
            '-' | ' ' => '_',
            c => c.to_ascii_lowercase(),
        })
        .collect()
}

fn is_paid_medium(m: &str) -> bool {
    matches!(
        m,
        "cpc"
            | "ppc"
            | "cpm"
            | "cpv"
            | "cpa"
            | "cpp"
            | "cpi"
            | "display"
            | "banner"
            | "interstitial"
            | "retargeting"
            | "remarketing"
            | "sem"
            | "ad"
            | "ads"
            | "adwords"
            | "sponsored"
    ) || m.starts_with("paid")
        || m.contains("cpc")
        || m.contains("ppc")
}

fn is_email_tag(t: &str) -> bool {
    matches!(
        t,
        "email" | "e_mail" | "mail" | "newsletter" | "newsletters"
    )
}

/// Channel of a `utm_source` value naming a network or a host.
fn source_channel(source: &str) -> Option<Channel> {
    let by_name = match source {
        "google" | "bing" | "duckduckgo" | "ddg" | "yahoo" | "baidu" | "yandex" | "ecosia"
        | "brave" | "startpage" | "qwant" | "naver" | "seznam" | "sogou" | "ask" | "kagi" => {
            Some(Channel::OrganicSearch)
        }
        "facebook" | "fb" | "instagram" | "ig" | "threads" | "twitter" | "x" | "linkedin"
        | "reddit" | "youtube" | "pinterest" | "tiktok" | "hackernews" | "hacker_news" | "hn"
        | "mastodon" | "bluesky" | "bsky" | "tumblr" | "vk" | "weibo" | "quora" | "discord"
        | "telegram" | "whatsapp" | "snapchat" => Some(Channel::Social),
        "mailchimp" | "substack" | "sendgrid" | "mailerlite" | "brevo" | "sendinblue" => {
            Some(Channel::Email)
        }
        _ => None,
    };
    by_name.or_else(|| {
        if source.contains('.') {
            let host = split(source)?.host?;
            host_channel(&normalize_host(&host))
        } else {
            None
        }
    })
}

/// Rules 10–12: channel of a normalised referrer host, `None` for a plain
/// referral.
fn host_channel(host: &str) -> Option<Channel> {
    if is_email_host(host) {
        Some(Channel::Email)
    } else if is_search_host(host) {
        Some(Channel::OrganicSearch)
    } else if is_social_host(host) {
        Some(Channel::Social)
    } else {
        None
    }
}

/// `host` is `domain` or one of its subdomains.
fn is_or_under(host: &str, domain: &str) -> bool {
    host.strip_suffix(domain)
        .is_some_and(|rest| rest.is_empty() || rest.ends_with('.'))
}

/// If `host` is `[prefix.]brand.<tld>` with a country or generic
/// top-level domain (`com`, `de`, `co.uk`, `com.br`), returns `prefix`
/// (empty when there is none).
fn brand_prefix<'h>(host: &'h str, brand: &str) -> Option<&'h str> {
    let labels: Vec<&str> = host.split('.').collect();
    let is_tld = |l: &str| (2..=3).contains(&l.len()) && l.bytes().all(|b| b.is_ascii_lowercase());
    let brand_at = match labels.as_slice() {
        [.., b, t] if *b == brand && is_tld(t) => labels.len() - 2,
        [.., b, sld, cc]
            if *b == brand && matches!(*sld, "co" | "com") && cc.len() == 2 && is_tld(cc) =>
        {
            labels.len() - 3
        }
        _ => return None,
    };
    let prefix_len = labels[..brand_at]
        .iter()
        .map(|l| l.len() + 1)
        .sum::<usize>();
    Some(host[..prefix_len].trim_end_matches('.'))
}

fn is_email_host(host: &str) -> bool {
    const EMAIL_HOSTS: &[&str] = &[
        "mail.google.com",
        "outlook.live.com",
        "outlook.office.com",
        "outlook.office365.com",
        "com.google.android.gm",
        "com.microsoft.office.outlook",
    ];
    let first = host.split('.').next().unwrap_or_default();
    // A bare "mail.com" is a provider's portal, a "mail.<x>.<y>" a webmail.
    let webmail = matches!(first, "mail" | "webmail") && host.matches('.').count() >= 2;
    webmail || EMAIL_HOSTS.iter().any(|d| is_or_under(host, d))
}

fn is_search_host(host: &str) -> bool {
    /// The host itself or any subdomain.
    const SEARCH_DOMAINS: &[&str] = &[
        "bing.com",
        "duckduckgo.com",
        "search.yahoo.com",
        "search.yahoo.co.jp",
        "ecosia.org",
        "search.brave.com",
        "startpage.com",
        "qwant.com",
        "search.naver.com",
        "search.seznam.cz",
        "sogou.com",
        "search.daum.net",
        "ask.com",
        "search.aol.com",
        "yep.com",
        "kagi.com",
        "mojeek.com",
        "coccoc.com",
        "presearch.com",
        "swisscows.com",
        "metager.org",
        "dogpile.com",
        "petalsearch.com",
        "com.google.android.googlequicksearchbox",
    ];
    /// Exactly these hosts (their other subdomains are not search).
    const SEARCH_HOSTS: &[&str] = &[
        "baidu.com",
        "m.baidu.com",
        "naver.com",
        "m.naver.com",
        "seznam.cz",
        "so.com",
        "m.so.com",
        "ya.ru",
    ];
    if brand_prefix(host, "google") == Some("") || brand_prefix(host, "yandex") == Some("") {
        return true;
    }
    if let Some(prefix) = brand_prefix(host, "yahoo")
        && (prefix.is_empty() || prefix == "search" || prefix.ends_with(".search"))
    {
        return true;
    }
    SEARCH_HOSTS.contains(&host) || SEARCH_DOMAINS.iter().any(|d| is_or_under(host, d))
}

fn is_social_host(host: &str) -> bool {
    /// The host itself or any subdomain.
    const SOCIAL_DOMAINS: &[&str] = &[
        "facebook.com",
        "fb.com",
        "fb.me",
        "messenger.com",
        "instagram.com",
        "threads.net",
        "threads.com",
        "t.co",
        "x.com",
        "twitter.com",
        "linkedin.com",
        "lnkd.in",
        "reddit.com",
        "redd.it",
        "youtube.com",
        "youtu.be",
        "pin.it",
        "tiktok.com",
        "news.ycombinator.com",
        "bsky.app",
        "mastodon.social",
        "tumblr.com",
        "vk.com",
        "weibo.com",
        "weibo.cn",
        "quora.com",
        "discord.com",
        "discordapp.com",
        "t.me",
        "telegram.org",
        "whatsapp.com",
        "wa.me",
        "snapchat.com",
        // Android apps (`android-app://<package>/` referrers).
        "com.facebook.katana",
        "com.facebook.orca",
        "com.instagram.android",
        "com.twitter.android",
        "com.linkedin.android",
        "com.reddit.frontpage",
        "com.google.android.youtube",
        "com.zhiliaoapp.musically",
        "org.telegram.messenger",
        "com.whatsapp",
    ];
    brand_prefix(host, "pinterest").is_some() || SOCIAL_DOMAINS.iter().any(|d| is_or_under(host, d))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const PAGE: &str = "https://www.example.com/pricing?plan=pro";

    fn utm(url: &str) -> Utm {
        Utm::from_url(url)
    }

    /// (referrer, page URL, tags, expected channel, expected host)
    type Case<'a> = (
        Option<&'a str>,
        Option<&'a str>,
        Utm,
        Channel,
        Option<&'a str>,
    );

    fn check(cases: &[Case<'_>]) {
        for (referrer, page, utm, channel, host) in cases {
            let got = classify(*referrer, *page, utm);
            assert_eq!(
                got,
                ReferrerInfo {
                    host: host.map(str::to_owned),
                    channel: *channel,
                },
                "classify({referrer:?}, {page:?}, {utm:?})"
            );
        }
    }

    #[test]
    fn referrer_only() {
        use Channel::*;
        let none = Utm::default;
        let p = Some(PAGE);
        check(&[
            // Direct
            (None, p, none(), Direct, None),
            (Some(""), p, none(), Direct, None),
            (Some("   "), p, none(), Direct, None),
            (Some("about:blank"), p, none(), Direct, None),
            (Some("null"), p, none(), Direct, None),
            (Some("http://"), p, none(), Direct, None),
            (None, None, none(), Direct, None),
            // Internal
            (
                Some("https://www.example.com/"),
                p,
                none(),
                Internal,
                Some("example.com"),
            ),
            (
                Some("https://EXAMPLE.com/blog"),
                p,
                none(),
                Internal,
                Some("example.com"),
            ),
            (
                Some("http://example.com:8080/x"),
                p,
                none(),
                Internal,
                Some("example.com"),
            ),
            (Some("/features"), p, none(), Internal, None),
            (
                Some("https://blog.example.com/"),
                p,
                none(),
                Referral,
                Some("blog.example.com"),
            ),
            // Without a page URL nothing is internal.
            (
                Some("https://example.com/"),
                None,
                none(),
                Referral,
                Some("example.com"),
            ),
            // Organic search
            (
                Some("https://www.google.com/"),
                p,
                none(),
                OrganicSearch,
                Some("google.com"),
            ),
            (
                Some("https://www.google.co.uk/"),
                p,
                none(),
                OrganicSearch,
                Some("google.co.uk"),
            ),
            (
                Some("https://www.google.com.br/search?q=x"),
                p,
                none(),
                OrganicSearch,
                Some("google.com.br"),
            ),
            (
                Some("https://google.de"),
                p,
                none(),
                OrganicSearch,
                Some("google.de"),
            ),
            (
                Some("android-app://com.google.android.googlequicksearchbox/https/www.google.com"),
                p,
                none(),
                OrganicSearch,
                Some("com.google.android.googlequicksearchbox"),
            ),
            (
                Some("https://www.bing.com/search?q=tally"),
                p,
                none(),
                OrganicSearch,
                Some("bing.com"),
            ),
            (
                Some("https://cn.bing.com/"),
                p,
                none(),
                OrganicSearch,
                Some("cn.bing.com"),
            ),
            (
                Some("https://duckduckgo.com/"),
                p,
                none(),
                OrganicSearch,
                Some("duckduckgo.com"),
            ),
            (
                Some("https://html.duckduckgo.com/html/"),
                p,
                none(),
                OrganicSearch,
                Some("html.duckduckgo.com"),
            ),
            (
                Some("https://search.yahoo.com/"),
                p,
                none(),
                OrganicSearch,
                Some("search.yahoo.com"),
            ),
            (
                Some("https://uk.search.yahoo.com/"),
                p,
                none(),
                OrganicSearch,
                Some("uk.search.yahoo.com"),
            ),
            (
                Some("https://www.yahoo.co.jp/"),
                p,
                none(),
                OrganicSearch,
                Some("yahoo.co.jp"),
            ),
            (
                Some("https://www.baidu.com/link?url=x"),
                p,
                none(),
                OrganicSearch,
                Some("baidu.com"),
            ),
            (
                Some("https://yandex.ru/"),
                p,
                none(),
                OrganicSearch,
                Some("yandex.ru"),
            ),
            (
                Some("https://yandex.com.tr/"),
                p,
                none(),
                OrganicSearch,
                Some("yandex.com.tr"),
            ),
            (
                Some("https://www.ecosia.org/"),
                p,
                none(),
                OrganicSearch,
                Some("ecosia.org"),
            ),
            (
                Some("https://search.brave.com/"),
                p,
                none(),
                OrganicSearch,
                Some("search.brave.com"),
            ),
            (
                Some("https://www.startpage.com/"),
                p,
                none(),
                OrganicSearch,
                Some("startpage.com"),
            ),
            (
                Some("https://www.qwant.com/"),
                p,
                none(),
                OrganicSearch,
                Some("qwant.com"),
            ),
            (
                Some("https://m.search.naver.com/"),
                p,
                none(),
                OrganicSearch,
                Some("m.search.naver.com"),
            ),
            (
                Some("google.com"),
                p,
                none(),
                OrganicSearch,
                Some("google.com"),
            ),
            // Google properties that are not search
            (
                Some("https://docs.google.com/document/d/1"),
                p,
                none(),
                Referral,
                Some("docs.google.com"),
            ),
            (
                Some("https://accounts.google.com/"),
                p,
                none(),
                Referral,
                Some("accounts.google.com"),
            ),
            (
                Some("https://googleblog.com/"),
                p,
                none(),
                Referral,
                Some("googleblog.com"),
            ),
            (
                Some("https://news.yahoo.com/"),
                p,
                none(),
                Referral,
                Some("news.yahoo.com"),
            ),
            // Social
            (
                Some("https://l.facebook.com/l.php?u=x"),
                p,
                none(),
                Social,
                Some("l.facebook.com"),
            ),
            (
                Some("https://m.facebook.com/"),
                p,
                none(),
                Social,
                Some("m.facebook.com"),
            ),
            (Some("https://t.co/abc"), p, none(), Social, Some("t.co")),
            (Some("https://x.com/"), p, none(), Social, Some("x.com")),
            (
                Some("https://twitter.com/"),
                p,
                none(),
                Social,
                Some("twitter.com"),
            ),
            (
                Some("https://www.linkedin.com/feed/"),
                p,
                none(),
                Social,
                Some("linkedin.com"),
            ),
            (
                Some("https://lnkd.in/x"),
                p,
                none(),
                Social,
                Some("lnkd.in"),
            ),
            (
                Some("https://old.reddit.com/r/rust/"),
                p,
                none(),
                Social,
                Some("old.reddit.com"),
            ),
            (
                Some("https://l.instagram.com/"),
                p,
                none(),
                Social,
                Some("l.instagram.com"),
            ),
            (
                Some("https://www.youtube.com/"),
                p,
                none(),
                Social,
                Some("youtube.com"),
            ),
            (
                Some("https://www.pinterest.co.uk/"),
                p,
                none(),
                Social,
                Some("pinterest.co.uk"),
            ),
            (
                Some("https://www.tiktok.com/"),
                p,
                none(),
                Social,
                Some("tiktok.com"),
            ),
            (
                Some("https://news.ycombinator.com/item?id=1"),
                p,
                none(),
                Social,
                Some("news.ycombinator.com"),
            ),
            (
                Some("android-app://com.linkedin.android/"),
                p,
                none(),
                Social,
                Some("com.linkedin.android"),
            ),
            // Look-alikes are referrals.
            (
                Some("https://box.com/"),
                p,
                none(),
                Referral,
                Some("box.com"),
            ),
            (
                Some("https://notfacebook.com/"),
                p,
                none(),
                Referral,
                Some("notfacebook.com"),
            ),
            (
                Some("https://mastodon.example/@a"),
                p,
                none(),
                Referral,
                Some("mastodon.example"),
            ),
            // Email
            (
                Some("https://mail.google.com/"),
                p,
                none(),
                Email,
                Some("mail.google.com"),
            ),
            (
                Some("https://outlook.live.com/mail/0/"),
                p,
                none(),
                Email,
                Some("outlook.live.com"),
            ),
            (
                Some("https://mail.yahoo.com/"),
                p,
                none(),
                Email,
                Some("mail.yahoo.com"),
            ),
            (
                Some("https://webmail.example.net/"),
                p,
                none(),
                Email,
                Some("webmail.example.net"),
            ),
            (
                Some("android-app://com.google.android.gm/"),
                p,
                none(),
                Email,
                Some("com.google.android.gm"),
            ),
            // Referral
            (
                Some("https://blog.rust-lang.org/post"),
                p,
                none(),
                Referral,
                Some("blog.rust-lang.org"),
            ),
            (
                Some("https://GitHub.com/tally/tally"),
                p,
                none(),
                Referral,
                Some("github.com"),
            ),
        ]);
    }

    #[test]
    fn utm_rules_and_precedence() {
        use Channel::*;
        let p = Some(PAGE);
        let google = Some("https://www.google.com/");
        let fb = Some("https://l.facebook.com/");
        check(&[
            // 1. Paid click ids beat everything, even an email medium.
            (google, p, utm("/?gclid=abc"), Paid, Some("google.com")),
            (None, p, utm("/?msclkid=abc"), Paid, None),
            (None, p, utm("/?gclid=abc&utm_medium=email"), Paid, None),
            (
                Some("https://www.example.com/"),
                p,
                utm("/?gbraid=1"),
                Paid,
                Some("example.com"),
            ),
            // 2. Paid mediums.
            (google, p, utm("/?utm_medium=cpc"), Paid, Some("google.com")),
            (
                fb,
                p,
                utm("/?utm_medium=paid_social"),
                Paid,
                Some("l.facebook.com"),
            ),
            (None, p, utm("/?utm_medium=PPC"), Paid, None),
            (None, p, utm("/?utm_medium=paidsearch"), Paid, None),
            (None, p, utm("/?utm_medium=Paid-Search"), Paid, None),
            (None, p, utm("/?utm_medium=display"), Paid, None),
            (None, p, utm("/?utm_medium=google_cpc"), Paid, None),
            // 3. Email by medium or source, over the referrer.
            (
                fb,
                p,
                utm("/?utm_medium=email"),
                Email,
                Some("l.facebook.com"),
            ),
            (None, p, utm("/?utm_medium=Newsletter"), Email, None),
            (None, p, utm("/?utm_medium=e-mail"), Email, None),
            (None, p, utm("/?utm_source=newsletter"), Email, None),
            // 4.-6. Other mediums beat the referrer.
            (
                google,
                p,
                utm("/?utm_medium=social"),
                Social,
                Some("google.com"),
            ),
            (None, p, utm("/?utm_medium=social-media"), Social, None),
            (
                fb,
                p,
                utm("/?utm_medium=organic"),
                OrganicSearch,
                Some("l.facebook.com"),
            ),
            (
                google,
                p,
                utm("/?utm_medium=referral"),
                Referral,
                Some("google.com"),
            ),
            // 7. Known sources.
            (None, p, utm("/?utm_source=twitter"), Social, None),
            (
                None,
                p,
                utm("/?utm_source=Facebook&utm_campaign=x"),
                Social,
                None,
            ),
            (None, p, utm("/?utm_source=google"), OrganicSearch, None),
            (
                None,
                p,
                utm("/?utm_source=news.ycombinator.com"),
                Social,
                None,
            ),
            (None, p, utm("/?utm_source=mailchimp"), Email, None),
            // Source beats referrer, the paid medium beats the source.
            (
                Some("https://t.co/x"),
                p,
                utm("/?utm_source=google"),
                OrganicSearch,
                Some("t.co"),
            ),
            (
                None,
                p,
                utm("/?utm_source=facebook&utm_medium=cpc"),
                Paid,
                None,
            ),
            // fbclid alone is social, not paid; with a referrer too.
            (None, p, utm("/?fbclid=IwAR"), Social, None),
            (fb, p, utm("/?fbclid=IwAR"), Social, Some("l.facebook.com")),
            // 8. Unknown tags fall through to the referrer...
            (
                google,
                p,
                utm("/?utm_source=partner-site&utm_medium=weird"),
                OrganicSearch,
                Some("google.com"),
            ),
            (
                Some("https://www.example.com/"),
                p,
                utm("/?utm_campaign=spring"),
                Internal,
                Some("example.com"),
            ),
            // ...and without a referrer, tagged traffic is a referral.
            (None, p, utm("/?utm_campaign=spring"), Referral, None),
            (
                None,
                p,
                utm("/?utm_source=partner-site&utm_medium=weird"),
                Referral,
                None,
            ),
        ]);
    }

    #[test]
    fn explicit_tags_merge_then_classify() {
        let page = "https://example.com/?utm_source=google&utm_medium=cpc";
        let explicit = Utm {
            medium: Some("email".into()),
            ..Utm::default()
        };
        let merged = Utm::from_url(page).merge_over(explicit);
        let info = classify(None, Some(page), &merged);
        assert_eq!(info.channel, Channel::Email);
    }

    #[test]
    fn channel_names() {
        let names: Vec<&str> = Channel::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(
            names,
            [
                "direct",
                "internal",
                "organic_search",
                "social",
                "email",
                "paid",
                "referral"
            ]
        );
        for c in Channel::ALL {
            assert_eq!(Channel::from_name(c.as_str()), Some(c));
            assert_eq!(c.to_string(), c.as_str());
        }
        assert_eq!(Channel::from_name("Direct"), None);
    }

    #[test]
    fn brand_prefix_cases() {
        for (host, brand, want) in [
            ("google.com", "google", Some("")),
            ("google.co.uk", "google", Some("")),
            ("google.com.au", "google", Some("")),
            ("docs.google.com", "google", Some("docs")),
            ("a.b.google.de", "google", Some("a.b")),
            ("google.example.com", "google", None),
            ("google", "google", None),
            ("notgoogle.com", "google", None),
            ("google.com.evil.io", "google", None),
        ] {
            assert_eq!(brand_prefix(host, brand), want, "{host}");
        }
    }

    #[test]
    fn long_garbage_does_not_panic() {
        let garbage: String = (0..10_000)
            .map(|i| char::from(b' ' + (i * 11 % 95) as u8))
            .collect();
        let g = Some(garbage.as_str());
        let _ = classify(g, g, &Utm::from_url(&garbage));
        let host = format!("https://{}.com/", "a.".repeat(4_000));
        let _ = classify(Some(&host), Some(&host), &Utm::default());
    }

    proptest! {
        #[test]
        fn classify_never_panics(r in proptest::option::of(any::<String>()), p in proptest::option::of(any::<String>()), q in any::<String>()) {
            let utm = Utm::from_url(&q);
            let info = classify(r.as_deref(), p.as_deref(), &utm);
            if let Some(h) = info.host {
                prop_assert!(!h.is_empty());
                prop_assert_eq!(h.to_ascii_lowercase(), h);
            }
        }

        #[test]
        fn classify_url_like_never_panics(
            r in "(https?://)?(www\\.)?[a-z.]{0,12}\\.(com|co\\.uk|de|t\\.co)(/[a-z]{0,5})?",
            m in proptest::option::of("[a-zA-Z _-]{0,10}"),
            s in proptest::option::of("[a-zA-Z ._-]{0,10}"),
        ) {
            let utm = Utm { medium: m, source: s, ..Utm::default() };
            let _ = classify(Some(&r), Some(PAGE), &utm);
        }
    }
}
