//! Board selection: `--board` takes a built-in board or a board.toml; the
//! reference board without its hardware stops with the missing device named,
//! never a panic; a configuration is checked against the chosen board.

use std::process::Command;

fn gatewayd() -> Command {
    Command::new(env!("CARGO_BIN_EXE_gatewayd"))
}

const RPI4: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../board/rpi4-fxs-fxo/board.toml");

#[test]
fn reference_board_without_its_hardware_names_the_missing_device() {
    if std::path::Path::new("/dev/spidev0.0").exists() {
        eprintln!("SKIP: this host has /dev/spidev0.0 (a board is attached)");
        return;
    }
    for board in ["rpi4-fxs-fxo", RPI4] {
        let out = gatewayd().args(["--board", board]).env("RUST_LOG", "off").output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "--board {board}: {err}");
        assert!(
            err.contains("gatewayd: board rpi4-fxs-fxo: /dev/spidev0.0: No such file or directory"),
            "--board {board}: {err}"
        );
        assert!(!err.contains("panicked"), "{err}");
        assert!(out.stdout.is_empty(), "nothing was started: {}", String::from_utf8_lossy(&out.stdout));
    }
}

#[test]
fn unknown_or_broken_boards_are_refused_before_anything_starts() {
    let out = gatewayd().args(["--board", "rpi5"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("unknown board \"rpi5\" (built in: sim, rpi4-fxs-fxo"), "{err}");

    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("board.toml");
    let text = std::fs::read_to_string(RPI4).unwrap().replacen("timeslot = 1", "timeslot = 0", 1);
    std::fs::write(&bad, text).unwrap();
    let out = gatewayd().arg("--board").arg(&bad).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("timeslot 0 is used by two ports"), "{err}");

    let out = gatewayd().args(["--board", "rpi4-fxs-fxo", "--sim-listen", "127.0.0.1:0"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--sim-listen is for a sim board"));
}

#[test]
fn configuration_is_checked_against_the_chosen_board() {
    // The default names four FXS ports: fine on the sim board, not on the
    // reference board's one.
    let out = gatewayd().arg("--print-default-config").output().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gw.toml");
    std::fs::write(&path, &out.stdout).unwrap();
    let check = |board: &str| gatewayd().args(["--board", board, "--check-config", "--config"]).arg(&path).output().unwrap();
    let out = check("sim");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = check("rpi4-fxs-fxo");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("the board has FXS ports 1..1"), "{err}");
    // Without a configuration the default is cut to the board's ports.
    let out = gatewayd().args(["--board", "rpi4-fxs-fxo", "--check-config"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}
