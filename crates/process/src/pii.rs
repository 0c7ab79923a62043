//! PII scrubbing: personal data that should never reach storage is found in an event's free
//! text (properties, label, page URL, title and referrer, person and group traits) and dropped,
//! masked or replaced by a salted hash before anything is written.
//!
//! Two kinds of rules:
//! - **By property name** (at any depth, case-insensitive, ignoring `_`, `-` and spaces):
//!   `password` or `credit_card` name a secret whatever their value looks like.
//! - **By pattern** inside any text: e-mail addresses, phone numbers in international
//!   (`+49 30 1234567`) or North American (`(555) 123-4567`) notation, card numbers that pass
//!   the Luhn check, IBANs that pass the ISO 13616 mod-97 check, and text that is an IP address
//!   as a whole (handled like `context.ip`, by the [`IpMode`]). Bare digit runs are not taken for
//!   phone numbers, so ids, amounts and timestamps are left alone.
//!
//! Actions: `drop` removes the property (for a pattern: the whole text that holds it), `mask`
//! replaces it by `[email]`, `[phone]`, `[card]`, `[iban]` (or `[redacted]` for a named
//! property), `hash` by `[email:` + 16 hex digits of HMAC-SHA256 under the server's secret
//! salt + `]`, so that equal values still group and count together without being readable.
//!
//! The user and anonymous ids are never changed: they identify the person (hash an e-mail
//! address used as an id before sending it, or erase the person).

use std::collections::BTreeMap;
use std::str::FromStr;
use std::sync::LazyLock;

use hmac::{Hmac, Mac};
use regex::{Captures, Regex};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::Sha256;

use crate::privacy::{IpMode, anonymize_ip};

/// What is done with personal data that a rule found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PiiAction {
    Drop,
    Mask,
    Hash,
    /// Leave it (to turn a default rule off).
    Keep,
}

impl FromStr for PiiAction {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "drop" => Ok(Self::Drop),
            "mask" => Ok(Self::Mask),
            "hash" => Ok(Self::Hash),
            "keep" => Ok(Self::Keep),
            other => Err(format!(
                "unknown PII action `{other}`: use drop, mask, hash or keep"
            )),
        }
    }
}

/// The patterns found in text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PiiPattern {
    Email,
    Card,
    Iban,
    Phone,
}

impl PiiPattern {
    pub const ALL: [Self; 4] = [Self::Email, Self::Card, Self::Iban, Self::Phone];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Email => "email",
            Self::Card => "card",
            Self::Iban => "iban",
            Self::Phone => "phone",
        }
    }
}

/// A rule by property name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NameRule {
    /// The property's name, matched at any depth, case-insensitive, ignoring `_`, `-` and spaces.
    pub name: String,
    pub action: PiiAction,
}

/// The PII rules of a project (or of the server, by default).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PiiPolicy {
    /// What is done with each pattern found in text; patterns left out keep their default.
    pub patterns: BTreeMap<PiiPattern, PiiAction>,
    /// Rules by property name, checked before the patterns; a name given here replaces the
    /// default rule of that name.
    pub properties: Vec<NameRule>,
}

/// Names of secrets: dropped by default.
const SECRET_NAMES: [&str; 17] = [
    "password",
    "passwordconfirmation",
    "passwd",
    "pwd",
    "secret",
    "token",
    "accesstoken",
    "refreshtoken",
    "apikey",
    "authorization",
    "ssn",
    "socialsecuritynumber",
    "creditcard",
    "cardnumber",
    "ccnumber",
    "cvv",
    "cvc",
];
/// Names of contact data: hashed by default (they still count and group).
const CONTACT_NAMES: [&str; 6] = [
    "email",
    "emailaddress",
    "phone",
    "phonenumber",
    "mobile",
    "telephone",
];

impl Default for PiiPolicy {
    /// On by default for the obvious: every pattern masked, secrets dropped, contact data
    /// hashed.
    fn default() -> Self {
        Self {
            patterns: PiiPattern::ALL
                .iter()
                .map(|p| (*p, PiiAction::Mask))
                .collect(),
            properties: SECRET_NAMES
                .iter()
                .map(|n| (n, PiiAction::Drop))
                .chain(CONTACT_NAMES.iter().map(|n| (n, PiiAction::Hash)))
                .map(|(n, action)| NameRule {
                    name: (*n).to_owned(),
                    action,
                })
                .collect(),
        }
    }
}

/// Most name rules in a policy.
pub const MAX_NAME_RULES: usize = 200;

impl PiiPolicy {
    /// No rule at all (everything kept).
    pub fn off() -> Self {
        Self {
            patterns: PiiPattern::ALL
                .iter()
                .map(|p| (*p, PiiAction::Keep))
                .collect(),
            properties: Vec::new(),
        }
    }

