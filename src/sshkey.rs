//! Throwaway SSH keys for smoke tests: made with ssh-keygen in a directory the
//! caller removes, never reused, never stored.

use std::path::Path;

/// Creates `dir/id_ed25519` and returns the public key line.
pub async fn throwaway_key(dir: &Path) -> anyhow::Result<String> {
    let key = dir.join("id_ed25519");
    let out = tokio::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "golden-smoke", "-f"])
        .arg(&key)
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| {
            anyhow::anyhow!("running ssh-keygen (install Debian's openssh-client): {e}")
        })?;
    if !out.status.success() {
        anyhow::bail!(
            "ssh-keygen failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(std::fs::read_to_string(key.with_extension("pub"))?)
}
