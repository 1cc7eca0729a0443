//! Firmware upgrade into the inactive A/B slot, and marking the booted slot
//! good once gatewayd is healthy.
//!
//! The console carries a bundle (`gw_bundle`) in chunks:
//!
//! ```text
//! upgrade begin LEN            -> ready for LEN bytes
//! upgrade data OFFSET BASE64 CRC32
//!                              -> ok RECEIVED/LEN   (a chunk whose CRC-32 is wrong, or that is
//!                                 not at the next offset, is dropped: "resend from N")
//! upgrade end                  -> the verdict
//! ```
//!
//! The offset lets the client send several chunks before their answers
//! (go-back-N): after a dropped chunk every later one is refused too, and
//! the client starts again at the offset the answer names.
//!
//! ```text
//! upgrade abort | upgrade status
//! ```
//!
//! On `end` the whole bundle is verified (length, ed25519 signature with the
//! public key baked into the image, compatibility) before anything is
//! written. A refused bundle changes nothing. An accepted one is written to
//! the slot that is NOT running (marked unbootable while it is written),
//! then made the next boot, on trial (one attempt); the box reboots. The new
//! gatewayd marks its slot good once healthy (rt loop and control plane
//! heartbeats moving, and the trunk registered); if it never does, /init
//! reboots at the trial deadline and the boot state falls back to the old
//! slot (`gw_bundle::boot`).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use base64::Engine;
use gw_bundle::boot::{self, Slot};
use serde::{Deserialize, Serialize};
use tracing::{error, info, warn};

use crate::status::SharedStatus;
use crate::watchdog::Verdict;

/// `[upgrade]`: where the A/B slots and the boot state are (the appliance's
/// data disk). Absent: upgrades are refused.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpgradeConfig {
    /// The boot state file (`gw_bundle::boot`).
    pub boot_state: PathBuf,
    /// `SLOTS/A/gatewayd` and `SLOTS/B/gatewayd`.
    pub slots: PathBuf,
    /// The update key's public half (64 hex digits), baked into the image.
    pub public_key: PathBuf,
    /// What bundles must name as `compatible`.
    pub compatible: String,
    /// Written by the first stage: the booted slot (`A`, `B trial`, ...).
    pub booted: PathBuf,
    /// Reboot after writing a slot (off in tests).
    #[serde(default = "yes")]
    pub reboot: bool,
    #[serde(default = "default_max")]
    pub max_bundle_bytes: u64,
}

fn yes() -> bool {
    true
}
fn default_max() -> u64 {
    64 << 20
}

pub struct Upgrader {
    cfg: UpgradeConfig,
    booted: Option<Slot>,
    status: SharedStatus,
    /// One install at a time; also the consecutive healthy ticks.
    state: Mutex<Health>,
}

#[derive(Default)]
struct Health {
    healthy_ticks: u32,
    marked: bool,
}

static GLOBAL: OnceLock<Arc<Upgrader>> = OnceLock::new();

/// The upgrader of this process (set once by main; the console sessions use it).
pub fn global() -> Option<&'static Arc<Upgrader>> {
    GLOBAL.get()
}

pub fn set_global(u: Arc<Upgrader>) {
    let _ = GLOBAL.set(u);
}

/// Ticks with both heartbeats fresh (500 ms each) before marking good.
const HEALTHY_TICKS: u32 = 4;

