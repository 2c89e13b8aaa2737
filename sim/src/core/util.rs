//! Small things every simulator needs: percent-decoding, the clock, random
//! secrets, and a process that never outlives whoever started it.

use std::io::Read;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// `%XX` decoding (query strings, form bodies, PVE's URL-encoded `sshkeys`).
pub fn pct_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let hex = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push(h * 16 + l);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// RFC 3339, UTC, whole seconds (`2020-07-21T18:37:44Z`).
pub fn rfc3339(unix: u64) -> String {
    let days = unix / 86_400;
    let secs = unix % 86_400;
    // Civil from days (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

/// A random UUID-shaped secret (`8-4-4-4-12` hex digits).
pub fn random_secret() -> String {
    let mut b = [0u8; 16];
    let read = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut b));
    if read.is_err() {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        b = (t ^ u128::from(std::process::id()) << 64).to_le_bytes();
    }
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

/// Never outlive the test (or shell) that started us.
pub fn die_with_parent() {
    // SAFETY: prctl with PR_SET_PDEATHSIG only changes this process's own state.
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
    }
}

/// SIGINT, SIGTERM, or (when asked) the end of stdin: the test that started
/// us is gone.
pub async fn wait_for_exit(
    mut term: tokio::signal::unix::Signal,
    mut int: tokio::signal::unix::Signal,
    on_stdin_eof: bool,
) {
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let eof = Arc::new(std::sync::Mutex::new(Some(tx)));
    if on_stdin_eof {
        let eof = eof.clone();
        std::thread::spawn(move || {
            let mut sink = [0u8; 4096];
            let mut stdin = std::io::stdin();
            while matches!(stdin.read(&mut sink), Ok(n) if n > 0) {}
            if let Some(tx) = eof.lock().ok().and_then(|mut t| t.take()) {
                let _ = tx.send(());
            }
        });
    }
    let stdin_gone = async {
        if on_stdin_eof {
            let _ = rx.await;
        } else {
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
        _ = stdin_gone => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_segments_are_percent_decoded() {
        assert_eq!(
            pct_decode("/nodes/pve/tasks/UPID%3Apve%3A00000001%3Aroot%40pam%21golden%3A/status"),
            "/nodes/pve/tasks/UPID:pve:00000001:root@pam!golden:/status"
        );
    }

    #[test]
    fn secrets_are_uuid_shaped() {
        let s = random_secret();
        let parts: Vec<usize> = s.split('-').map(str::len).collect();
        assert_eq!(parts, vec![8, 4, 4, 4, 12], "{s}");
    }
}