    /// A policy from its JSON: what it gives overrides the defaults, pattern by pattern and
    /// name by name (`"defaults": false` starts from no rule at all instead). Errors name the
    /// field.
    pub fn from_json(v: &Value) -> Result<Self, tally_core::FieldError> {
        /// The policy as written: every part optional.
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Spec {
            #[serde(default)]
            defaults: Option<bool>,
            #[serde(default)]
            patterns: BTreeMap<PiiPattern, PiiAction>,
            #[serde(default)]
            properties: Vec<NameRule>,
        }
        let given: Spec = serde_json::from_value(v.clone())
            .map_err(|e| tally_core::FieldError::new("invalid_pii_policy", "pii", e.to_string()))?;
        if given.properties.len() > MAX_NAME_RULES {
            return Err(tally_core::FieldError::new(
                "invalid_pii_policy",
                "pii.properties",
                format!("at most {MAX_NAME_RULES} rules"),
            ));
        }
        let mut policy = if given.defaults.unwrap_or(true) {
            Self::default()
        } else {
            Self::off()
        };
        policy.patterns.extend(given.patterns);
        for (i, rule) in given.properties.into_iter().enumerate() {
            let key = normalize(&rule.name);
            if key.is_empty() || rule.name.len() > 200 {
                return Err(tally_core::FieldError::new(
                    "invalid_pii_policy",
                    format!("pii.properties[{i}].name"),
                    "a property name of 1 to 200 characters",
                ));
            }
            policy.properties.retain(|r| normalize(&r.name) != key);
            policy.properties.push(rule);
        }
        Ok(policy)
    }

    /// The policy in a JSON file (see [`Self::from_json`]), or the default without one.
    pub fn load(path: Option<&std::path::Path>) -> Result<Self, String> {
        let Some(path) = path else {
            return Ok(Self::default());
        };
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("reading the PII policy {}: {e}", path.display()))?;
        let v: Value = serde_json::from_str(&text)
            .map_err(|e| format!("the PII policy {} is not JSON: {e}", path.display()))?;
        Self::from_json(&v).map_err(|e| {
            format!(
                "the PII policy {}: {}: {}",
                path.display(),
                e.field,
                e.message
            )
        })
    }

    fn for_pattern(&self, p: PiiPattern) -> PiiAction {
        self.patterns.get(&p).copied().unwrap_or(PiiAction::Mask)
    }
}

fn normalize(name: &str) -> String {
    name.chars()
        .filter(|c| !matches!(c, '_' | '-' | ' ' | '.' | '$'))
        .flat_map(char::to_lowercase)
        .collect()
}

/// Applies a [`PiiPolicy`] with the server's salt and IP mode.
#[derive(Clone)]
pub struct PiiScrubber {
    policy: PiiPolicy,
    /// The name rules by normalized name (the last rule of a name wins).
    names: std::collections::HashMap<String, PiiAction>,
    /// The rules of five or more characters, longest first: they also match names ending
    /// with them.
    suffixes: Vec<(String, PiiAction)>,
    ip_mode: IpMode,
    mac: Hmac<Sha256>,
}

impl std::fmt::Debug for PiiScrubber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PiiScrubber")
            .field("policy", &self.policy)
            .field("ip_mode", &self.ip_mode)
            .finish_non_exhaustive()
    }
}

/// What a scrubbed string became.
#[derive(Debug, PartialEq, Eq)]
pub enum Scrubbed {
    /// Nothing personal found.
    Unchanged,
    /// Rewritten.
    Changed(String),
    /// To be removed.
    Drop,
}

// ASCII classes and boundaries throughout, so that the regex engine's DFA runs on any text.
static EMAIL: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i-u)[a-z0-9._%+'\-]+@[a-z0-9\-]+(?:\.[a-z0-9\-]+)*\.[a-z]{2,}").expect("email")
});
/// 13 to 19 digits, optionally in groups separated by single spaces or dashes; the match is
/// then checked by [`card_number`].
static CARD: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"[0-9](?:[ \-]?[0-9]){12,18}").expect("card"));
/// Written without spaces, or in groups of four separated by single spaces.
static IBAN: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?i-u)\b[a-z]{2}[0-9]{2}(?:[a-z0-9]{11,30}|(?: [a-z0-9]{4}){2,7}(?: [a-z0-9]{1,4})?)\b",
    )
    .expect("iban")
});
/// International (`+49 …`, `0049 …`) or North American (`(555) 123-4567`, `555-123-4567`).
static PHONE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(concat!(
        r"(?:\+|\b00)[0-9]{1,3}[ .\-]?(?:\([0-9]{1,4}\)[ .\-]?)?[0-9]{1,4}(?:[ .\-]?[0-9]{1,5}){1,5}",
        r"|\([0-9]{3}\) ?[0-9]{3}[ .\-][0-9]{4}",
        r"|(?-u:\b)[0-9]{3}[.\-][0-9]{3}[.\-][0-9]{4}(?-u:\b)",
    ))
    .expect("phone")
});

