//! Where the programs Ferry runs are found when they are not on `PATH`.

use std::path::PathBuf;

/// Where the Tailscale command line is, in the order to try: `tailscale` on `PATH`, then
/// where each system's installer puts it (the macOS app bundle's `Tailscale`, the
/// Windows program folder).
pub fn tailscale_candidates() -> Vec<PathBuf> {
    let mut found = vec![PathBuf::from("tailscale")];
    if cfg!(target_os = "macos") {
        found.push(PathBuf::from(
            "/Applications/Tailscale.app/Contents/MacOS/Tailscale",
        ));
    }
    if cfg!(windows) {
        let base = std::env::var_os("ProgramFiles").unwrap_or_else(|| "C:\\Program Files".into());
        found.push(PathBuf::from(base).join("Tailscale").join("tailscale.exe"));
    }
    found
}
