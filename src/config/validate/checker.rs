//! The shared checker: collects problems with their paths, and checks the
//! kinds of value several sections use.

use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;

use ipnetwork::IpNetwork;

use crate::config::{Lenient, Problem, Text};

pub struct Checker {
    pub problems: Vec<Problem>,
}

/// Stands in for an address that did not parse (the config is refused
/// anyway); port 0 keeps it out of the "must differ" comparison.
const UNPARSED_ADDR: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 0);

impl Checker {
    pub fn problem(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.problems.push(Problem {
            path: path.into(),
            message: message.into(),
        });
    }

    /// The value, or `None` when absent or (reported) when it did not parse.
    pub fn parsed<T: Text>(&mut self, path: &str, value: Option<Lenient<T>>) -> Option<T> {
        match value?.into_result() {
            Ok(v) => Some(v),
            Err(message) => {
                self.problem(path, message);
                None
            }
        }
    }

    /// A positive duration, or `default` when absent or (reported) invalid.
    pub fn duration(
        &mut self,
        path: &str,
        value: Option<Lenient<Duration>>,
        default: Duration,
    ) -> Duration {
        match self.parsed(path, value) {
            Some(d) if d.is_zero() => {
                self.problem(path, "duration must be greater than zero");
                default
            }
            Some(d) => d,
            None => default,
        }
    }

    /// A listen address, or `default` when absent.
    pub fn addr(&mut self, path: &str, value: Option<&str>, default: SocketAddr) -> SocketAddr {
        let Some(s) = value else { return default };
        SocketAddr::from_str(s).unwrap_or_else(|_| {
            self.problem(path, format!("invalid listen address {s:?}; use ip:port"));
            UNPARSED_ADDR
        })
    }

    /// A count of at least 1, or `default` when absent or (reported) zero.
    pub fn at_least_one<N: Copy + PartialEq + Default>(
        &mut self,
        path: &str,
        value: Option<N>,
        default: N,
    ) -> N {
        match value {
            Some(n) if n == N::default() => {
                self.problem(path, "must be at least 1");
                default
            }
            Some(n) => n,
            None => default,
        }
    }

    pub fn cidr(&mut self, path: &str, s: &str) -> Option<IpNetwork> {
        match validate_cidr(s) {
            Ok(n) => Some(n),
            Err(e) => {
                self.problem(path, e);
                None
            }
        }
    }

    /// A positive size, or `default` when absent or (reported) invalid.
    pub fn size(&mut self, path: &str, value: Option<&str>, default: u64) -> u64 {
        match value.map(parse_size) {
            None => default,
            Some(Some(n)) if n > 0 => n,
            Some(_) => {
                self.problem(
                    path,
                    "must be a size such as \"512MiB\", \"1GiB\" or \"64KiB\"",
                );
                default
            }
        }
    }

    /// [`Self::size`] with a ceiling; above it, `too_large` is the problem.
    pub fn size_at_most(
        &mut self,
        path: &str,
        value: Option<&str>,
        default: u64,
        max: u64,
        too_large: &str,
    ) -> u64 {
        let n = self.size(path, value, default);
        if n > max {
            self.problem(path, too_large);
        }
        n
    }
}

pub fn validate_cidr(s: &str) -> Result<IpNetwork, String> {
    let net = IpNetwork::from_str(s).map_err(|e| format!("invalid CIDR {s:?}: {e}"))?;
    // `10.0.0.1/8` is almost always a typo for `10.0.0.0/8`; refuse rather than guess.
    if net.network() != net.ip() {
        return Err(format!(
            "{s:?} has host bits set; did you mean {}/{}?",
            net.network(),
            net.prefix()
        ));
    }
    Ok(net)
}

/// `"64KiB"`, `"512MB"`, `"1GiB"`, `"1000"` (bytes).
pub fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().ok()?;
    let mult: u64 = match unit.trim() {
        "" | "B" => 1,
        "KB" => 1_000,
        "KiB" => 1 << 10,
        "MB" => 1_000_000,
        "MiB" => 1 << 20,
        "GB" => 1_000_000_000,
        "GiB" => 1 << 30,
        _ => return None,
    };
    n.checked_mul(mult)
}
