//! The fault book: rules a test arms through `POST /_sim/faults` (JSON, one
//! rule or an array, each with a `kind`). Two kinds are every simulator's:
//! `http` (the matching request gets this status instead of being served;
//! with `"after": true` it is served first and then answered with the
//! status: a gateway error after the work was done, for simulators that
//! honour it, the DigitalOcean one) and `latency` (every API response is
//! delayed); a simulator adds its own
//! kinds (PVE: `task`, `agent`, `exec`) as a `FaultKind`.

use std::fmt;

use regex::Regex;
use serde::de::{DeserializeOwned, Error as _};
use serde::{Deserialize, Deserializer};
use serde_json::Value;

/// A platform's own fault kinds: an internally tagged enum (`kind`).
pub trait FaultKind: DeserializeOwned + fmt::Debug + Send + 'static {
    /// The rule's uses left (`times`; `None` inside: every time), for the
    /// kinds that count them.
    fn times(&mut self) -> Option<&mut Option<u32>> {
        None
    }
}

/// A platform without fault kinds of its own.
#[cfg(test)]
#[derive(Debug, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum NoFaults {}

#[cfg(test)]
impl FaultKind for NoFaults {}

pub enum Fault<K> {
    /// The matching request gets this status instead of being served.
    Http {
        method: Option<String>,
        /// A substring or regex of the API's part of the path.
        path: Option<String>,
        status: u16,
        message: Option<String>,
        times: Option<u32>,
        /// Served first, then answered with `status` (the work done).
        after: bool,
    },
    /// Every API response is delayed.
    Latency { ms: u64 },
    /// One of the platform's own kinds.
    Platform(K),
}

#[derive(Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
enum CoreFault {
    Http {
        method: Option<String>,
        path: Option<String>,
        status: u16,
        message: Option<String>,
        times: Option<u32>,
        #[serde(default)]
        after: bool,
    },
    Latency {
        ms: u64,
    },
}

impl<'de, K: FaultKind> Deserialize<'de> for Fault<K> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Value::deserialize(d)?;
        match v.get("kind").and_then(Value::as_str) {
            Some("http" | "latency") => {
                Ok(match CoreFault::deserialize(v).map_err(D::Error::custom)? {
                    CoreFault::Http {
                        method,
                        path,
                        status,
                        message,
                        times,
                        after,
                    } => Fault::Http {
                        method,
                        path,
                        status,
                        message,
                        times,
                        after,
                    },
                    CoreFault::Latency { ms } => Fault::Latency { ms },
                })
            }
            _ => K::deserialize(v)
                .map(Fault::Platform)
                .map_err(D::Error::custom),
        }
    }
}

impl<K: fmt::Debug> fmt::Debug for Fault<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fault::Http {
                method,
                path,
                status,
                message,
                times,
                after,
            } => f
                .debug_struct("Http")
                .field("method", method)
                .field("path", path)
                .field("status", status)
                .field("message", message)
                .field("times", times)
                .field("after", after)
                .finish(),
            Fault::Latency { ms } => f.debug_struct("Latency").field("ms", ms).finish(),
            Fault::Platform(k) => k.fmt(f),
        }
    }
}

impl<K: FaultKind> Fault<K> {
    fn times(&mut self) -> Option<&mut Option<u32>> {
        match self {
            Fault::Http { times, .. } => Some(times),
            Fault::Latency { .. } => None,
            Fault::Platform(k) => k.times(),
        }
    }
}

/// An `http` rule that fired: the status, and its message if the rule gave
/// one (the simulator words the default, as its platform would).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpFault {
    pub status: u16,
    pub message: Option<String>,
}

/// Uses up one of a rule's `times`; a rule at zero is dropped.
pub fn consume(times: &mut Option<u32>) -> bool {
    match times {
        Some(0) => false,
        Some(n) => {
            *n -= 1;
            true
        }
        None => true,
    }
}

pub fn path_matches(pattern: &str, path: &str) -> bool {
    path.contains(pattern) || Regex::new(pattern).is_ok_and(|re| re.is_match(path))
}

pub struct FaultBook<K> {
    rules: Vec<Fault<K>>,
}

impl<K> Default for FaultBook<K> {
    fn default() -> Self {
        FaultBook { rules: Vec::new() }
    }
}

impl<K: FaultKind> FaultBook<K> {
    /// Adds rules; returns how many are armed now.
    pub fn arm(&mut self, rules: Vec<Fault<K>>) -> usize {
        eprintln!("golden-sim: faults armed: {rules:?}");
        self.rules.extend(rules);
        self.rules.len()
    }

