//! The daemon's command line: configuration checks refuse bad files with the
//! field and the reason, and the embedded default round-trips.

use std::process::Command;

fn gatewayd() -> Command {
    Command::new(env!("CARGO_BIN_EXE_gatewayd"))
}

#[test]
fn printed_default_configuration_is_accepted() {
    let out = gatewayd().arg("--print-default-config").output().unwrap();
    assert!(out.status.success());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("default.toml");
    std::fs::write(&path, &out.stdout).unwrap();
    let out = gatewayd().arg("--config").arg(&path).arg("--check-config").output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "configuration OK");
}

#[test]
fn invalid_configuration_is_refused_with_field_and_reason() {
    let out = gatewayd().arg("--print-default-config").output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap().replace("rtp_port_min = 20000", "rtp_port_min = 30000");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, text).unwrap();
    let out = gatewayd().arg("--config").arg(&path).arg("--check-config").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("media.rtp_port_min"), "{err}");
    assert!(err.contains("<= rtp_port_max"), "{err}");
}

#[test]
fn missing_configuration_file_is_a_clear_error() {
    let out = gatewayd().args(["--config", "/nonexistent/gw.toml", "--check-config"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read /nonexistent/gw.toml"));
}
