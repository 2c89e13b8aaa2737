//! Go-style durations (`"720h"`, `"10m"`, `"1h30m"`, `"45s"`), as Terraform users
//! write them in `rebuild_after`, `smoke_test.timeout` and `timeouts`.

use std::time::Duration;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0:?} is not a duration: use a number followed by h, m or s, e.g. \"720h\" or \"1h30m\"")]
pub struct DurationError(pub String);

pub fn parse(raw: &str) -> Result<Duration, DurationError> {
    let err = || DurationError(raw.to_owned());
    let s = raw.trim();
    if s.is_empty() {
        return Err(err());
    }
    let mut total: u64 = 0;
    let mut digits = String::new();
    for c in s.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let unit = match c {
            'h' => 3600,
            'm' => 60,
            's' => 1,
            _ => return Err(err()),
        };
        let n: u64 = digits.parse().map_err(|_| err())?;
        total = n
            .checked_mul(unit)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(err)?;
        digits.clear();
    }
    if !digits.is_empty() {
        return Err(err());
    }
    Ok(Duration::from_secs(total))
}

/// The inverse of `parse`, for messages.
pub fn format(d: Duration) -> String {
    let s = d.as_secs();
    let (h, m, sec) = (s / 3600, (s % 3600) / 60, s % 60);
    let mut out = String::new();
    if h > 0 {
        out += &format!("{h}h");
    }
    if m > 0 {
        out += &format!("{m}m");
    }
    if sec > 0 || out.is_empty() {
        out += &format!("{sec}s");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_go_style_durations() {
        for (raw, secs) in [
            ("720h", 720 * 3600),
            ("10m", 600),
            ("1h30m", 5400),
            ("45s", 45),
            ("0s", 0),
        ] {
            assert_eq!(parse(raw).unwrap(), Duration::from_secs(secs), "{raw}");
        }
    }

    #[test]
    fn rejects_garbage() {
        for raw in ["", "10", "h", "10d", "1.5h", "-1h", "ten minutes"] {
            assert!(parse(raw).is_err(), "{raw:?} should be rejected");
        }
    }

    #[test]
    fn formats_back() {
        assert_eq!(format(Duration::from_secs(5400)), "1h30m");
        assert_eq!(format(Duration::from_secs(0)), "0s");
    }
}
