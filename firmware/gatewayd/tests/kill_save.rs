//! A kill -9 at any moment of a save leaves the old or the new file.
//!
//! The test spawns itself as a child that saves configuration changes in a
//! loop (two documents, A and B, in turn: a kept version, the pending marker
//! and the file, each written to a temporary file, synced and renamed),
//! kills it with SIGKILL after a random delay, and checks that the file and
//! every kept version are exactly A or B. Half the trials go through the
//! whole `ConfigStore::commit` (parse, validate, save), half through its disk
//! half (`save_file`) in a tight loop, so that most kills land inside the
//! writes. 1000 trials by default (`GW_KILL_TRIALS`).

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use gatewayd::config::{Config, DEFAULT_TOML};
use gatewayd::config_store::{save_file, versions_dir, ConfigStore};

const CHILD: &str = "GW_KILL_SAVE_CHILD";
const MODE: &str = "GW_KILL_SAVE_MODE";

fn documents() -> (String, String) {
    let a = DEFAULT_TOML.to_string();
    let b = DEFAULT_TOML.replace("register_expires = 300", "register_expires = 120");
    assert_ne!(a, b);
    (a, b)
}

/// The child: saves A and B in turn until it is killed.
fn child(path: &Path, commit: bool) -> ! {
    let (a, b) = documents();
    println!("ready");
    loop {
        let running = Config::load(path, 4).expect("the file the child reads is valid");
        let next_is_b = running.sip.register_expires == 300;
        if commit {
            let store = ConfigStore::new(Some(path.to_path_buf()), 4, running);
            let mut c = store.candidate();
            c.set("sip.register_expires", if next_is_b { "120" } else { "300" }).unwrap();
            store.commit(&c).unwrap();
        } else {
            save_file(path, if next_is_b { b.as_bytes() } else { a.as_bytes() }).unwrap();
        }
    }
}

/// The newest kept version's sequence number.
fn newest(path: &Path) -> u64 {
    std::fs::read_dir(versions_dir(path))
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok()?.file_name().to_str()?.strip_suffix(".toml")?.parse().ok())
        .max()
        .unwrap_or(0)
}

#[test]
fn a_kill_during_a_save_leaves_the_old_or_the_new_file() {
    if let Ok(p) = std::env::var(CHILD) {
        child(Path::new(&p), std::env::var(MODE).as_deref() == Ok("commit"));
    }
    let trials: usize = std::env::var("GW_KILL_TRIALS").ok().and_then(|s| s.parse().ok()).unwrap_or(1000);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gatewayd.toml");
    let (a, b) = documents();
    std::fs::write(&path, &a).unwrap();
    let exe = std::env::current_exe().unwrap();
    let started = Instant::now();
    // A small xorshift generator: the delays differ from run to run.
    let mut seed = (std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64) | 1;
    let mut rnd = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let (mut saved, mut torn_temporaries) = (0, 0);
    for trial in 0..trials {
        let commit = trial % 2 == 0;
        let before = newest(&path);
        let mut child = Command::new(&exe)
            .args(["--exact", "a_kill_during_a_save_leaves_the_old_or_the_new_file", "--test-threads=1", "--nocapture"])
            .env(CHILD, &path)
            .env(MODE, if commit { "commit" } else { "save" })
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Wait until the child is about to save (its output: libtest's lines, then ours).
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        while out.read_line(&mut line).unwrap_or(0) > 0 && !line.contains("ready") {
            line.clear();
        }
        let window_us = if commit { 100_000 } else { 10_000 };
        std::thread::sleep(Duration::from_micros(rnd() % window_us));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let now = std::fs::read(&path).unwrap();
        assert!(
            now == a.as_bytes() || now == b.as_bytes(),
            "trial {trial}: the file is neither the old nor the new document:\n{}",
            String::from_utf8_lossy(&now)
        );
        let mut entries: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().path()).collect();
        entries.extend(std::fs::read_dir(versions_dir(&path)).into_iter().flatten().map(|e| e.unwrap().path()));
        for p in entries {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            if name.ends_with(".tmp") {
                // Killed in the middle of a write: the temporary is left, never
                // the file it was to replace. The next save writes over it.
                torn_temporaries += 1;
                std::fs::remove_file(&p).unwrap();
            } else if p.parent() == Some(&versions_dir(&path)) {
                let v = std::fs::read(&p).unwrap();
                assert!(v == a.as_bytes() || v == b.as_bytes(), "trial {trial}: version {name} is torn");
            }
        }
        if newest(&path) > before {
            saved += 1;
        }
        assert!(started.elapsed() < Duration::from_secs(900), "bounded time: {trial} trials in 15 minutes");
    }
    eprintln!(
        "{trials} kills in {:?}: {saved} trials saved at least once, {torn_temporaries} kills in the middle of a write",
        started.elapsed()
    );
    // Not vacuous: the child was saving when it was killed, many times.
    assert!(saved >= trials / 4, "only {saved} of {trials} trials saved");
    assert!(torn_temporaries >= trials / 100, "only {torn_temporaries} kills landed inside a write");
}
