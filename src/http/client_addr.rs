//! Who the client is: the peer's address, or behind a trusted proxy the rightmost hop of
//! `X-Forwarded-For` that is not itself a trusted proxy.
//!
//! A client may write anything into `X-Forwarded-For`; only the hops added by proxies we trust
//! are believed, walking from the right (the hop closest to us) to the first one that is not a
//! trusted proxy. From an untrusted peer the header is ignored altogether.

use std::net::{IpAddr, SocketAddr};

use http::HeaderMap;
use ipnet::IpNet;

/// What the server holds about clients beyond the connection limits: whose `X-Forwarded-For`
/// to believe, and the failed admin authentications.
pub struct ClientLimits {
    pub trusted_proxies: Vec<IpNet>,
    pub admin_failures: crate::http::throttle::Throttle,
}

impl ClientLimits {
    /// The client of a request ([`client_ip`]); unspecified when it came without a socket
    /// (a router driven directly, in tests).
    pub fn client_of(&self, extensions: &http::Extensions, headers: &HeaderMap) -> IpAddr {
        let peer = extensions
            .get::<PeerAddr>()
            .map_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), |p| p.0.ip());
        client_ip(peer, headers, &self.trusted_proxies)
    }
}

/// The TCP peer of the connection a request came on (set by the server for every request).
#[derive(Debug, Clone, Copy)]
pub struct PeerAddr(pub SocketAddr);

/// The client's address for `peer` and these headers, given the trusted proxies.
pub fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(&canonical(*ip)));
    if !is_trusted(&peer) {
        return peer;
    }
    let mut client = peer;
    // Every X-Forwarded-For line in order, their hops from right to left.
    let hops: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .collect();
    for hop in hops.iter().rev().take(MAX_HOPS) {
        let Some(ip) = parse_hop(hop) else { break };
        client = ip;
        if !is_trusted(&ip) {
            break;
        }
    }
    canonical(client)
}

/// Hops looked at, at most: a longer chain is cut (the client is then a trusted hop's word).
const MAX_HOPS: usize = 32;

/// `203.0.113.7`, `2001:db8::1`, `[2001:db8::1]:443` or `203.0.113.7:5000`.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    let hop = hop.trim();
    if let Ok(ip) = hop.parse::<IpAddr>() {
        return Some(ip);
    }
    hop.parse::<SocketAddr>().ok().map(|a| a.ip())
}

/// An IPv4 address mapped into IPv6 (a dual-stack listener's peers) as plain IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(xff: &[&str]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for v in xff {
            map.append("x-forwarded-for", v.parse().unwrap());
        }
        map
    }

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|n| n.parse().unwrap()).collect()
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn the_header_of_an_untrusted_peer_is_ignored() {
        let h = headers(&["198.51.100.1"]);
        assert_eq!(client_ip(ip("203.0.113.9"), &h, &[]), ip("203.0.113.9"));
        assert_eq!(
            client_ip(ip("203.0.113.9"), &h, &nets(&["10.0.0.0/8"])),
            ip("203.0.113.9")
        );
    }

    #[test]
    fn behind_trusted_proxies_the_rightmost_untrusted_hop_is_the_client() {
        let trusted = nets(&["10.0.0.0/8", "127.0.0.1/32"]);
        // The client forged the first hop; our proxies added the last two.
        let h = headers(&["1.1.1.1, 198.51.100.7", "10.1.2.3"]);
        assert_eq!(client_ip(ip("127.0.0.1"), &h, &trusted), ip("198.51.100.7"));
        // Only trusted hops: the leftmost of them.
        let h = headers(&["10.0.0.5, 10.0.0.6"]);
        assert_eq!(client_ip(ip("127.0.0.1"), &h, &trusted), ip("10.0.0.5"));
        // No header: the proxy itself.
        assert_eq!(
            client_ip(ip("127.0.0.1"), &HeaderMap::new(), &trusted),
            ip("127.0.0.1")
        );
        // Garbage stops the walk at the last hop we could read.
        let h = headers(&["198.51.100.7, nonsense, 10.0.0.6"]);
        assert_eq!(client_ip(ip("127.0.0.1"), &h, &trusted), ip("10.0.0.6"));
        // Ports and brackets are tolerated.
        let h = headers(&["[2001:db8::1]:443"]);
        assert_eq!(client_ip(ip("127.0.0.1"), &h, &trusted), ip("2001:db8::1"));
    }

    #[test]
    fn an_ipv4_mapped_peer_matches_an_ipv4_network() {
        let h = headers(&["198.51.100.7"]);
        assert_eq!(
            client_ip(ip("::ffff:127.0.0.1"), &h, &nets(&["127.0.0.1/32"])),
            ip("198.51.100.7")
        );
    }
}
