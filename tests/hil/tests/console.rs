//! The installer's console edits the configuration of a running gatewayd:
//! a refused candidate changes nothing, a commit saves the file (the old one
//! kept as a version) and applies it live where it can (else gatewayd restarts
//! in place with it), a rollback brings the previous file back the same way,
//! and a valid change that cannot start is undone by gatewayd itself.

mod common;

use std::time::Duration;

use common::{Gatewayd, GwOptions, PASSWORD};
use hil::{free_udp_port, Kamailio};

fn user_agent(gw: &Gatewayd) -> String {
    let cfg = gw.console(&["show config"]).remove(0);
    cfg.lines().find(|l| l.starts_with("user_agent")).unwrap_or_default().to_string()
}

/// The newest of the kept versions (`gatewayd.toml.versions/NNNNNN.toml`).
fn newest_version(gw: &Gatewayd) -> String {
    let dir = gw.config_path.with_file_name("gatewayd.toml.versions");
    let mut files: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).filter(|p| p.extension().is_some_and(|x| x == "toml")).collect();
    files.sort();
    std::fs::read_to_string(files.last().expect("a kept version")).unwrap()
}

#[test]
fn console_commit_applies_live_or_restarts_rollback_restores_and_a_failed_start_is_undone() {
    let kamailio = Kamailio::start(free_udp_port(), PASSWORD).expect("kamailio starts");
    let mut gw = Gatewayd::start(kamailio.addr(), GwOptions { fxs_ports: 1, ..Default::default() });
    gw.wait_registered(&["1001"]);
    let pid = gw.pid();
    let original = std::fs::read_to_string(&gw.config_path).unwrap();
    // `show config` is the installer's own file (comments and all): it
    // leaves the User-Agent out, so the default applies.
    assert_eq!(user_agent(&gw), "");

    // A bad candidate: refused with the field and the reason, nothing changes.
    let out = gw.console(&["config set media.ptime_ms 25", "config set sip.register_expires soon", "config commit"]);
    assert!(out[0].starts_with("ok"), "{out:?}");
    assert_eq!(out[1], "error: sip.register_expires: expected integer, got \"soon\"\n");
    assert!(out[2].starts_with("error: refused, nothing changed: media.ptime_ms: must be 10, 20"), "{out:?}");
    assert_eq!(std::fs::read_to_string(&gw.config_path).unwrap(), original);
    assert!(!gw.log().contains("restarting"));

    // A good one: saved and applied live (no restart).
    let out = gw.console(&["config set sip.user_agent Branch-GW-7", "config diff", "config commit"]);
    assert_eq!(out[1], "- sip.user_agent = \"gatewayd\"\n+ sip.user_agent = \"Branch-GW-7\"\n");
    assert!(out[2].starts_with("saved") && out[2].contains("applied without a restart"), "{out:?}");
    assert_eq!(user_agent(&gw), "user_agent = \"Branch-GW-7\"");
    assert!(!gw.log().contains("restarting"));
    assert_eq!(newest_version(&gw), original, "the old file kept whole");
    let live = std::fs::read_to_string(&gw.config_path).unwrap();

    // One the rt thread takes only at start: gatewayd restarts in place
    // (same pid) with it, and says so first.
    let out = gw.console(&["config set media.echo_tail_ms 128", "config commit"]);
    assert!(out[1].starts_with("saved") && out[1].contains("gatewayd restarts to apply media echo canceller"), "{out:?}");
    gw.wait_until("the restart", Duration::from_secs(10), || gw.log().contains("restarting with the new configuration"));
    gw.wait_until("the restarted daemon's console", Duration::from_secs(15), || {
        std::net::TcpStream::connect(gw.console).is_ok()
            && gw.console(&["show config"]).remove(0).contains("echo_tail_ms = 128")
    });
    assert!(gw.alive());
    assert_eq!(gw.pid(), pid, "restarted in place");
    gw.wait_registered(&["1001"]);
    // The carrier sees the new User-Agent on the new registration.
    gw.wait_until("a REGISTER with the new User-Agent", Duration::from_secs(10), || {
        gw.log().contains("User-Agent: Branch-GW-7")
    });
    assert_eq!(newest_version(&gw), live, "the file before the change kept whole");

    // Rollback: the previous file comes back, and gatewayd runs it.
    let out = gw.console(&["config rollback"]);
    assert!(out[0].starts_with("restored"), "{out:?}");
    gw.wait_until("the rolled-back configuration", Duration::from_secs(15), || {
        std::net::TcpStream::connect(gw.console).is_ok() && gw.console(&["show config"]).remove(0).contains("echo_tail_ms = 64")
    });
    assert_eq!(std::fs::read_to_string(&gw.config_path).unwrap(), live);
    assert!(gw.alive());
    gw.wait_registered(&["1001"]);
    let original = live;

    // A valid change that cannot start (the web UI's new address is taken by
    // another process): gatewayd goes back to the previous file by itself.
    let squatter = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = squatter.local_addr().unwrap();
    let out = gw.console(&[&format!("config set management.http_listen {taken}"), "config commit"]);
    assert!(out[1].starts_with("saved"), "{out:?}");
    gw.wait_until("the failed start undone", Duration::from_secs(15), || {
        gw.log().contains("the committed configuration did not start")
    });
    gw.wait_until("gatewayd back on the previous configuration", Duration::from_secs(15), || {
        std::net::TcpStream::connect(gw.console).is_ok() && gw.status().is_some()
    });
    assert!(gw.alive());
    assert_eq!(gw.pid(), pid);
    assert_eq!(std::fs::read_to_string(&gw.config_path).unwrap(), original);
    let failed = std::fs::read_to_string(gw.config_path.with_file_name("gatewayd.toml.failed")).unwrap();
    assert!(failed.contains(&taken.to_string()), "the failed file kept for the installer");
    gw.wait_registered(&["1001"]);
    drop(squatter);
}

