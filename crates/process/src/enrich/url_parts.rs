//! Splitting a page or referrer URL into host and path.
//!
//! [`split`] accepts what clients actually send, not only well-formed
//! absolute URLs:
//!
//! | input                        | host              | path         |
//! |------------------------------|-------------------|--------------|
//! | `https://Example.com/a?b#c`  | `example.com`     | `/a`         |
//! | `https://example.com`        | `example.com`     | `/`          |
//! | `//cdn.example.com/x`        | `cdn.example.com` | `/x`         |
//! | `example.com/pricing`        | `example.com`     | `/pricing`   |
//! | `localhost:3000/a`           | `localhost`       | `/a`         |
//! | `/pricing?x=1`               | `None`            | `/pricing`   |
//! | `pricing`                    | `None`            | `/pricing`   |
//!
//! and `split` returns `None` for `""`, `mailto:a@b.c`, `about:blank` or
//! `http://`.
//!
//! Normalisation rules:
//!
//! * the host is lowercased, its trailing dot and any port are dropped;
//!   `www.` is **kept** (a page host is an identity; referrer
//!   classification strips it separately with [`normalize_host`]).
//!   International domain names come out in punycode (`xn--…`), as the
//!   `url` crate produces them.
//! * the path never contains the query or fragment, is `/` when empty,
//!   has `.`/`..` segments resolved, and is percent-encoded the way the
//!   `url` crate serialises it (so `/café` and `/caf%C3%A9` agree).
//!   A trailing slash is kept: `/pricing/` and `/pricing` stay distinct.
//! * a scheme-less input whose first segment looks like a host name
//!   (`example.com`, `localhost:8080`, `10.0.0.1`) is read as a host,
//!   because clients that strip the scheme send hosts far more often than
//!   relative paths without a leading slash. Segments ending in a common
//!   file extension (`index.html`) are read as paths.

use url::Url;

/// Host and path of a URL, see [`split`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UrlParts {
    /// Lowercased host without port or trailing dot; `None` for a relative
    /// URL (or an absolute one without a host, such as `file:///x`).
    pub host: Option<String>,
    /// Path without query string or fragment, `/` if empty.
    pub path: String,
}

/// Base used to resolve relative references; never shows in the output.
const RELATIVE_BASE: &str = "http://relative.invalid/";

/// Last labels that make a scheme-less first segment a file, not a host.
const FILE_EXTENSIONS: &[&str] = &[
    "html", "htm", "xhtml", "php", "asp", "aspx", "jsp", "cgi", "pl", "js", "mjs", "css", "json",
    "xml", "txt", "pdf", "png", "jpg", "jpeg", "gif", "svg", "webp", "ico", "md",
];

/// Splits `url` into its host and path.
///
/// Returns `None` for an empty (or all-whitespace) string, for URLs that
/// have no hierarchical path (`mailto:`, `data:`, `javascript:`,
/// `about:blank`), and for inputs the `url` crate rejects outright
/// (`http://`, invalid ports or IP literals). Never panics.
///
/// See the [module documentation](self) for the normalisation rules.
pub fn split(url: &str) -> Option<UrlParts> {
    let s = url.trim();
    if s.is_empty() {
        return None;
    }
    let parsed = if let Some(rest) = s.strip_prefix("//") {
        // Protocol-relative: the scheme does not matter for host/path.
        Url::parse(&format!("https://{rest}")).ok()?
    } else if s.starts_with(['/', '?', '#', '.']) {
        return relative(s);
    } else if !s.contains("://") && first_segment_is_host(s) {
        Url::parse(&format!("https://{s}")).ok()?
    } else {
        match Url::parse(s) {
            Ok(u) => u,
            Err(url::ParseError::RelativeUrlWithoutBase) => return relative(s),
            Err(_) => return None,
        }
    };
    if parsed.cannot_be_a_base() {
        return None;
    }
    Some(UrlParts {
        host: parsed.host_str().and_then(clean_host),
        path: path_of(&parsed),
    })
}

/// Lowercases a host, strips a leading `www.`, a trailing dot and
/// surrounding whitespace. Returns an empty string for an empty host.
///
/// This is the host form used by referrer classification and reported in
/// [`ReferrerInfo::host`](super::ReferrerInfo::host).
pub fn normalize_host(host: &str) -> String {
    let h = host.trim().trim_end_matches('.').to_ascii_lowercase();
    match h.strip_prefix("www.") {
        Some(rest) if !rest.is_empty() => rest.to_owned(),
        _ => h,
    }
}

/// Resolves a relative reference against a dummy base: host `None`.
fn relative(s: &str) -> Option<UrlParts> {
    let base = Url::parse(RELATIVE_BASE).ok()?;
    let joined = base.join(s).ok()?;
    Some(UrlParts {
        host: None,
        path: path_of(&joined),
    })
}

fn path_of(u: &Url) -> String {
    match u.path() {
        "" => "/".to_owned(),
        p => p.to_owned(),
    }
}

fn clean_host(h: &str) -> Option<String> {
    let h = h.trim_end_matches('.').to_ascii_lowercase();
    (!h.is_empty()).then_some(h)
}

