//! The A/B boot state: RAUC's boot-loader model (`BOOT_ORDER`, `BOOT_x_LEFT`)
//! as a small text file on the data disk, read and written by the first stage
//! (`gw-boot select` in the initramfs) and by gatewayd (`mark_good`, and
//! `install_trial` after an upgrade). Sans-IO: text in, text out.
//!
//! ```text
//! order=B A
//! A.attempts=3
//! A.good=1
//! A.version=0.1.0
//! B.attempts=1
//! B.good=0
//! B.version=0.1.0+2
//! ```
//!
//! - Every boot takes the first slot in `order` with attempts left and
//!   decrements its count (before the slot runs: a slot that hangs or
//!   reboots the box uses its attempts up).
//! - A healthy gatewayd marks its slot good: attempts back to 3.
//! - An upgrade writes the other slot and puts it first with ONE attempt and
//!   `good=0`: a trial. If it never marks itself good, the next boot finds it
//!   at 0 and takes the old slot.
//! - No slot with attempts left: the last good slot anyway (never no boot).

pub const MAX_ATTEMPTS: u8 = 3;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    A,
    B,
}

impl Slot {
    pub fn other(self) -> Slot {
        match self {
            Slot::A => Slot::B,
            Slot::B => Slot::A,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Slot::A => "A",
            Slot::B => "B",
        }
    }
    pub fn parse(s: &str) -> Option<Slot> {
        match s {
            "A" => Some(Slot::A),
            "B" => Some(Slot::B),
            _ => None,
        }
    }
    fn idx(self) -> usize {
        self as usize
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SlotState {
    pub attempts: u8,
    pub good: bool,
    pub version: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootState {
    pub order: [Slot; 2],
    pub slots: [SlotState; 2],
}

/// What the first stage decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Choice {
    pub slot: Slot,
    /// Booting a slot that has not yet been marked good.
    pub trial: bool,
    /// No slot had attempts left: the last good one, without counting.
    pub exhausted: bool,
}

impl Default for BootState {
    /// The factory state: slot A, good; slot B empty.
    fn default() -> Self {
        BootState {
            order: [Slot::A, Slot::B],
            slots: [
                SlotState { attempts: MAX_ATTEMPTS, good: true, version: "factory".into() },
                SlotState::default(),
            ],
        }
    }
}

impl BootState {
    pub fn slot(&self, s: Slot) -> &SlotState {
        &self.slots[s.idx()]
    }
    fn slot_mut(&mut self, s: Slot) -> &mut SlotState {
        &mut self.slots[s.idx()]
    }

    /// Parses the file; anything unreadable is an error (the caller then
    /// boots the factory state rather than guess).
    pub fn parse(text: &str) -> Result<BootState, String> {
        let mut st = BootState::default();
        let mut seen_order = false;
        for line in text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
            let (k, v) = line.split_once('=').ok_or_else(|| format!("not key=value: {line:?}"))?;
            if k == "order" {
                let slots: Vec<Option<Slot>> = v.split_whitespace().map(Slot::parse).collect();
                match slots.as_slice() {
                    [Some(a), Some(b)] if a != b => st.order = [*a, *b],
                    _ => return Err(format!("bad order {v:?}")),
                }
                seen_order = true;
                continue;
            }
            let (slot, field) = k.split_once('.').ok_or_else(|| format!("unknown key {k:?}"))?;
            let slot = Slot::parse(slot).ok_or_else(|| format!("unknown slot in {k:?}"))?;
            let s = st.slot_mut(slot);
            match field {
                "attempts" => s.attempts = v.parse::<u8>().map_err(|_| format!("bad {k} {v:?}"))?.min(MAX_ATTEMPTS),
                "good" => {
                    s.good = match v {
                        "1" => true,
                        "0" => false,
                        _ => return Err(format!("bad {k} {v:?}")),
                    }
                }
                "version" => s.version = v.to_string(),
                _ => return Err(format!("unknown key {k:?}")),
            }
        }
        if !seen_order {
            return Err("no order".into());
        }
        Ok(st)
    }

    pub fn to_text(&self) -> String {
        let mut out = format!("order={} {}\n", self.order[0].name(), self.order[1].name());
        for s in [Slot::A, Slot::B] {
            let st = self.slot(s);
            out.push_str(&format!(
                "{n}.attempts={}\n{n}.good={}\n{n}.version={}\n",
                st.attempts,
                u8::from(st.good),
                st.version,
                n = s.name()
            ));
        }
        out
    }

    /// The first stage's decision for this boot; counts the attempt.
    pub fn select(&mut self) -> Choice {
        for slot in self.order {
            let s = self.slot_mut(slot);
            if s.attempts > 0 {
                s.attempts -= 1;
                return Choice { slot, trial: !s.good, exhausted: false };
            }
        }
        let slot = self.order.into_iter().find(|s| self.slot(*s).good).unwrap_or(Slot::A);
        Choice { slot, trial: false, exhausted: true }
    }

    /// The booted slot is healthy.
    pub fn mark_good(&mut self, slot: Slot) {
        let s = self.slot_mut(slot);
        s.attempts = MAX_ATTEMPTS;
        s.good = true;
    }

    /// A new image was written to `slot` (never the booted one): boot it
    /// next, once, on trial.
    pub fn install_trial(&mut self, slot: Slot, version: &str) {
        *self.slot_mut(slot) = SlotState { attempts: 1, good: false, version: version.to_string() };
        self.order = [slot, slot.other()];
    }

    /// Before the inactive slot is overwritten: it cannot be booted while
    /// its content is half written.
    pub fn invalidate(&mut self, slot: Slot) {
        *self.slot_mut(slot) = SlotState::default();
        if self.order[0] == slot {
            self.order = [slot.other(), slot];
        }
    }

    /// One line for the status.
    pub fn summary(&self) -> String {
        let d = |s: Slot| {
            let st = self.slot(s);
            format!(
                "{} {} ({}, {} attempts)",
                s.name(),
                if st.version.is_empty() { "empty" } else { &st.version },
                if st.good { "good" } else if st.version.is_empty() { "-" } else { "not confirmed" },
                st.attempts
            )
        };
        format!("order {} {}: {}; {}", self.order[0].name(), self.order[1].name(), d(Slot::A), d(Slot::B))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn factory_state_boots_a_and_mark_good_restores_attempts() {
        let mut st = BootState::default();
        let c = st.select();
        assert_eq!(c, Choice { slot: Slot::A, trial: false, exhausted: false });
        assert_eq!(st.slot(Slot::A).attempts, 2);
        st.mark_good(Slot::A);
        assert_eq!(st.slot(Slot::A).attempts, 3);
        assert_eq!(BootState::parse(&st.to_text()).unwrap(), st);
    }

    #[test]
    fn trial_boots_once_then_marked_good_stays() {
        let mut st = BootState::default();
        st.select();
        st.mark_good(Slot::A);
        st.invalidate(Slot::B);
        st.install_trial(Slot::B, "2");
        let c = st.select();
        assert_eq!(c, Choice { slot: Slot::B, trial: true, exhausted: false });
        st.mark_good(Slot::B);
        // Later boots: B, normal.
        for _ in 0..5 {
            assert_eq!(st.select(), Choice { slot: Slot::B, trial: false, exhausted: false });
            st.mark_good(Slot::B);
        }
        assert_eq!(st.order, [Slot::B, Slot::A]);
    }

    #[test]
    fn trial_never_marked_good_falls_back_to_the_old_slot() {
        let mut st = BootState::default();
        st.install_trial(Slot::B, "broken");
        assert_eq!(st.select().slot, Slot::B);
        // No mark_good: the reboot (deadline or watchdog) comes.
        let c = st.select();
        assert_eq!(c, Choice { slot: Slot::A, trial: false, exhausted: false });
        st.mark_good(Slot::A);
        // And it stays on A.
        assert_eq!(st.select().slot, Slot::A);
        assert!(st.summary().contains("B broken (not confirmed, 0 attempts)"), "{}", st.summary());
    }

    #[test]
    fn a_good_slot_that_keeps_failing_uses_up_its_attempts_then_the_last_good_boots_anyway() {
        let mut st = BootState::default();
        for _ in 0..3 {
            assert_eq!(st.select().slot, Slot::A);
        }
        assert_eq!(st.select(), Choice { slot: Slot::A, trial: false, exhausted: true });
        assert_eq!(st.slot(Slot::A).attempts, 0);
    }

    #[test]
    fn invalidate_moves_the_slot_back_and_it_is_never_chosen() {
        let mut st = BootState::default();
        st.install_trial(Slot::B, "2");
        st.invalidate(Slot::B);
        assert_eq!(st.order, [Slot::A, Slot::B]);
        for _ in 0..4 {
            assert_eq!(st.select().slot, Slot::A);
        }
    }

    #[test]
    fn garbage_is_refused_not_guessed() {
        for bad in ["", "order=A A", "order=A", "order=A B\nC.attempts=1", "order=A B\nA.attempts=x", "order=A B\nA.good=2", "junk"] {
            assert!(BootState::parse(bad).is_err(), "{bad:?}");
        }
        let st = BootState::parse("order=B A\nA.attempts=200\n").unwrap();
        assert_eq!(st.slot(Slot::A).attempts, MAX_ATTEMPTS, "clamped");
        assert_eq!(st.order, [Slot::B, Slot::A]);
    }
}

/// Reads the state file; a missing file is the factory state, an unreadable
/// one an error.
pub fn load(path: &std::path::Path) -> Result<BootState, String> {
    match std::fs::read_to_string(path) {
        Ok(t) => BootState::parse(&t).map_err(|e| format!("{}: {e}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BootState::default()),
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

/// Writes the state file atomically: a temporary file, fsync, rename, fsync
/// of the directory. A power cut leaves the old or the new state.
pub fn store(path: &std::path::Path, st: &BootState) -> std::io::Result<()> {
    write_atomic(path, st.to_text().as_bytes())
}

pub fn write_atomic(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        if let Ok(d) = std::fs::File::open(if dir.as_os_str().is_empty() { std::path::Path::new(".") } else { dir }) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}