    pub fn clear(&mut self) {
        self.rules.clear();
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// The `http` rule that intercepts this request before it is served,
    /// if any.
    pub fn take_http(&mut self, method: &str, path: &str) -> Option<HttpFault> {
        self.take_http_rule(method, path, false)
    }

    /// The `"after": true` rule that answers this request with an error
    /// once it was served, if any.
    pub fn take_http_after(&mut self, method: &str, path: &str) -> Option<HttpFault> {
        self.take_http_rule(method, path, true)
    }

    fn take_http_rule(&mut self, method: &str, path: &str, when_after: bool) -> Option<HttpFault> {
        let mut out = None;
        for f in &mut self.rules {
            if let Fault::Http {
                method: m,
                path: p,
                status,
                message,
                times,
                after,
            } = f
            {
                let method_ok = m.as_deref().is_none_or(|m| m.eq_ignore_ascii_case(method));
                let path_ok = p.as_deref().is_none_or(|p| path_matches(p, path));
                if *after == when_after && method_ok && path_ok && consume(times) {
                    out = Some(HttpFault {
                        status: *status,
                        message: message.clone(),
                    });
                    break;
                }
            }
        }
        self.drop_spent();
        out
    }

    /// The sum of the `latency` rules.
    pub fn latency_ms(&self) -> u64 {
        self.rules
            .iter()
            .map(|f| match f {
                Fault::Latency { ms } => *ms,
                _ => 0,
            })
            .sum()
    }

    /// The first platform rule `pick` answers for, one of its `times` used.
    pub fn take<T>(&mut self, mut pick: impl FnMut(&K) -> Option<T>) -> Option<T> {
        let mut out = None;
        for f in &mut self.rules {
            if let Fault::Platform(k) = f {
                if let Some(t) = pick(k) {
                    if k.times().is_none_or(consume) {
                        out = Some(t);
                        break;
                    }
                }
            }
        }
        self.drop_spent();
        out
    }

    /// Whether any platform rule fits (rules that stay armed, no `times`).
    pub fn any(&self, pred: impl FnMut(&K) -> bool) -> bool {
        self.rules
            .iter()
            .filter_map(|f| match f {
                Fault::Platform(k) => Some(k),
                _ => None,
            })
            .any(pred)
    }

    fn drop_spent(&mut self) {
        self.rules
            .retain_mut(|f| !matches!(f.times(), Some(Some(0))));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn core_rules_parse_fire_and_count_down() {
        let rules: Vec<Fault<NoFaults>> = serde_json::from_value(json!([
            {"kind": "http", "method": "POST", "path": "/clone$", "status": 500, "message": "boom", "times": 1},
            {"kind": "latency", "ms": 5},
            {"kind": "latency", "ms": 7}
        ]))
        .unwrap();
        let mut book = FaultBook::default();
        assert_eq!(book.arm(rules), 3);
        assert_eq!(book.latency_ms(), 12);
        assert_eq!(book.take_http("GET", "/nodes/pve/qemu/9000/clone"), None);
        assert_eq!(
            book.take_http("post", "/nodes/pve/qemu/9000/clone"),
            Some(HttpFault {
                status: 500,
                message: Some("boom".into())
            })
        );
        assert_eq!(book.take_http("POST", "/nodes/pve/qemu/9000/clone"), None);
        assert_eq!(book.len(), 2, "the spent rule is dropped");
        assert!(serde_json::from_value::<Fault<NoFaults>>(json!({"kind": "task"})).is_err());
    }

    #[test]
    fn after_rules_fire_only_after_the_request_was_served() {
        let rules: Vec<Fault<NoFaults>> = serde_json::from_value(json!([
            {"kind": "http", "method": "POST", "path": "^/v2/droplets$", "status": 503, "after": true, "times": 1}
        ]))
        .unwrap();
        let mut book = FaultBook::default();
        book.arm(rules);
        assert_eq!(book.take_http("POST", "/v2/droplets"), None);
        assert_eq!(
            book.take_http_after("POST", "/v2/droplets"),
            Some(HttpFault {
                status: 503,
                message: None
            })
        );
        assert_eq!(book.take_http_after("POST", "/v2/droplets"), None);
        assert_eq!(book.len(), 0);
    }

    #[test]
    fn times_and_paths() {
        let mut times = Some(1);
        assert!(consume(&mut times));
        assert!(!consume(&mut times));
        assert!(path_matches("/clone$", "/nodes/pve/qemu/9000/clone"));
        assert!(path_matches("qemu/9000", "/nodes/pve/qemu/9000/clone"));
        assert!(!path_matches("/clone$", "/nodes/pve/qemu/9000/config"));
    }
}