impl Upgrader {
    pub fn new(cfg: UpgradeConfig, status: SharedStatus) -> Upgrader {
        let booted = std::fs::read_to_string(&cfg.booted)
            .ok()
            .and_then(|t| t.split_whitespace().next().and_then(Slot::parse));
        {
            let mut s = crate::status::lock(&status);
            s.supervision.slot = booted.map(|b| b.name().to_string());
            s.supervision.boot = boot::load(&cfg.boot_state).map(|b| b.summary()).unwrap_or_else(|e| e);
        }
        if booted.is_none() {
            warn!(file = %cfg.booted.display(), "booted slot unknown: upgrades refused, nothing marked good");
        }
        Upgrader { cfg, booted, status, state: Mutex::new(Health::default()) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Health> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn boot_summary(&self) -> String {
        match boot::load(&self.cfg.boot_state) {
            Ok(b) => format!("booted {}; {}\n", self.booted.map(Slot::name).unwrap_or("?"), b.summary()),
            Err(e) => format!("error: {e}\n"),
        }
    }

    /// Called once a second or so with the watchdog's verdict: marks the
    /// booted slot good after HEALTHY_TICKS fresh heartbeats in a row with
    /// the trunk registered (or no registration configured).
    pub fn on_tick(&self, v: Verdict) {
        let Some(slot) = self.booted else { return };
        let registered = {
            let s = crate::status::lock(&self.status);
            s.registrations.is_empty() || s.registrations.iter().any(|r| r.state.starts_with("registered"))
        };
        let mut h = self.lock();
        if h.marked {
            return;
        }
        h.healthy_ticks = if v == Verdict::Feed && registered { h.healthy_ticks + 1 } else { 0 };
        if h.healthy_ticks < HEALTHY_TICKS {
            return;
        }
        let result = boot::load(&self.cfg.boot_state).and_then(|mut st| {
            st.mark_good(slot);
            boot::store(&self.cfg.boot_state, &st).map_err(|e| e.to_string())?;
            Ok(st.summary())
        });
        match result {
            Ok(summary) => {
                info!(slot = slot.name(), "healthy: slot marked good");
                h.marked = true;
                let mut s = crate::status::lock(&self.status);
                s.supervision.marked_good = true;
                s.supervision.boot = summary;
            }
            Err(e) => error!(%e, "cannot mark the slot good"),
        }
    }

    /// Verifies `bundle` and, if good, writes it to the inactive slot and
    /// makes that the next boot, on trial. The text is the verdict.
    pub fn install(&self, bundle: &[u8]) -> Result<String, String> {
        let h = self.lock();
        let result = self.install_locked(bundle, h.marked);
        drop(h);
        let line = match &result {
            Ok(t) => t.lines().last().unwrap_or("").to_string(),
            Err(e) => e.clone(),
        };
        crate::status::lock(&self.status).supervision.upgrade = line;
        result
    }

    fn install_locked(&self, bundle: &[u8], booted_good: bool) -> Result<String, String> {
        let refuse = |e: String| format!("error: upgrade refused, nothing changed: {e}");
        let key = std::fs::read_to_string(&self.cfg.public_key)
            .map_err(|e| format!("{}: {e}", self.cfg.public_key.display()))
            .and_then(|t| gw_bundle::parse_public_key(&t).map_err(|e| e.to_string()))
            .map_err(|e| refuse(format!("no update key: {e}")))?;
        let v = gw_bundle::verify(bundle, &key, &self.cfg.compatible).map_err(|e| refuse(e.to_string()))?;
        let booted = self.booted.ok_or_else(|| refuse("the booted slot is unknown".into()))?;
        if !booted_good {
            return Err(refuse(format!(
                "slot {} is still on trial (not yet marked good): upgrade again once it is",
                booted.name()
            )));
        }
        let target = booted.other();
        let mut st = boot::load(&self.cfg.boot_state).map_err(refuse)?;
        // From here on the old slot stays bootable whatever happens.
        st.invalidate(target);
        boot::store(&self.cfg.boot_state, &st).map_err(|e| refuse(format!("boot state: {e}")))?;
        let dir = self.cfg.slots.join(target.name());
        write_slot(&dir, v.image).map_err(|e| format!("error: writing slot {}: {e} (slot {} stays the boot slot)", target.name(), booted.name()))?;
        st.install_trial(target, &v.manifest.version);
        boot::store(&self.cfg.boot_state, &st)
            .map_err(|e| format!("error: boot state: {e} (slot {} stays the boot slot)", booted.name()))?;
        info!(slot = target.name(), version = %v.manifest.version, bytes = v.image.len(), "upgrade written; next boot on trial");
        crate::status::lock(&self.status).supervision.boot = st.summary();
        let mut out = format!(
            "verified: version {} for {}, signature good ({} bytes)\nwritten to slot {} (the running slot {} is untouched)\n",
            v.manifest.version,
            v.manifest.compatible,
            bundle.len(),
            target.name(),
            booted.name()
        );
        if self.cfg.reboot {
            out.push_str(&format!(
                "upgrade: done; rebooting into slot {} on trial (back to slot {} unless it reports healthy)\n",
                target.name(),
                booted.name()
            ));
            std::thread::spawn(|| {
                std::thread::sleep(std::time::Duration::from_secs(1));
                nix::unistd::sync();
                let e = nix::sys::reboot::reboot(nix::sys::reboot::RebootMode::RB_AUTOBOOT);
                error!(?e, "reboot failed");
            });
        } else {
            out.push_str(&format!("upgrade: done; slot {} boots next, on trial\n", target.name()));
        }
        Ok(out)
    }
}

fn write_slot(dir: &Path, image: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join("gatewayd.new");
    {
        let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o755).open(&tmp)?;
        f.write_all(image)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, dir.join("gatewayd"))?;
    std::fs::File::open(dir)?.sync_all()
}

/// A console session's transfer in progress.
#[derive(Debug, Default)]
pub struct Transfer {
    expected: u64,
    buf: Option<Vec<u8>>,
}

impl Transfer {
    /// `args` are the words after `upgrade`; `line` is the whole line.
    pub fn command(&mut self, args: &[&str], up: Option<&Upgrader>) -> String {
        let Some(up) = up else {
            return "error: upgrades are not configured on this gateway (no [upgrade] section)\n".into();
        };
        match args {
            ["begin", len] => {
                let Ok(len) = len.parse::<u64>() else { return format!("error: bad length {len:?}\n") };
                if len == 0 || len > up.cfg.max_bundle_bytes {
                    return format!("error: a bundle of {len} bytes is refused (at most {})\n", up.cfg.max_bundle_bytes);
                }
                self.expected = len;
                // Grows as chunks arrive: an announced length costs no memory.
                self.buf = Some(Vec::with_capacity(len.min(1 << 20) as usize));
                format!("ready for {len} bytes\n")
            }
            ["data", offset, b64, crc] => {
                let Some(buf) = self.buf.as_mut() else { return "error: no transfer ('upgrade begin LEN' first)\n".into() };
                let at = buf.len();
                if offset.parse::<usize>().ok() != Some(at) {
                    return format!("error: chunk at offset {offset}, expected {at} (dropped; resend from {at})\n");
                }
                let Ok(chunk) = base64::engine::general_purpose::STANDARD.decode(b64) else {
                    return format!("error: chunk is not base64 (dropped; resend from {at})\n");
                };
                let want = u32::from_str_radix(crc, 16).ok();
                if want != Some(gw_bundle::crc32(&chunk)) {
                    return format!("error: chunk checksum mismatch (dropped; resend from {at})\n");
                }
                if at as u64 + chunk.len() as u64 > self.expected {
                    self.buf = None;
                    return format!("error: more than the announced {} bytes; transfer dropped\n", self.expected);
                }
                buf.extend_from_slice(&chunk);
                format!("ok {}/{}\n", buf.len(), self.expected)
            }
            ["end"] => {
                let Some(buf) = self.buf.take() else { return "error: no transfer ('upgrade begin LEN' first)\n".into() };
                match up.install(&buf) {
                    Ok(t) => t,
                    Err(e) => e + "\n",
                }
            }
            ["abort"] => {
                self.buf = None;
                "transfer dropped\n".into()
            }
            ["status"] | [] => up.boot_summary(),
            _ => "error: upgrade begin LEN | data OFFSET BASE64 CRC32 | end | abort | status\n".into(),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) struct Fixture {
        pub dir: tempfile::TempDir,
        pub up: Upgrader,
        pub key: gw_bundle::PrivateKey,
    }

    pub(crate) fn fixture(booted: &str) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let key = gw_bundle::signing_key_from_seed([7; 32]);
        std::fs::write(dir.path().join("update.pub"), gw_bundle::to_hex(key.verifying_key().as_bytes())).unwrap();
        std::fs::write(dir.path().join("booted"), booted).unwrap();
        std::fs::create_dir_all(dir.path().join("slots/A")).unwrap();
        std::fs::write(dir.path().join("slots/A/gatewayd"), b"old image").unwrap();
        let cfg = UpgradeConfig {
            boot_state: dir.path().join("state"),
            slots: dir.path().join("slots"),
            public_key: dir.path().join("update.pub"),
            compatible: "test-box".into(),
            booted: dir.path().join("booted"),
            reboot: false,
            max_bundle_bytes: 1 << 20,
        };
        let up = Upgrader::new(cfg, crate::status::tests::tests_status());
        Fixture { dir, up, key }
    }

