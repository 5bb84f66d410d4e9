//! Which address a request comes from.
//!
//! The client is the TCP peer, unless the peer is a trusted proxy: then it is the
//! right-most `X-Forwarded-For` entry that is not itself a trusted proxy. A
//! forwarded chain from an untrusted peer is ignored, so it cannot be spoofed.

use std::net::IpAddr;

use ipnetwork::IpNetwork;

/// IPv4-mapped IPv6 (`::ffff:10.0.0.1`) compares as the IPv4 address it carries.
pub fn canonical(ip: IpAddr) -> IpAddr {
    ip.to_canonical()
}

pub fn is_trusted(ip: IpAddr, trusted: &[IpNetwork]) -> bool {
    trusted.iter().any(|n| n.contains(ip))
}

/// `xff` yields the raw `X-Forwarded-For` header values in the order received.
pub fn client_ip<'a>(
    peer: IpAddr,
    xff: impl DoubleEndedIterator<Item = &'a [u8]>,
    trusted: &[IpNetwork],
) -> IpAddr {
    let peer = canonical(peer);
    if trusted.is_empty() || !is_trusted(peer, trusted) {
        return peer;
    }
    let mut nearest = peer;
    for value in xff.rev() {
        let Ok(value) = std::str::from_utf8(value) else {
            return nearest;
        };
        for entry in value.rsplit(',') {
            match parse_entry(entry) {
                Some(ip) if is_trusted(ip, trusted) => nearest = ip,
                Some(ip) => return ip,
                // Garbage from beyond the last trusted hop: believe only what we can.
                None => return nearest,
            }
        }
    }
    nearest
}

/// One `X-Forwarded-For` element: an address, possibly `[v6]:port` or `v4:port`.
fn parse_entry(entry: &str) -> Option<IpAddr> {
    let e = entry.trim();
    if let Ok(ip) = e.parse::<IpAddr>() {
        return Some(canonical(ip));
    }
    if let Some(rest) = e.strip_prefix('[') {
        let end = rest.find(']')?;
        return rest[..end].parse::<IpAddr>().ok().map(canonical);
    }
    let (host, port) = e.rsplit_once(':')?;
    port.parse::<u16>().ok()?;
    host.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(s: &[&str]) -> Vec<IpNetwork> {
        s.iter().map(|n| n.parse().expect("cidr")).collect()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    fn run(peer: &str, xff: &[&str], trusted: &[&str]) -> IpAddr {
        client_ip(ip(peer), xff.iter().map(|v| v.as_bytes()), &nets(trusted))
    }

    #[test]
    fn untrusted_peer_ignores_forwarded_for() {
        assert_eq!(
            run("203.0.113.9", &["1.2.3.4"], &["10.0.0.0/8"]),
            ip("203.0.113.9")
        );
        assert_eq!(run("203.0.113.9", &["1.2.3.4"], &[]), ip("203.0.113.9"));
    }

    #[test]
    fn trusted_peer_gives_rightmost_untrusted_entry() {
        let t = ["10.0.0.0/8"];
        assert_eq!(run("10.0.0.1", &["6.6.6.6, 1.2.3.4"], &t), ip("1.2.3.4"));
        assert_eq!(
            run("10.0.0.1", &["6.6.6.6, 1.2.3.4, 10.9.9.9"], &t),
            ip("1.2.3.4")
        );
        // Several header lines form one list.
        assert_eq!(
            run("10.0.0.1", &["6.6.6.6", "1.2.3.4, 10.1.1.1"], &t),
            ip("1.2.3.4")
        );
        // All trusted: the left-most.
        assert_eq!(run("10.0.0.1", &["10.2.2.2, 10.3.3.3"], &t), ip("10.2.2.2"));
        // No header: the peer.
        assert_eq!(run("10.0.0.1", &[], &t), ip("10.0.0.1"));
    }

    #[test]
    fn garbage_stops_the_walk() {
        let t = ["10.0.0.0/8"];
        assert_eq!(
            run("10.0.0.1", &["1.2.3.4, nonsense, 10.5.5.5"], &t),
            ip("10.5.5.5")
        );
    }

    #[test]
    fn ipv6_and_mapped_addresses() {
        let t = ["10.0.0.0/8", "fd00::/8"];
        assert_eq!(
            run("::ffff:10.0.0.1", &["2001:db8::1"], &t),
            ip("2001:db8::1")
        );
        assert_eq!(
            run("fd00::1", &["[2001:db8::2]:443"], &t),
            ip("2001:db8::2")
        );
        assert_eq!(run("fd00::1", &["192.0.2.7:5555"], &t), ip("192.0.2.7"));
        assert_eq!(run("fd00::1", &["::ffff:192.0.2.8"], &t), ip("192.0.2.8"));
        assert_eq!(run("::ffff:192.0.2.1", &[], &[]), ip("192.0.2.1"));
    }
}