/// Whether the part of a scheme-less `s` before the first `/`, `?` or `#`
/// looks like `host[:port]`.
fn first_segment_is_host(s: &str) -> bool {
    let seg = s.split(['/', '?', '#']).next().unwrap_or_default();
    let (host, port) = match seg.rsplit_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (seg, None),
    };
    if let Some(p) = port
        && (p.is_empty() || p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit()))
    {
        return false;
    }
    if host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    if host.is_empty() || host.len() > 253 || !host.contains('.') {
        return false;
    }
    let valid_chars = host
        .chars()
        .all(|c| c.is_alphanumeric() || c == '-' || c == '.');
    if !valid_chars {
        return false;
    }
    let labels: Vec<&str> = host.split('.').collect();
    if labels
        .iter()
        .any(|l| l.is_empty() || l.starts_with('-') || l.ends_with('-'))
    {
        return false;
    }
    let last = labels[labels.len() - 1];
    if last.bytes().all(|b| b.is_ascii_digit()) {
        // Only a full dotted-quad counts as a host.
        return labels.len() == 4 && labels.iter().all(|l| l.parse::<u8>().is_ok());
    }
    !FILE_EXTENSIONS
        .iter()
        .any(|ext| last.eq_ignore_ascii_case(ext))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn parts(host: Option<&str>, path: &str) -> Option<UrlParts> {
        Some(UrlParts {
            host: host.map(str::to_owned),
            path: path.to_owned(),
        })
    }

    #[test]
    fn table() {
        let cases: &[(&str, Option<UrlParts>)] = &[
            (
                "https://example.com/pricing?x=1#top",
                parts(Some("example.com"), "/pricing"),
            ),
            ("https://Example.COM", parts(Some("example.com"), "/")),
            (
                "http://www.example.com:8080/a/b/",
                parts(Some("www.example.com"), "/a/b/"),
            ),
            ("https://example.com./x", parts(Some("example.com"), "/x")),
            (
                "https://user:pw@example.com/x",
                parts(Some("example.com"), "/x"),
            ),
            (
                "  https://example.com/x  ",
                parts(Some("example.com"), "/x"),
            ),
            (
                "https://example.com/a/../b/./c",
                parts(Some("example.com"), "/b/c"),
            ),
            (
                "https://example.com/caf\u{e9}",
                parts(Some("example.com"), "/caf%C3%A9"),
            ),
            (
                "https://example.com/caf%C3%A9",
                parts(Some("example.com"), "/caf%C3%A9"),
            ),
            (
                "https://b\u{fc}cher.de/",
                parts(Some("xn--bcher-kva.de"), "/"),
            ),
            ("http://[::1]:3000/x", parts(Some("[::1]"), "/x")),
            (
                "//cdn.example.com/x?y",
                parts(Some("cdn.example.com"), "/x"),
            ),
            (
                "example.com/pricing",
                parts(Some("example.com"), "/pricing"),
            ),
            ("example.com", parts(Some("example.com"), "/")),
            ("localhost:3000/a?b", parts(Some("localhost"), "/a")),
            ("10.0.0.1:8080/x", parts(Some("10.0.0.1"), "/x")),
            (
                "android-app://com.google.android.gm/",
                parts(Some("com.google.android.gm"), "/"),
            ),
            ("/pricing?x=1", parts(None, "/pricing")),
            ("/", parts(None, "/")),
            ("?utm_source=x", parts(None, "/")),
            ("#frag", parts(None, "/")),
            ("pricing", parts(None, "/pricing")),
            ("index.html", parts(None, "/index.html")),
            ("docs/index.html?x", parts(None, "/docs/index.html")),
            ("./a/../b", parts(None, "/b")),
            ("/a b", parts(None, "/a%20b")),
            ("file:///etc/hosts", parts(None, "/etc/hosts")),
            ("", None),
            ("   ", None),
            ("http://", None),
            ("https://example.com:99999/", None),
            ("mailto:someone@example.com", None),
            ("javascript:alert(1)", None),
            ("data:text/html,hi", None),
            ("about:blank", None),
        ];
        for (input, want) in cases {
            assert_eq!(&split(input), want, "split({input:?})");
        }
    }

    #[test]
    fn normalize_host_cases() {
        for (input, want) in [
            ("WWW.Example.com", "example.com"),
            ("www.example.com.", "example.com"),
            ("example.com", "example.com"),
            ("www.", "www"),
            ("wwwexample.com", "wwwexample.com"),
            ("m.facebook.com", "m.facebook.com"),
            ("", ""),
        ] {
            assert_eq!(normalize_host(input), want, "normalize_host({input:?})");
        }
    }

    #[test]
    fn long_garbage_does_not_panic() {
        let garbage: String = (0..10_000)
            .map(|i| char::from(b' ' + (i * 7 % 95) as u8))
            .collect();
        let _ = split(&garbage);
        let _ = split(&"a.".repeat(5_000));
        let _ = split(&format!("https://{}", "a".repeat(10_000)));
    }

    proptest! {
        #[test]
        fn split_never_panics(s in any::<String>()) {
            if let Some(p) = split(&s) {
                prop_assert!(p.path.starts_with('/'));
                prop_assert!(!p.path.contains('?'));
                prop_assert!(!p.path.contains('#'));
            }
        }

        #[test]
        fn split_url_like_never_panics(
            s in "(https?://|//)?[a-zA-Z0-9.:@\\[\\]-]{0,20}(/[a-z%0-9.]{0,8}){0,3}(\\?[a-z=&%]{0,10})?(#.{0,5})?"
        ) {
            if let Some(p) = split(&s) {
                prop_assert!(p.path.starts_with('/'));
                if let Some(h) = p.host {
                    prop_assert_eq!(h.to_ascii_lowercase(), h);
                }
            }
        }
    }
}