    fn bundle(f: &Fixture, version: &str, image: &[u8]) -> Vec<u8> {
        gw_bundle::create(&gw_bundle::Manifest { compatible: "test-box".into(), version: version.into() }, image, &f.key)
    }

    /// Sends `b` through the console protocol in chunks of `chunk` bytes.
    fn send(t: &mut Transfer, up: &Upgrader, b: &[u8], chunk: usize) -> String {
        assert_eq!(t.command(&["begin", &b.len().to_string()], Some(up)), format!("ready for {} bytes\n", b.len()));
        for (i, c) in b.chunks(chunk).enumerate() {
            let b64 = base64::engine::general_purpose::STANDARD.encode(c);
            let crc = format!("{:08x}", gw_bundle::crc32(c));
            assert!(t.command(&["data", &(i * chunk).to_string(), &b64, &crc], Some(up)).starts_with("ok "));
        }
        t.command(&["end"], Some(up))
    }

    fn healthy(up: &Upgrader) {
        for _ in 0..HEALTHY_TICKS {
            up.on_tick(Verdict::Feed);
        }
    }

    fn state(f: &Fixture) -> boot::BootState {
        boot::load(&f.dir.path().join("state")).unwrap()
    }

    #[test]
    fn good_bundle_goes_to_the_inactive_slot_on_trial() {
        let f = fixture("A\n");
        healthy(&f.up);
        assert!(state(&f).slot(Slot::A).good);
        let mut t = Transfer::default();
        let r = send(&mut t, &f.up, &bundle(&f, "2.0", b"new image"), 4);
        assert!(r.contains("written to slot B") && r.contains("slot B boots next, on trial"), "{r}");
        assert_eq!(std::fs::read(f.dir.path().join("slots/B/gatewayd")).unwrap(), b"new image");
        assert_eq!(std::fs::read(f.dir.path().join("slots/A/gatewayd")).unwrap(), b"old image");
        let mut st = state(&f);
        assert_eq!(st.select(), boot::Choice { slot: Slot::B, trial: true, exhausted: false });
        assert!(crate::status::snapshot(&f.up.status).supervision.upgrade.contains("slot B boots next"));
    }

