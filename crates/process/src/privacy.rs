//! Privacy rules applied before anything is written: IP anonymization.

use std::net::IpAddr;
use std::str::FromStr;

/// What is kept of a client's IP address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IpMode {
    /// Nothing.
    Drop,
    /// The network only: IPv4 to /24 (`203.0.113.0`), IPv6 to /48 (`2001:db8:85a3::`). The default.
    #[default]
    Truncate,
    /// The full address. Only where a legal basis exists.
    Keep,
}

impl FromStr for IpMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "drop" => Ok(Self::Drop),
            "truncate" => Ok(Self::Truncate),
            "keep" => Ok(Self::Keep),
            other => Err(format!(
                "unknown IP mode `{other}`: use drop, truncate or keep"
            )),
        }
    }
}

/// Applies `mode` to `ip`. Text that is not an IP address is dropped, never stored.
pub fn anonymize_ip(ip: &str, mode: IpMode) -> Option<String> {
    let addr: IpAddr = ip.trim().parse().ok()?;
    match mode {
        IpMode::Drop => None,
        IpMode::Keep => Some(addr.to_string()),
        IpMode::Truncate => Some(match addr {
            IpAddr::V4(v4) => {
                let [a, b, c, _] = v4.octets();
                std::net::Ipv4Addr::new(a, b, c, 0).to_string()
            }
            IpAddr::V6(v6) => {
                if let Some(v4) = v6.to_ipv4_mapped() {
                    let [a, b, c, _] = v4.octets();
                    return Some(std::net::Ipv4Addr::new(a, b, c, 0).to_string());
                }
                let s = v6.segments();
                std::net::Ipv6Addr::new(s[0], s[1], s[2], 0, 0, 0, 0, 0).to_string()
            }
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes() {
        let t = IpMode::Truncate;
        assert_eq!(
            anonymize_ip("203.0.113.77", t).as_deref(),
            Some("203.0.113.0")
        );
        assert_eq!(
            anonymize_ip("2001:db8:85a3:8d3:1319:8a2e:370:7348", t).as_deref(),
            Some("2001:db8:85a3::")
        );
        assert_eq!(
            anonymize_ip("::ffff:10.1.2.3", t).as_deref(),
            Some("10.1.2.0")
        );
        assert_eq!(anonymize_ip("203.0.113.77", IpMode::Drop), None);
        assert_eq!(
            anonymize_ip("203.0.113.77", IpMode::Keep).as_deref(),
            Some("203.0.113.77")
        );
        assert_eq!(anonymize_ip("not an ip", IpMode::Keep), None);
    }
}
