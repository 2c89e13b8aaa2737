//! DO's per-token request budget (DigitalOcean-public.v2.yaml
//! `info.description` "Rate Limit", i.e. description.yml):
//!
//! - 5,000 requests an hour and 250 a minute per token; each request counts
//!   for one hour from when it was made (a sliding window, not a reset at the
//!   top of the hour);
//! - `ratelimit-limit` (5000), `ratelimit-remaining` (of the hour) and
//!   `ratelimit-reset` (unix time the oldest counted request expires) on
//!   every answer;
//! - past either limit: 429 `{"id": "too_many_requests", "message": "API
//!   Rate limit exceeded."}`; a burst (minute) 429 also carries
//!   `retry-after` seconds and shows `ratelimit-remaining: 0`;
//! - `GET /v2/account/keys`: 10 per 60 seconds, on its own.
//!
//! Refused requests are not counted (they did no work).

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub const HOUR_LIMIT: usize = 5000;
pub const MINUTE_LIMIT: usize = 250;
pub const KEYS_LIST_LIMIT: usize = 10;
const HOUR: Duration = Duration::from_secs(3600);
const MINUTE: Duration = Duration::from_secs(60);

/// One token's counted requests (times), oldest first.
#[derive(Default)]
struct Budget {
    hour: VecDeque<SystemTime>,
    keys_list: VecDeque<SystemTime>,
}

#[derive(Default)]
pub struct RateBook {
    tokens: HashMap<String, Budget>,
}

/// What a request's answer carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub remaining: usize,
    /// Unix seconds the oldest counted request expires.
    pub reset: u64,
    /// `Some(seconds)`: refused with 429; the seconds go in `retry-after`
    /// (burst and per-endpoint limits only).
    pub refused: Option<Option<u64>>,
}

fn unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Seconds until `oldest + window`, at least 1.
fn wait(oldest: SystemTime, window: Duration, now: SystemTime) -> u64 {
    let until = oldest + window;
    until
        .duration_since(now)
        .map(|d| d.as_secs() + u64::from(d.subsec_nanos() > 0))
        .unwrap_or(0)
        .max(1)
}

impl Budget {
    fn expire(&mut self, now: SystemTime) {
        while self.hour.front().is_some_and(|t| *t + HOUR <= now) {
            self.hour.pop_front();
        }
        while self.keys_list.front().is_some_and(|t| *t + MINUTE <= now) {
            self.keys_list.pop_front();
        }
    }

    fn in_last_minute(&self, now: SystemTime) -> impl Iterator<Item = &SystemTime> {
        self.hour.iter().filter(move |t| **t + MINUTE > now)
    }

    fn reset(&self, now: SystemTime) -> u64 {
        unix(self.hour.front().map(|t| *t + HOUR).unwrap_or(now))
    }
}

impl RateBook {
    /// Counts a request by `token` (unless refused) and says what to answer.
    pub fn check(&mut self, token: &str, keys_list: bool) -> Verdict {
        self.check_at(token, keys_list, SystemTime::now())
    }

    pub fn check_at(&mut self, token: &str, keys_list: bool, now: SystemTime) -> Verdict {
        let b = self.tokens.entry(token.to_owned()).or_default();
        b.expire(now);
        let refused = if b.hour.len() >= HOUR_LIMIT {
            // The hourly budget: the answer's ratelimit-reset says when.
            Some(None)
        } else if b.in_last_minute(now).count() >= MINUTE_LIMIT {
            let oldest = *b.in_last_minute(now).next().unwrap_or(&now);
            Some(Some(wait(oldest, MINUTE, now)))
        } else if keys_list && b.keys_list.len() >= KEYS_LIST_LIMIT {
            let oldest = *b.keys_list.front().unwrap_or(&now);
            Some(Some(wait(oldest, MINUTE, now)))
        } else {
            None
        };
        if refused.is_none() {
            b.hour.push_back(now);
            if keys_list {
                b.keys_list.push_back(now);
            }
        }
        let burst = matches!(refused, Some(Some(_))) && !keys_list;
        Verdict {
            remaining: if burst {
                0
            } else {
                HOUR_LIMIT.saturating_sub(b.hour.len())
            },
            reset: b.reset(now),
            refused,
        }
    }

