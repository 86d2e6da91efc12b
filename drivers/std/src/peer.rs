//! Who may connect: Tailscale peers, or loopback in pod mode.

use std::net::IpAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::error::DriverError;

/// How long a `tailscale status` answer is trusted.
pub const CACHE_FOR: Duration = Duration::from_secs(30);

/// Decides whether an address may be served or connected to.
#[derive(Debug)]
pub enum PeerPolicy {
    /// Only loopback addresses (`--pod`).
    Loopback,
    /// Only addresses `tailscale status --json` lists (this machine and its peers).
    Tailscale(TailscaleCache),
}

impl PeerPolicy {
    /// The policy for `pod` mode or not.
    pub fn new(pod: bool) -> Self {
        if pod {
            PeerPolicy::Loopback
        } else {
            PeerPolicy::Tailscale(TailscaleCache::default())
        }
    }

    /// Accepts `address` or says why not.
    pub fn check(&mut self, address: IpAddr) -> Result<(), DriverError> {
        match self {
            PeerPolicy::Loopback if address.is_loopback() => Ok(()),
            PeerPolicy::Loopback => Err(DriverError::NotLoopback { address }),
            PeerPolicy::Tailscale(cache) => {
                if cache.peers()?.contains(&address) {
                    Ok(())
                } else {
                    Err(DriverError::NotAPeer { address })
                }
            }
        }
    }
}

/// The addresses `tailscale status --json` lists, asked at most every [`CACHE_FOR`].
#[derive(Debug, Default)]
pub struct TailscaleCache {
    cached: Option<(Instant, Vec<IpAddr>)>,
}

impl TailscaleCache {
    /// This machine's and its peers' Tailscale addresses.
    pub fn peers(&mut self) -> Result<&[IpAddr], DriverError> {
        let fresh = self
            .cached
            .as_ref()
            .is_some_and(|(at, _)| at.elapsed() < CACHE_FOR);
        if !fresh {
            self.cached = Some((Instant::now(), status_addresses()?));
        }
        Ok(self
            .cached
            .as_ref()
            .map_or(&[], |(_, peers)| peers.as_slice()))
    }
}

/// What to add to every Tailscale problem: the way around it.
const OR_POD: &str = "or use --pod for a transfer within this machine";

fn run_tailscale(args: &[&str]) -> Result<Vec<u8>, DriverError> {
    // `tailscale` on PATH first, then where the system's installer puts it.
    let mut output = Err(DriverError::Tailscale(format!(
        "Tailscale is not installed (no tailscale command on PATH or where its installer puts it); install it from https://tailscale.com/download, {OR_POD}"
    )));
    for program in crate::os::programs::tailscale_candidates() {
        match Command::new(&program).args(args).output() {
            Ok(ran) => {
                output = Ok(ran);
                break;
            }
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => {
                output = Err(DriverError::Tailscale(format!(
                    "running {} failed: {error}; {OR_POD}",
                    program.display()
                )));
                break;
            }
        }
    }
    let output = output?;
    if !output.status.success() {
        // A status it printed anyway may say what is wrong (logged out, stopped).
        if let Some(problem) = serde_json::from_slice(&output.stdout)
            .ok()
            .as_ref()
            .and_then(backend_problem)
        {
            return Err(problem);
        }
        let said = [&output.stderr, &output.stdout]
            .into_iter()
            .map(|text| String::from_utf8_lossy(text).trim().to_owned())
            .find(|text| !text.is_empty())
            .unwrap_or_else(|| output.status.to_string());
        // The command is there but its service is not: it cannot reach tailscaled.
        if said.contains("tailscaled") || said.contains("connect") {
            return Err(DriverError::Tailscale(format!(
                "Tailscale is installed but not running (`tailscale {}`: {said}); start it (`sudo systemctl start tailscaled`, or open the Tailscale app), {OR_POD}",
                args.join(" ")
            )));
        }
        return Err(DriverError::Tailscale(format!(
            "`tailscale {}` failed: {said}; {OR_POD}",
            args.join(" ")
        )));
    }
    Ok(output.stdout)
}

/// The problem `tailscale status --json` shows, if its backend is not running: logged
/// out, stopped, still starting. A status without a state is taken as running.
fn backend_problem(status: &serde_json::Value) -> Option<DriverError> {
    let state = status.get("BackendState")?.as_str()?;
    let fix = match state {
        "Running" => return None,
        "NeedsLogin" | "NeedsMachineAuth" => {
            "Tailscale is logged out; run `tailscale up` (or `tailscale login`) to log in"
        }
        "Stopped" => "Tailscale is stopped; run `tailscale up` to start it",
        "Starting" => "Tailscale is still starting; try again in a moment",
        _ => "Tailscale is not connected; run `tailscale up`",
    };
    Some(DriverError::Tailscale(format!(
        "{fix} (state: {state}), {OR_POD}"
    )))
}

/// Parses `tailscale status --json`: `Self.TailscaleIPs` and every `Peer[*].TailscaleIPs`.
pub fn parse_status(json: &[u8]) -> Result<Vec<IpAddr>, DriverError> {
    let value: serde_json::Value = serde_json::from_slice(json).map_err(|e| {
        DriverError::Tailscale(format!(
            "tailscale status --json printed invalid JSON: {e}; {OR_POD}"
        ))
    })?;
    if let Some(problem) = backend_problem(&value) {
        return Err(problem);
    }
    let mut addresses = Vec::new();
    let mut collect = |node: &serde_json::Value| {
        if let Some(ips) = node.get("TailscaleIPs").and_then(|v| v.as_array()) {
            addresses.extend(
                ips.iter()
                    .filter_map(|ip| ip.as_str()?.parse::<IpAddr>().ok()),
            );
        }
    };
    if let Some(me) = value.get("Self") {
        collect(me);
    }
    if let Some(peers) = value.get("Peer").and_then(|v| v.as_object()) {
        peers.values().for_each(&mut collect);
    }
    Ok(addresses)
}

fn status_addresses() -> Result<Vec<IpAddr>, DriverError> {
    parse_status(&run_tailscale(&["status", "--json"])?)
}

/// This machine's Tailscale IPv4 address (`tailscale ip -4`).
pub fn own_tailscale_ipv4() -> Result<IpAddr, DriverError> {
    let output = match run_tailscale(&["ip", "-4"]) {
        Ok(output) => output,
        // Installed, but no address: the status says why (logged out, stopped).
        Err(error) => return Err(status_addresses().err().unwrap_or(error)),
    };
    let text = String::from_utf8_lossy(&output);
    text.lines()
        .find_map(|line| line.trim().parse::<IpAddr>().ok())
        .ok_or_else(|| {
            DriverError::Tailscale(format!(
                "`tailscale ip -4` printed no IPv4 address; {OR_POD}"
            ))
        })
}