/// Whether the bytes around `start..end` of `text` join a match to a longer token (an id, a
/// UUID, a decimal number), in which case it is not a number of its own.
fn joined(text: &[u8], start: usize, end: usize) -> bool {
    let part = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_');
    let before = start
        .checked_sub(1)
        .and_then(|i| text.get(i))
        .is_some_and(|&b| part(b) || b == b'.');
    let after = match text.get(end) {
        Some(&b'.') => text.get(end + 1).is_some_and(u8::is_ascii_digit),
        Some(&b) => part(b),
        None => false,
    };
    before || after
}

/// Whether `m` (a [`CARD`] match at `start..end` of `text`) is a card number: a token of its
/// own, one kind of separator, a known issuer's prefix and the Luhn check.
fn card_number(text: &str, start: usize, end: usize) -> bool {
    if joined(text.as_bytes(), start, end) {
        return false;
    }
    let m = &text[start..end];
    let separators: Vec<u8> = m.bytes().filter(|b| !b.is_ascii_digit()).collect();
    if separators.windows(2).any(|w| w[0] != w[1]) {
        return false;
    }
    let digits: String = m.chars().filter(char::is_ascii_digit).collect();
    (13..=19).contains(&digits.len()) && known_issuer(&digits) && luhn(&digits)
}

/// Visa, Mastercard, American Express, Diners Club, JCB, Discover, UnionPay, Maestro prefixes.
fn known_issuer(d: &str) -> bool {
    let n = |k: usize| d.get(..k).and_then(|p| p.parse::<u32>().ok()).unwrap_or(0);
    match d.as_bytes().first() {
        Some(b'4') => true,
        Some(b'5') => (51..=55).contains(&n(2)) || (56..=58).contains(&n(2)) || n(2) == 50,
        Some(b'2') => (2221..=2720).contains(&n(4)),
        Some(b'3') => matches!(n(2), 30 | 34 | 36 | 37 | 38 | 39) || (3528..=3589).contains(&n(4)),
        Some(b'6') => {
            n(4) == 6011 || matches!(n(2), 62 | 65 | 63 | 67) || (644..=649).contains(&n(3))
        }
        _ => false,
    }
}

/// The digits of a [`PHONE`] match at most 15 (E.164): a longer match is cut at the last
/// separator that leaves 8 to 15 digits; `None` when it is no phone number.
fn phone_end(m: &str) -> Option<usize> {
    let count = |t: &str| t.bytes().filter(u8::is_ascii_digit).count();
    let n = count(m);
    if (8..=15).contains(&n) {
        return Some(m.len());
    }
    if n < 8 {
        return None;
    }
    m.char_indices()
        .filter(|(_, c)| matches!(c, ' ' | '.' | '-'))
        .map(|(i, _)| i)
        .rev()
        .find(|&i| (8..=15).contains(&count(&m[..i])))
}

/// The Luhn check of a card number's digits (other characters are skipped).
pub fn luhn(digits: &str) -> bool {
    let mut sum = 0;
    let mut any = false;
    for (i, c) in digits.bytes().filter(u8::is_ascii_digit).rev().enumerate() {
        any = true;
        let mut d = u32::from(c - b'0');
        if i % 2 == 1 {
            d *= 2;
            if d > 9 {
                d -= 9;
            }
        }
        sum += d;
    }
    any && sum % 10 == 0
}

/// The ISO 13616 check of an IBAN (spaces removed): 15 to 34 characters, mod 97 equals 1.
pub fn iban_valid(iban: &str) -> bool {
    let b = iban.as_bytes();
    if !(15..=34).contains(&b.len())
        || !b[..2].iter().all(u8::is_ascii_alphabetic)
        || !b[2..4].iter().all(u8::is_ascii_digit)
        || !b.iter().all(u8::is_ascii_alphanumeric)
    {
        return false;
    }
    let mut rem: u32 = 0;
    for c in b[4..].iter().chain(&b[..4]) {
        let v = if c.is_ascii_digit() {
            u32::from(c - b'0')
        } else {
            u32::from(c.to_ascii_uppercase() - b'A') + 10
        };
        rem = if v >= 10 {
            (rem * 100 + v) % 97
        } else {
            (rem * 10 + v) % 97
        };
    }
    rem == 1
}