/// `debug sip` on a console session shows the SIP messages gatewayd
/// receives and sends (here an OPTIONS from a stranger and its answer),
/// until `undebug sip`.
#[test]
fn debug_sip_shows_the_messages_on_the_session() {
    use std::io::{Read, Write};
    let kamailio = Kamailio::start(free_udp_port(), PASSWORD).expect("kamailio starts");
    let gw = Gatewayd::start(kamailio.addr(), GwOptions { fxs_ports: 1, ..Default::default() });
    gw.wait_registered(&["1001"]);
    let mut s = std::net::TcpStream::connect(gw.console).expect("console connects");
    s.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    let mut got = String::new();
    let mut read_until = |s: &mut std::net::TcpStream, want: &str| {
        let end = std::time::Instant::now() + Duration::from_secs(10);
        let mut buf = [0u8; 4096];
        while !got.contains(want) {
            assert!(std::time::Instant::now() < end, "no {want:?} in {got:?}\n{}", gw.log());
            if let Ok(n) = s.read(&mut buf) {
                got.push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        }
        std::mem::take(&mut got)
    };
    read_until(&mut s, "> ");
    s.write_all(b"debug sip\n").unwrap();
    read_until(&mut s, "debugging SIP");
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let me = udp.local_addr().unwrap();
    let options = format!(
        "OPTIONS sip:{sip} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bKdbgsip1\r\nFrom: <sip:probe@{me}>;tag=1\r\n\
         To: <sip:{sip}>\r\nCall-ID: debug-sip-hil\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
        sip = gw.sip
    );
    udp.send_to(options.as_bytes(), gw.sip).unwrap();
    let t = read_until(&mut s, &format!("sip to   {me}\nSIP/2.0 "));
    assert!(t.contains(&format!("sip from {me}\nOPTIONS sip:")) && t.contains("Call-ID: debug-sip-hil"), "{t}");
    s.write_all(b"undebug sip\n").unwrap();
    read_until(&mut s, "SIP debugging stopped");
}

/// `test port N ring` rings linesim's phone without a call; lifting the
/// handset stops it (dial tone); a port in use is refused.
#[test]
fn test_port_ring_rings_the_phone_until_it_is_lifted() {
    let kamailio = Kamailio::start(free_udp_port(), PASSWORD).expect("kamailio starts");
    let gw = Gatewayd::start(kamailio.addr(), GwOptions { fxs_ports: 1, ..Default::default() });
    let sim = gw.attach();
    let phone = sim.phone(0);
    gw.wait_until("port 1 idle", Duration::from_secs(10), || gw.port_state(1) == "Idle");
    let out = gw.console(&["test port 1 ring 20", "test port 7 ring", "test port 1 ring 500"]);
    assert!(out[0].starts_with("ringing FXS 1 for 20 s"), "{out:?}");
    assert!(out[1].starts_with("error: no FXS port \"7\""), "{out:?}");
    assert!(out[2].starts_with("error: \"500\" is not a number of seconds"), "{out:?}");
    gw.wait_until("the phone rings", Duration::from_secs(5), || phone.is_ringing());
    assert!(gw.log().contains("test ring started"));
    phone.off_hook();
    gw.wait_until("dial tone", Duration::from_secs(5), || gw.port_state(1) == "DialTone");
    assert!(!phone.is_ringing());
    assert!(gw.log().lines().any(|l| l.contains("test ring ended") && l.contains("answered")), "{}", gw.log());
    let out = gw.console(&["test port 1 ring"]);
    assert!(out[0].starts_with("error: FXS 1 is in use (DialTone)"), "{out:?}");
}
