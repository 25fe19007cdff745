//! Which addresses calls made on a tenant's behalf may reach. Custom allocation webhooks and hub registry
//! connectors call URLs that an instance's owner writes; without a guard, any tenant could make the service call
//! the deployment's own network (loopback, the cloud's metadata and runtime endpoints, private ranges). The guard
//! is [`PublicOnly`], a resolver for reqwest that refuses a name when any address it resolves to is [`forbidden`]:
//! it judges the addresses actually connected to, so a name that resolves to a private address (or is rebound to
//! one) is refused as a literal private address is.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// A name refused because it resolved to a forbidden address. Its text names the host and address: for logs,
/// never for the caller (which learns only that the target is not allowed).
#[derive(Debug, thiserror::Error)]
#[error("{host} ({addr})")]
pub struct ForbiddenTarget {
    /// The host name as asked.
    pub host: String,
    /// The forbidden address it resolved to.
    pub addr: IpAddr,
}

impl ForbiddenTarget {
    /// The refusal somewhere in `error`'s chain of sources, if the call failed because of one.
    pub fn in_chain<'a>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a ForbiddenTarget> {
        let mut source = Some(error);
        while let Some(e) = source {
            if let Some(target) = e.downcast_ref::<ForbiddenTarget>() {
                return Some(target);
            }
            source = e.source();
        }
        None
    }
}

/// Resolves with the system resolver, then refuses names with any forbidden address. Give it to
/// `reqwest::ClientBuilder::dns_resolver`; a URL with a literal IP address does not resolve, so check it with
/// [`forbidden_host`] before the call.
pub struct PublicOnly;

impl Resolve for PublicOnly {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_string();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            if let Some(bad) = addrs.iter().find(|a| forbidden(a.ip())) {
                return Err(Box::new(ForbiddenTarget { host, addr: bad.ip() }) as _);
            }
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

/// Whether a parsed URL's host is a literal forbidden address. Judge the URL as it will be called, not the text
/// it was made from: the URL parser reads `127.1`, `2130706433` and `0x7f.1` as 127.0.0.1. Names are judged by
/// [`PublicOnly`] when they are resolved.
pub fn forbidden_url(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(v4)) => forbidden(IpAddr::V4(v4)),
        Some(url::Host::Ipv6(v6)) => forbidden(IpAddr::V6(v6)),
        Some(url::Host::Domain(_)) | None => false,
    }
}

/// Whether an address is one that calls made on a tenant's behalf may not reach by default: loopback, private, link-local, unspecified,
/// carrier-grade NAT, multicast, broadcast, documentation, unique-local, and IPv4 inside IPv6: mapped
/// (`::ffff:0:0/96`), translated (`::ffff:0:0:0/96`), compatible, 6to4 (`2002::/16`, judged by the IPv4 address it
/// embeds), Teredo (`2001::/32`, whose embedded client address is obscured: refused whole) and NAT64 (`64:ff9b::/32`).
pub fn forbidden(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => forbidden_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return forbidden_v4(v4);
            }
            let seg = v6.segments();
            let first = seg[0];
            let embedded = |hi: u16, lo: u16| Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo));
            if first == 0x2002 {
                return forbidden_v4(embedded(seg[1], seg[2]));
            }
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00 // unique local fc00::/7
                || (first & 0xffc0) == 0xfe80 // link-local fe80::/10
                || (first & 0xffc0) == 0xfec0 // site-local (deprecated) fec0::/10
                || v6.segments()[..6] == [0, 0, 0, 0, 0, 0] // IPv4-compatible ::a.b.c.d
                || first == 0x2001 && v6.segments()[1] == 0x0db8 // documentation
                || first == 0x0064 && v6.segments()[1] == 0xff9b // NAT64 to anything
                || first == 0x2001 && v6.segments()[1] == 0x0000 // Teredo
                || seg[..6] == [0, 0, 0, 0, 0xffff, 0] // IPv4-translated ::ffff:0:a.b.c.d
        }
    }
}

fn forbidden_v4(v4: Ipv4Addr) -> bool {
    let [a, b, ..] = v4.octets();
    v4.is_loopback()
        || v4.is_private()
        || v4.is_link_local()
        || v4.is_unspecified()
        || v4.is_broadcast()
        || v4.is_multicast()
        || v4.is_documentation()
        || a == 0
        || (a == 100 && (64..128).contains(&b)) // carrier-grade NAT
        || (a == 192 && b == 0 && v4.octets()[2] == 0) // IETF protocol assignments
        || (a == 198 && (b == 18 || b == 19)) // benchmarking
        || a >= 240 // reserved
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forbidden_addresses() {
        for bad in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "::1",
            "::",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "2002:7f00:1::",
            "2002:a00:1::1",
            "2002:c0a8:101::1",
            "2001::1",
            "2001:0:4136:e378:8000:63bf:3fff:fdd2",
            "::ffff:0:127.0.0.1",
            "64:ff9b::7f00:1",
        ] {
            assert!(forbidden(bad.parse().unwrap()), "{bad} should be forbidden");
        }
        for good in ["8.8.8.8", "52.95.110.1", "2606:4700:4700::1111", "::ffff:8.8.8.8", "2002:808:808::1"] {
            assert!(!forbidden(good.parse().unwrap()), "{good} should be allowed");
        }
    }

    #[test]
    fn literal_hosts_in_every_spelling_the_url_parser_reads() {
        let judged = |text: &str| forbidden_url(&url::Url::parse(text).unwrap());
        for bad in [
            "https://127.0.0.1/",
            "https://[::1]/",
            "https://[::ffff:10.0.0.1]/",
            "https://2130706433/",
            "https://127.1/",
            "https://0x7f.1/",
            "https://0177.0.0.1/",
            "https://10.1/",
        ] {
            assert!(judged(bad), "{bad} should be forbidden");
        }
        for good in ["https://example.net/", "https://8.8.8.8/", "https://localhost/"] {
            assert!(!judged(good), "{good} is judged when it resolves, or is public");
        }
    }

    #[tokio::test]
    async fn names_that_resolve_to_loopback_are_refused() {
        let refused = PublicOnly.resolve("localhost".parse().unwrap()).await.err().expect("localhost is refused");
        let target = ForbiddenTarget::in_chain(refused.as_ref()).expect("a ForbiddenTarget");
        assert_eq!(target.host, "localhost");
        assert!(target.addr.is_loopback());
    }
}