    /// `PUT /_sim/ratelimit`: makes `token`'s budget show these remaining
    /// counts, with requests that really count (and expire) like any other.
    /// `reset_in`: the hour's requests (those outside the minute) were made
    /// so long ago that they expire in this many seconds (default 3539:
    /// a minute and a second ago).
    pub fn set_remaining(
        &mut self,
        token: &str,
        hour: Option<usize>,
        minute: Option<usize>,
        reset_in: Option<u64>,
    ) {
        let now = SystemTime::now();
        let b = self.tokens.entry(token.to_owned()).or_default();
        b.expire(now);
        let hour_used = HOUR_LIMIT - hour.unwrap_or(HOUR_LIMIT - b.hour.len()).min(HOUR_LIMIT);
        let minute_used = MINUTE_LIMIT - minute.unwrap_or(MINUTE_LIMIT).min(MINUTE_LIMIT);
        // This minute's requests count for the hour too.
        let hour_used = hour_used.max(minute_used);
        b.hour.clear();
        // Older than a minute (out of the burst window), then the burst.
        let age = reset_in
            .map(|s| HOUR.saturating_sub(Duration::from_secs(s)))
            .unwrap_or(Duration::from_secs(61))
            .max(Duration::from_secs(61));
        let older = now - age;
        b.hour
            .extend(std::iter::repeat_n(older, hour_used - minute_used));
        b.hour.extend(std::iter::repeat_n(now, minute_used));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_burst_limit_refuses_with_retry_after_and_expires() {
        let mut book = RateBook::default();
        let t0 = SystemTime::now();
        for i in 0..MINUTE_LIMIT {
            let v = book.check_at("t", false, t0);
            assert_eq!(v.refused, None, "request {i}");
            assert_eq!(v.remaining, HOUR_LIMIT - i - 1);
        }
        let v = book.check_at("t", false, t0 + Duration::from_secs(20));
        assert_eq!(v.refused, Some(Some(40)));
        assert_eq!(v.remaining, 0);
        assert_eq!(v.reset, unix(t0 + HOUR));
        // Another token has its own budget.
        assert_eq!(book.check_at("u", false, t0).refused, None);
        let v = book.check_at("t", false, t0 + Duration::from_secs(61));
        assert_eq!(v.refused, None);
        assert_eq!(v.remaining, HOUR_LIMIT - MINUTE_LIMIT - 1);
    }

    #[test]
    fn the_hourly_budget_and_the_keys_list_limit() {
        let mut book = RateBook::default();
        book.set_remaining("t", Some(1), None, None);
        let v = book.check("t", false);
        assert_eq!((v.refused, v.remaining), (None, 0));
        let v = book.check("t", false);
        assert_eq!(v.refused, Some(None), "hourly: no retry-after");
        // Spent, with the oldest expiring in 5 s: the reset says so, and
        // the budget is back once it passed.
        let mut book = RateBook::default();
        book.set_remaining("t", Some(0), None, Some(5));
        let t0 = SystemTime::now();
        let v = book.check_at("t", false, t0);
        assert_eq!(v.refused, Some(None));
        assert!((unix(t0) + 4..=unix(t0) + 5).contains(&v.reset), "{v:?}");
        let v = book.check_at("t", false, t0 + Duration::from_secs(6));
        assert_eq!(v.refused, None);
        assert_eq!(v.remaining, HOUR_LIMIT - 1);
        let mut book = RateBook::default();
        for _ in 0..KEYS_LIST_LIMIT {
            assert_eq!(book.check("t", true).refused, None);
        }
        assert!(matches!(book.check("t", true).refused, Some(Some(s)) if s <= 60));
        assert_eq!(book.check("t", false).refused, None, "other calls go on");
    }
}