    #[test]
    fn bad_signature_truncated_and_wrong_key_change_nothing() {
        let f = fixture("A\n");
        healthy(&f.up);
        let before = std::fs::read_to_string(f.dir.path().join("state")).unwrap();
        let good = bundle(&f, "2.0", &[0x42; 5000]);
        let mut bad = good.clone();
        bad[100] ^= 1;
        let other = gw_bundle::create(
            &gw_bundle::Manifest { compatible: "test-box".into(), version: "2".into() },
            b"x",
            &gw_bundle::signing_key_from_seed([8; 32]),
        );
        let mut t = Transfer::default();
        for (b, want) in [
            (&bad[..], "signature does not verify"),
            (&good[..good.len() - 1000], "truncated bundle: 4131 bytes of 5131"),
            (&other[..], "signature does not verify"),
        ] {
            let r = send(&mut t, &f.up, b, 700);
            assert!(r.starts_with("error: upgrade refused, nothing changed:") && r.contains(want), "{r}");
            assert_eq!(std::fs::read_to_string(f.dir.path().join("state")).unwrap(), before);
            assert!(!f.dir.path().join("slots/B").exists());
        }
    }

    #[test]
    fn chunk_errors_are_reported_and_the_transfer_goes_on() {
        let f = fixture("A\n");
        healthy(&f.up);
        let mut t = Transfer::default();
        assert!(t.command(&["data", "0", "AAAA", "0"], Some(&f.up)).starts_with("error: no transfer"));
        assert!(t.command(&["begin", "999999999"], Some(&f.up)).starts_with("error: a bundle of"));
        let b = bundle(&f, "3", b"img");
        t.command(&["begin", &b.len().to_string()], Some(&f.up));
        assert!(t.command(&["data", "0", "!!!", "0"], Some(&f.up)).contains("not base64"));
        let (head, tail) = b.split_at(10);
        let enc = |c: &[u8]| (base64::engine::general_purpose::STANDARD.encode(c), format!("{:08x}", gw_bundle::crc32(c)));
        let (b64, crc) = enc(head);
        assert_eq!(t.command(&["data", "0", &b64, "deadbeef"], Some(&f.up)), "error: chunk checksum mismatch (dropped; resend from 0)\n");
        assert_eq!(t.command(&["data", "0", &b64, &crc], Some(&f.up)), format!("ok 10/{}\n", b.len()));
        // A chunk sent again, or one ahead of a dropped one: refused, with where to go on.
        assert_eq!(t.command(&["data", "0", &b64, &crc], Some(&f.up)), "error: chunk at offset 0, expected 10 (dropped; resend from 10)\n");
        let (b64, crc) = enc(tail);
        assert!(t.command(&["data", "99", &b64, &crc], Some(&f.up)).contains("resend from 10"));
        assert_eq!(t.command(&["data", "10", &b64, &crc], Some(&f.up)), format!("ok {0}/{0}\n", b.len()));
        assert!(t.command(&["end"], Some(&f.up)).contains("written to slot B"));
        assert!(Transfer::default().command(&["end"], None).contains("not configured"));
    }

    #[test]
    fn no_upgrade_while_on_trial_and_marking_good_needs_health() {
        let f = fixture("B trial\n");
        let mut st = boot::BootState::default();
        st.install_trial(Slot::B, "2");
        st.select();
        boot::store(&f.dir.path().join("state"), &st).unwrap();
        let mut t = Transfer::default();
        let r = send(&mut t, &f.up, &bundle(&f, "3", b"x"), 100);
        assert!(r.contains("still on trial"), "{r}");
        // Stalled heartbeats never mark it good.
        for _ in 0..20 {
            f.up.on_tick(Verdict::Starve("rt loop stalled"));
        }
        assert!(!state(&f).slot(Slot::B).good);
        healthy(&f.up);
        assert!(state(&f).slot(Slot::B).good);
        assert_eq!(state(&f).slot(Slot::B).attempts, boot::MAX_ATTEMPTS);
    }
}