impl PiiScrubber {
    /// `salt` keys the hashes: keep it secret and stable (the server keeps one in its catalog).
    pub fn new(policy: PiiPolicy, ip_mode: IpMode, salt: &[u8]) -> Self {
        let mac = Hmac::<Sha256>::new_from_slice(salt).expect("HMAC takes keys of any length");
        let names: std::collections::HashMap<String, PiiAction> = policy
            .properties
            .iter()
            .map(|r| (normalize(&r.name), r.action))
            .collect();
        let mut suffixes: Vec<(String, PiiAction)> = names
            .iter()
            .filter(|(n, _): &(&String, &PiiAction)| n.len() >= 5)
            .map(|(n, a)| (n.clone(), *a))
            .collect();
        suffixes.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then(a.0.cmp(&b.0)));
        Self {
            policy,
            names,
            suffixes,
            ip_mode,
            mac,
        }
    }

    pub fn policy(&self) -> &PiiPolicy {
        &self.policy
    }

    fn hash(&self, kind: &str, text: &str) -> String {
        let mut mac = self.mac.clone();
        mac.update(kind.as_bytes());
        mac.update(&[0]);
        mac.update(text.as_bytes());
        let digest = mac.finalize().into_bytes();
        format!("[{kind}:{}]", hex::encode(&digest[..8]))
    }

    /// What `action` makes of personal data `m` of kind `p`.
    fn replacement(&self, p: PiiPattern, action: PiiAction, m: &str) -> String {
        match action {
            PiiAction::Hash => {
                // Equal values hash equal however they were written.
                let canonical: String = match p {
                    PiiPattern::Email => m.to_lowercase(),
                    _ => m
                        .chars()
                        .filter(char::is_ascii_alphanumeric)
                        .map(|c| c.to_ascii_uppercase())
                        .collect(),
                };
                self.hash(p.as_str(), &canonical)
            }
            _ => format!("[{}]", p.as_str()),
        }
    }

    /// Scrubs free text.
    pub fn scrub_str(&self, text: &str) -> Scrubbed {
        let has_at = text.contains('@');
        let digits = text.bytes().filter(u8::is_ascii_digit).count();
        if !has_at && digits < 7 {
            return Scrubbed::Unchanged;
        }
        let mut out: Option<String> = None;
        for p in PiiPattern::ALL {
            let action = self.policy.for_pattern(p);
            if action == PiiAction::Keep || (p == PiiPattern::Email && !has_at) {
                continue;
            }
            if p != PiiPattern::Email && digits < 7 {
                continue;
            }
            let current = out.as_deref().unwrap_or(text);
            let re: &Regex = match p {
                PiiPattern::Email => &EMAIL,
                PiiPattern::Card => &CARD,
                PiiPattern::Iban => &IBAN,
                PiiPattern::Phone => &PHONE,
            };
            let mut found = false;
            let replaced = re.replace_all(current, |c: &Captures<'_>| {
                let whole = c.get(0).expect("a match");
                let m = whole.as_str();
                let found_at: Option<(&str, &str)> = match p {
                    // `logo@2x.png` is an image, not an address.
                    PiiPattern::Email => {
                        let domain = m.split('@').nth(1).unwrap_or("");
                        let image = domain.split_once("x.").is_some_and(|(scale, _)| {
                            !scale.is_empty() && scale.bytes().all(|b| b.is_ascii_digit())
                        });
                        (!image).then_some((m, ""))
                    }
                    PiiPattern::Card => {
                        card_number(current, whole.start(), whole.end()).then_some((m, ""))
                    }
                    PiiPattern::Iban => {
                        iban_valid(&m.chars().filter(|c| *c != ' ').collect::<String>())
                            .then_some((m, ""))
                    }
                    PiiPattern::Phone => phone_end(m).map(|e| m.split_at(e)),
                };
                let Some((hit, rest)) = found_at else {
                    return m.to_owned();
                };
                found = true;
                format!("{}{rest}", self.replacement(p, action, hit))
            });
            if found {
                if action == PiiAction::Drop {
                    return Scrubbed::Drop;
                }
                out = Some(replaced.into_owned());
            }
        }
        out.map_or(Scrubbed::Unchanged, Scrubbed::Changed)
    }

    /// Scrubs a URL (or a referrer): as text, and once more percent-decoded, so that
    /// `?email=jane%40example.com` is found too. When only the decoded form holds personal data,
    /// the scrubbed decoded form is kept.
    pub fn scrub_url(&self, url: &str) -> Scrubbed {
        let first = self.scrub_str(url);
        let text = match &first {
            Scrubbed::Drop => return Scrubbed::Drop,
            Scrubbed::Changed(t) => t.as_str(),
            Scrubbed::Unchanged => url,
        };
        if !text.contains('%') && !text.contains('+') {
            return first;
        }
        // `+` is a space in a query string.
        let spaced = match text.split_once('?') {
            Some((head, query)) => format!("{head}?{}", query.replace('+', " ")),
            None => text.to_owned(),
        };
        let decoded = percent_encoding::percent_decode_str(&spaced).decode_utf8_lossy();
        match self.scrub_str(&decoded) {
            Scrubbed::Unchanged => first,
            other => other,
        }
    }

    /// Whether `name` (normalized) names an IP address property: `ip`, `client_ip`, `$ip`,
    /// `ip_address`.
    fn names_ip(name: &str) -> bool {
        // As `normalize(name).ends_with(..)`, without allocating for every property.
        let mut tail = name
            .bytes()
            .rev()
            .filter(|b| !matches!(b, b'_' | b'-' | b' ' | b'.' | b'$'))
            .map(|b| b.to_ascii_lowercase());
        let ends = |suffix: &[u8], tail: &mut dyn Iterator<Item = u8>| {
            suffix.iter().rev().all(|s| tail.next() == Some(*s))
        };
        ends(b"ip", &mut tail.clone()) || ends(b"ipaddress", &mut tail)
    }

    /// An IP address held by a property named like one, by the IP mode; `None` when `text` is
    /// no address.
    fn scrub_ip(&self, text: &str) -> Option<Scrubbed> {
        let trimmed = text.trim();
        let ip: std::net::IpAddr = trimmed.parse().ok()?;
        Some(
            match (self.ip_mode, anonymize_ip(&ip.to_string(), self.ip_mode)) {
                (IpMode::Keep, _) => Scrubbed::Unchanged,
                (_, Some(kept)) if kept == trimmed => Scrubbed::Unchanged,
                (_, Some(kept)) => Scrubbed::Changed(kept),
                (_, None) => Scrubbed::Changed("[ip]".to_owned()),
            },
        )
    }

    /// Scrubs a JSON value in place: named properties at any depth, then every string. Returns
    /// whether the value itself is to be dropped (a string holding a pattern whose action is
    /// `drop`).
    pub fn scrub_value(&self, v: &mut Value) -> bool {
        match v {
            Value::String(s) => match self.scrub_str(s) {
                Scrubbed::Unchanged => false,
                Scrubbed::Changed(t) => {
                    *s = t;
                    false
                }
                Scrubbed::Drop => true,
            },
            Value::Array(items) => {
                items.retain_mut(|item| !self.scrub_value(item));
                false
            }
            Value::Object(map) => {
                map.retain(|k, item| match self.for_name(k) {
                    Some(PiiAction::Drop) => false,
                    Some(PiiAction::Mask) => {
                        if !item.is_null() {
                            *item = Value::String("[redacted]".to_owned());
                        }
                        true
                    }
                    Some(PiiAction::Hash) => {
                        if !item.is_null() {
                            let text = match &*item {
                                // A phone number hashes the same however it is spaced.
                                Value::String(s)
                                    if s.bytes().filter(u8::is_ascii_digit).count() >= 7
                                        && s.bytes().all(|b| {
                                            b.is_ascii_digit() || b" +()-./".contains(&b)
                                        }) =>
                                {
                                    s.bytes()
                                        .filter(|b| b.is_ascii_digit())
                                        .map(char::from)
                                        .collect()
                                }
                                Value::String(s) => s.trim().to_lowercase(),
                                other => other.to_string(),
                            };
                            *item = Value::String(self.hash("hash", &text));
                        }
                        true
                    }
                    Some(PiiAction::Keep) => true,
                    None => match item {
                        Value::String(text) if Self::names_ip(k) => {
                            match self.scrub_ip(text).unwrap_or_else(|| self.scrub_str(text)) {
                                Scrubbed::Unchanged => true,
                                Scrubbed::Changed(t) => {
                                    *text = t;
                                    true
                                }
                                Scrubbed::Drop => false,
                            }
                        }
                        _ => !self.scrub_value(item),
                    },
                });
                false
            }
            // A card number sent as a JSON number.
            Value::Number(n) if n.as_u64().is_some_and(|x| x >= 1_000_000_000_000) => {
                let digits = n.to_string();
                let action = self.policy.for_pattern(PiiPattern::Card);
                if action == PiiAction::Keep
                    || !(13..=19).contains(&digits.len())
                    || !card_number(&digits, 0, digits.len())
                {
                    return false;
                }
                if action == PiiAction::Drop {
                    return true;
                }
                *v = Value::String(self.replacement(PiiPattern::Card, action, &digits));
                false
            }
            _ => false,
        }
    }

    /// The action of the rule naming property `name`: its own name, or one of five or more
    /// characters that it ends with (`user_email`, `new_password`, `id_token`).
    fn for_name(&self, name: &str) -> Option<PiiAction> {
        let plain = name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
        let normalized;
        let key = if plain {
            name
        } else {
            normalized = normalize(name);
            &normalized
        };
        if let Some(a) = self.names.get(key) {
            return Some(*a);
        }
        self.suffixes
            .iter()
            .find(|(rule, _)| key.ends_with(rule.as_str()))
            .map(|(_, a)| *a)
    }

    /// Scrubs an object's properties in place.
    pub fn scrub_map(&self, map: &mut serde_json::Map<String, Value>) {
        let mut v = Value::Object(std::mem::take(map));
        self.scrub_value(&mut v);
        if let Value::Object(m) = v {
            *map = m;
        }
    }

    /// Scrubs optional text: `None` when it is to be dropped.
    pub fn scrub_opt(&self, text: Option<String>) -> Option<String> {
        let text = text?;
        match self.scrub_str(&text) {
            Scrubbed::Unchanged => Some(text),
            Scrubbed::Changed(t) => Some(t),
            Scrubbed::Drop => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn scrubber() -> PiiScrubber {
        PiiScrubber::new(PiiPolicy::default(), IpMode::Truncate, b"test salt")
    }

    #[test]
    fn patterns_in_text_table() {
        let s = scrubber();
        let cases: &[(&str, Option<&str>)] = &[
            (
                "write to jane.doe+news@example.co.uk today",
                Some("write to [email] today"),
            ),
            ("JANE@EXAMPLE.COM", Some("[email]")),
            (
                "card 4111 1111 1111 1111 exp 12/29",
                Some("card [card] exp 12/29"),
            ),
            ("4111-1111-1111-1111", Some("[card]")),
            ("5500005555555559", Some("[card]")),
            // Fails the Luhn check: an order number, not a card.
            ("order 4111111111111112", None),
            (
                "pay to DE89 3704 0044 0532 0130 00 please",
                Some("pay to [iban] please"),
            ),
            ("GB82WEST12345698765432", Some("[iban]")),
            // Fails mod 97.
            ("DE89370400440532013001", None),
            ("call +49 30 1234567 now", Some("call [phone] now")),
            ("+1 (555) 123-4567", Some("[phone]")),
            ("(555) 123-4567", Some("[phone]")),
            // Bare digit runs, amounts, dates and versions are not phones.
            ("id 20261202153000", None),
            ("total 1234567.89 EUR", None),
            ("2026-12-02T15:30:00Z", None),
            ("v1.2.3", None),
            ("no personal data here", None),
            // Ids, timestamps, UUIDs, dates and amounts that pass Luhn are not cards.
            ("1733155800001", None),
            ("2026-12-01 2026-12-03", None),
            ("550e8400-e29b-41d4-8716-446655440009", None),
            ("4111111111111111.25", None),
            ("card 4111 1111 1111 1111.", Some("card [card].")),
            ("/cards/4111111111111111", Some("/cards/[card]")),
            // Other phone notations; a longer match is cut at 15 digits.
            ("0049 30 1234567", Some("[phone]")),
            ("call 555-123-4567", Some("call [phone]")),
            ("+49 30 1234567 12346", Some("[phone] 12346")),
            ("de89 3704 0044 0532 0130 00", Some("[iban]")),
            ("o'brien@example.com", Some("[email]")),
            ("https://cdn.test/img/logo@2x.png", None),
            // Versions and addresses in free text are left to the IP-named properties.
            ("3.14.2.7", None),
            ("203.0.113.77", None),
        ];
        for (text, want) in cases {
            let got = s.scrub_str(text);
            let want = match want {
                Some(w) => Scrubbed::Changed((*w).to_owned()),
                None => Scrubbed::Unchanged,
            };
            assert_eq!(got, want, "{text}");
        }
    }

    #[test]
    fn actions_drop_mask_hash_keep() {
        let policy = |action: PiiAction| {
            PiiPolicy::from_json(&json!({"patterns": {"email": action}})).unwrap()
        };
        let s = |a| PiiScrubber::new(policy(a), IpMode::Truncate, b"salt");
        assert_eq!(s(PiiAction::Drop).scrub_str("a a@b.io"), Scrubbed::Drop);
        assert_eq!(
            s(PiiAction::Keep).scrub_str("a a@b.io"),
            Scrubbed::Unchanged
        );
        let Scrubbed::Changed(h1) = s(PiiAction::Hash).scrub_str("a A@B.io") else {
            panic!("hashed")
        };
        let Scrubbed::Changed(h2) = s(PiiAction::Hash).scrub_str("a a@b.io") else {
            panic!("hashed")
        };
        // The same address (any case) hashes the same; another salt hashes differently.
        assert_eq!(h1, h2);
        assert!(
            h1.starts_with("a [email:") && h1.len() == "a [email:]".len() + 16,
            "{h1}"
        );
        let other = PiiScrubber::new(policy(PiiAction::Hash), IpMode::Truncate, b"other");
        assert_ne!(other.scrub_str("a a@b.io"), Scrubbed::Changed(h1));
        // The IP mode applies to properties named like an address.
        let drop_ip = PiiScrubber::new(PiiPolicy::default(), IpMode::Drop, b"s");
        let mut v =
            json!({"ip": "10.1.2.3", "$client_ip": "2001:DB8::1", "app_version": "3.14.2.7"});
        drop_ip.scrub_value(&mut v);
        assert_eq!(
            v,
            json!({"ip": "[ip]", "$client_ip": "[ip]", "app_version": "3.14.2.7"})
        );
        let keep_ip = PiiScrubber::new(PiiPolicy::default(), IpMode::Keep, b"s");
        let mut v = json!({"ip": "2001:DB8::1"});
        keep_ip.scrub_value(&mut v);
        assert_eq!(v["ip"], "2001:DB8::1");
        let mut v = json!({"ip_address": "203.0.113.77"});
        scrubber().scrub_value(&mut v);
        assert_eq!(v["ip_address"], "203.0.113.0");
    }

    #[test]
    fn named_properties_at_any_depth() {
        let s = scrubber();
        let mut v = json!({
            "Password": "hunter2", "plan": "pro", "amount": 12,
            "form": {"e-mail": "Jane@Example.com", "credit_card": {"number": "x"}, "note": "ring +44 20 7946 0958"},
            "list": ["a@b.io", "fine"], "Phone": null
        });
        assert!(!s.scrub_value(&mut v));
        assert!(v.get("Password").is_none());
        assert_eq!(v["plan"], "pro");
        assert_eq!(v["amount"], 12);
        assert!(v["form"].get("credit_card").is_none());
        let hashed = v["form"]["e-mail"].as_str().unwrap();
        assert!(hashed.starts_with("[hash:"), "{hashed}");
        assert_eq!(v["form"]["note"], "ring [phone]");
        assert_eq!(v["list"], json!(["[email]", "fine"]));
        assert_eq!(v["Phone"], Value::Null);
        // Names that end with a rule's name, `$` prefixes, card numbers as JSON numbers.
        let mut w = json!({"user_email": "a", "$phone": "+49 30 1234567", "new_password": "x",
                           "id_token": "t", "email_verified": true, "cc": 4111111111111111u64,
                           "order": 1733155800001u64});
        s.scrub_value(&mut w);
        assert!(w["user_email"].as_str().unwrap().starts_with("[hash:"));
        assert!(w.get("new_password").is_none() && w.get("id_token").is_none());
        assert_eq!(w["email_verified"], true);
        assert_eq!(w["cc"], "[card]");
        assert_eq!(w["order"], 1733155800001u64);
        let mut spaced = json!({"phone": "+49301234567"});
        s.scrub_value(&mut spaced);
        assert_eq!(
            spaced["phone"], w["$phone"],
            "a phone hashes the same however spaced"
        );
        // Hashes of contact data ignore case and surrounding space.
        let mut w = json!({"email": " jane@example.com"});
        s.scrub_value(&mut w);
        assert_eq!(w["email"].as_str(), Some(hashed));
    }

    #[test]
    fn policies_override_the_defaults_and_name_their_errors() {
        let names = |p: &PiiPolicy, name: &str| {
            PiiScrubber::new(p.clone(), IpMode::Keep, b"s").for_name(name)
        };
        let p = PiiPolicy::from_json(&json!({
            "patterns": {"phone": "keep"},
            "properties": [{"name": "EMAIL", "action": "mask"}, {"name": "nickname", "action": "drop"}]
        }))
        .unwrap();
        assert_eq!(p.for_pattern(PiiPattern::Phone), PiiAction::Keep);
        assert_eq!(p.for_pattern(PiiPattern::Email), PiiAction::Mask);
        assert_eq!(names(&p, "email"), Some(PiiAction::Mask));
        assert_eq!(names(&p, "Nick_Name"), Some(PiiAction::Drop));
        assert_eq!(names(&p, "password"), Some(PiiAction::Drop));
        let e = PiiPolicy::from_json(&json!({"patterns": {"email": "shred"}})).unwrap_err();
        assert_eq!(e.field, "pii");
        assert!(e.message.contains("shred"), "{}", e.message);
        let e = PiiPolicy::from_json(&json!({"properties": [{"name": "", "action": "drop"}]}))
            .unwrap_err();
        assert_eq!(e.field, "pii.properties[0].name");
        assert!(PiiPolicy::from_json(&json!({"colour": 1})).is_err());
        let bare = PiiPolicy::from_json(&json!({"defaults": false, "patterns": {"card": "drop"}}))
            .unwrap();
        assert_eq!(names(&bare, "password"), None);
        assert_eq!(bare.for_pattern(PiiPattern::Email), PiiAction::Keep);
        assert_eq!(bare.for_pattern(PiiPattern::Card), PiiAction::Drop);
        assert!(PiiPolicy::from_json(&json!({"defaults": "no"})).is_err());
        let off = PiiScrubber::new(PiiPolicy::off(), IpMode::Keep, b"s");
        let mut v = json!({"password": "x", "m": "a@b.io 4111111111111111"});
        let before = v.clone();
        off.scrub_value(&mut v);
        assert_eq!(v, before);
    }

    #[test]
    fn urls_are_also_checked_percent_decoded() {
        let s = scrubber();
        assert_eq!(
            s.scrub_url("https://shop.test/?email=jane%40example.com&x=1"),
            Scrubbed::Changed("https://shop.test/?email=[email]&x=1".into())
        );
        assert_eq!(
            s.scrub_url("https://shop.test/?utm_content=%2B49+30+1234567"),
            Scrubbed::Changed("https://shop.test/?utm_content=[phone]".into())
        );
        assert_eq!(
            s.scrub_url("https://shop.test/a%20b?q=shoes+red"),
            Scrubbed::Unchanged
        );
    }

    #[test]
    fn check_digits() {
        assert!(luhn("4111111111111111"));
        assert!(luhn("79927398713"));
        assert!(!luhn("79927398710"));
        assert!(luhn("4111-1111-1111-1111"));
        assert!(!luhn("--"));
        assert!(iban_valid("DE89370400440532013000"));
        assert!(iban_valid("NL91ABNA0417164300"));
        assert!(!iban_valid("NL91ABNA0417164301"));
        assert!(!iban_valid("DE89"));
    }

    /// A number that passes the Luhn check: `prefix` and a check digit.
    fn with_luhn(prefix: &[u8]) -> String {
        let mut digits: String = prefix.iter().map(|d| char::from(b'0' + d % 10)).collect();
        for check in 0..10u8 {
            let candidate = format!("{digits}{check}");
            if luhn(&candidate) {
                digits = candidate;
                break;
            }
        }
        digits
    }

    proptest! {
        #[test]
        fn every_valid_card_number_in_text_is_masked(
            issuer in proptest::sample::select(vec![
                vec![4], vec![5, 1], vec![5, 5], vec![2, 2, 2, 1], vec![2, 7, 2, 0], vec![3, 4],
                vec![3, 7], vec![6, 0, 1, 1], vec![6, 5], vec![3, 5, 2, 8],
            ]),
            rest in proptest::collection::vec(0u8..10, 12..15),
            before in "[a-z ]{0,12}",
            after in "[a-z ]{0,12}",
        ) {
            let card = with_luhn(&[issuer, rest].concat());
            let text = format!("{before} {card} {after}");
            match scrubber().scrub_str(&text) {
                Scrubbed::Changed(t) => prop_assert!(!t.contains(&card), "{t}"),
                other => prop_assert!(false, "{text}: {other:?}"),
            }
        }

        #[test]
        fn every_email_in_text_is_masked(
            user in "[a-z][a-z0-9._+]{0,15}",
            host in "[a-z][a-z0-9]{0,10}",
            tld in "[a-z]{2,6}",
            before in "[a-z ]{0,12}",
        ) {
            let email = format!("{user}@{host}.{tld}");
            let text = format!("{before} {email}");
            match scrubber().scrub_str(&text) {
                Scrubbed::Changed(t) => prop_assert!(!t.contains(&email) && !t.contains('@'), "{t}"),
                other => prop_assert!(false, "{text}: {other:?}"),
            }
        }

        #[test]
        fn text_without_at_signs_or_seven_digits_is_untouched(text in "[a-zA-Z .,:/-]{0,40}[0-9]{0,6}") {
            prop_assume!(text.trim().parse::<std::net::IpAddr>().is_err());
            prop_assert_eq!(scrubber().scrub_str(&text), Scrubbed::Unchanged);
        }

        #[test]
        fn scrubbing_is_idempotent(text in "[a-z0-9@. +()-]{0,40}") {
            let s = scrubber();
            if let Scrubbed::Changed(once) = s.scrub_str(&text) {
                prop_assert_eq!(s.scrub_str(&once), Scrubbed::Unchanged);
            }
        }
    }
}
