//! Proves the harness against the real peers, without gatewayd: Kamailio's
//! authentication and routing, the far end's answering, dialling,
//! cancelling and recording, with SIPp on the other side.
//!
//! Each test starts its own Kamailio on its own port, so they run in
//! parallel. Run: `cargo test -p hil --test peers` (tools/test runs it inside
//! `unshare -n`).

use std::path::Path;
use std::thread;
use std::time::Duration;

use hil::*;

const PASSWORD: &str = "s3cret-hil";
const T: Duration = Duration::from_secs(15);

/// Writes a tone WAV into `dir` and returns its path.
fn tone_file(dir: &Path, name: &str, freq: f32) -> std::path::PathBuf {
    let p = dir.join(name);
    tone_wav(&p, freq, -6.0, 2.0).unwrap();
    p
}

/// Runs `f`; on failure prints the peers' logs before re-panicking.
fn with_logs<R>(kamailio: &Kamailio, far: Option<&FarEnd>, f: impl FnOnce() -> R) -> R {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("--- kamailio log ---\n{}", kamailio.log());
            if let Some(far) = far {
                eprintln!("--- baresip log ---\n{}\n--- events ---\n{:#?}", far.log(), far.events());
            }
            std::panic::resume_unwind(e)
        }
    }
}

#[test]
fn kamailio_accepts_the_right_password_and_forbids_a_wrong_one() {
    let k = Kamailio::start(free_udp_port(), PASSWORD).unwrap();
    with_logs(&k, None, || {
        let p = free_udp_port();
        let ok = sipp_register(k.addr(), "3000", PASSWORD, p, p).unwrap();
        assert!(ok.success(), "{}\n{}", ok.messages, ok.log);
        assert_eq!(ok.received_statuses(), [401, 200], "{}", ok.messages);

        let p = free_udp_port();
        let bad = sipp_register(k.addr(), "3000", "wrong", p, p).unwrap();
        assert!(!bad.success(), "{}", bad.messages);
        assert_eq!(bad.received_statuses().first(), Some(&401));
        assert!(bad.received_statuses().contains(&403), "{}", bad.messages);
        assert!(k.log().contains("AUTH REGISTER 3000: wrong password"));
    });
}

#[test]
fn kamailio_rejects_bad_start_arguments_and_a_taken_port() {
    assert_eq!(Kamailio::start(free_udp_port(), "").err().unwrap().kind(), std::io::ErrorKind::InvalidInput);
    assert_eq!(
        Kamailio::start(free_udp_port(), "a\"b").err().unwrap().kind(),
        std::io::ErrorKind::InvalidInput
    );
    let k = Kamailio::start(free_udp_port(), PASSWORD).unwrap();
    let second = Kamailio::start(k.addr().port(), PASSWORD);
    assert!(second.is_err(), "a second kamailio bound the same port");
}

#[test]
fn sipp_call_to_the_far_end_is_answered_and_its_audio_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let k = Kamailio::start(free_udp_port(), PASSWORD).unwrap();
    let far = FarEnd::start(k.addr(), "2000", PASSWORD, &tone_file(dir.path(), "far.wav", 697.0)).unwrap();
    with_logs(&k, Some(&far), || {
        far.wait_registered(T).unwrap();

        // SIPp (as user 1001) calls 2000 and streams 3 s of 1004 Hz.
        let ulaw = dir.path().join("audio.ul");
        write_ulaw(&ulaw, &tone(1004.0, -10.0, 3.0).unwrap()).unwrap();
        let (rtp, _) = free_udp_port_range(4);
        let args = [
            "-m", "1", "-i", "127.0.0.1", "-p", &free_udp_port().to_string(), "-mp", &rtp.to_string(), "-s",
            "2000", "-au", "1001", "-ap", PASSWORD, "-key", "caller", "1001", "-d", "3000",
            &k.addr().to_string(),
        ];
        let call = Sipp::spawn(&sipp_scenario("uac_call.xml"), &args, &[("audio.ul", &ulaw)]).unwrap();
        far.wait_incoming_answered(T).unwrap();
        let reason = far.wait_call_closed(T).unwrap();
        let outcome = call.wait(T);
        assert!(outcome.success(), "{}\n{}", outcome.messages, outcome.log);
        // Proxy authentication happened on the way.
        assert_eq!(outcome.received_statuses().first(), Some(&407));
        assert_eq!(reason, "Connection reset by peer", "closed by the caller's BYE");

        let rec = far.recording().unwrap();
        assert!(rec.len() >= 2 * 8000, "only {} samples recorded", rec.len());
        let f = dominant_frequency(&rec);
        assert!((f - 1004.0).abs() < 1.0, "far end heard {f} Hz");
        let level = level_dbm0(&rec);
        assert!((level + 10.0).abs() < 2.0, "far end heard {level} dBm0, sent -10");
    });
}

#[test]
fn recording_is_of_the_last_call_only() {
    let dir = tempfile::tempdir().unwrap();
    let k = Kamailio::start(free_udp_port(), PASSWORD).unwrap();
    let far = FarEnd::start(k.addr(), "2000", PASSWORD, &tone_file(dir.path(), "far.wav", 697.0)).unwrap();
    with_logs(&k, Some(&far), || {
        far.wait_registered(T).unwrap();
        assert_eq!(far.recording().unwrap_err().kind(), std::io::ErrorKind::NotFound);
        for freq in [1004.0f32, 1633.0] {
            let ulaw = dir.path().join("audio.ul");
            write_ulaw(&ulaw, &tone(freq, -10.0, 2.0).unwrap()).unwrap();
            let (rtp, _) = free_udp_port_range(4);
            let args = [
                "-m", "1", "-i", "127.0.0.1", "-p", &free_udp_port().to_string(), "-mp", &rtp.to_string(), "-s",
                "2000", "-au", "1001", "-ap", PASSWORD, "-key", "caller", "1001", "-d", "1500",
                &k.addr().to_string(),
            ];
            let call = Sipp::spawn(&sipp_scenario("uac_call.xml"), &args, &[("audio.ul", &ulaw)]).unwrap();
            far.wait_incoming_answered(T).unwrap();
            far.wait_call_closed(T).unwrap();
            let outcome = call.wait(T);
            assert!(outcome.success(), "{}\n{}", outcome.messages, outcome.log);
            let f = dominant_frequency(&far.recording().unwrap());
            assert!((f - freq).abs() < 1.0, "call with {freq} Hz recorded as {f} Hz");
        }
    });
}

#[test]
fn far_end_dials_a_sipp_uas_and_hears_its_own_tone_echoed() {
    let dir = tempfile::tempdir().unwrap();
    let k = Kamailio::start(free_udp_port(), PASSWORD).unwrap();
    let far = FarEnd::start(k.addr(), "2000", PASSWORD, &tone_file(dir.path(), "far.wav", 697.0)).unwrap();
    with_logs(&k, Some(&far), || {
        let uas_port = free_udp_port();
        let (rtp, _) = free_udp_port_range(4);
        let uas = Sipp::spawn(
            &sipp_scenario("uas.xml"),
            &["-m", "1", "-i", "127.0.0.1", "-p", &uas_port.to_string(), "-mp", &rtp.to_string(), "-rtp_echo"],
            &[],
        )
        .unwrap();
        let reg = sipp_register(k.addr(), "3000", PASSWORD, free_udp_port(), uas_port).unwrap();
        assert!(reg.success(), "{}", reg.messages);
        far.wait_registered(T).unwrap();

        far.dial("3000").unwrap();
        far.wait_ringing(T).unwrap();
        far.wait_established(T).unwrap();
        thread::sleep(Duration::from_secs(2));
        far.hangup().unwrap();
        let reason = far.wait_call_closed(T).unwrap();
        assert_eq!(reason, "Connection reset by user");
        let outcome = uas.wait(T);
        assert!(outcome.success(), "{}\n{}", outcome.messages, outcome.log);
        assert!(outcome.messages.contains("BYE sip:"), "no BYE reached the UAS");

        let rec = far.recording().unwrap();
        assert!(rec.len() >= 8000, "only {} samples recorded", rec.len());
        let f = dominant_frequency(&rec);
        assert!((f - 697.0).abs() < 1.0, "far end heard {f} Hz back");
    });
}

#[test]
fn far_end_cancels_a_ringing_call() {
    let dir = tempfile::tempdir().unwrap();
    let k = Kamailio::start(free_udp_port(), PASSWORD).unwrap();
    let far = FarEnd::start(k.addr(), "2000", PASSWORD, &tone_file(dir.path(), "far.wav", 697.0)).unwrap();
    with_logs(&k, Some(&far), || {
        let uas_port = free_udp_port();
        let uas = Sipp::spawn(
            &sipp_scenario("uas_ring.xml"),
            &["-m", "1", "-i", "127.0.0.1", "-p", &uas_port.to_string()],
            &[],
        )
        .unwrap();
        let reg = sipp_register(k.addr(), "3001", PASSWORD, free_udp_port(), uas_port).unwrap();
        assert!(reg.success(), "{}", reg.messages);
        far.wait_registered(T).unwrap();

        far.dial("3001").unwrap();
        far.wait_ringing(T).unwrap();
        far.hangup().unwrap();
        far.wait_call_closed(T).unwrap();
        let outcome = uas.wait(T);
        assert!(outcome.success(), "{}\n{}", outcome.messages, outcome.log);
        assert!(outcome.messages.contains("CANCEL sip:"), "no CANCEL reached the UAS");
    });
}

#[test]
fn far_end_call_to_an_unregistered_number_gets_404() {
    let dir = tempfile::tempdir().unwrap();
    let k = Kamailio::start(free_udp_port(), PASSWORD).unwrap();
    let far = FarEnd::start(k.addr(), "2000", PASSWORD, &tone_file(dir.path(), "far.wav", 697.0)).unwrap();
    with_logs(&k, Some(&far), || {
        far.wait_registered(T).unwrap();
        far.dial("9999").unwrap();
        let reason = far.wait_call_closed(T).unwrap();
        assert!(reason.starts_with("404"), "{reason}");
        assert!(k.log().contains("LOOKUP 9999: not registered"));
    });
}

#[test]
fn far_end_with_a_wrong_password_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let k = Kamailio::start(free_udp_port(), PASSWORD).unwrap();
    let far = FarEnd::start(k.addr(), "2000", "not-it", &tone_file(dir.path(), "far.wav", 697.0)).unwrap();
    let e = far.wait_registered(T).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::PermissionDenied, "{e}");
}

#[test]
fn far_end_with_auto_answer_off_lets_the_call_ring() {
    let dir = tempfile::tempdir().unwrap();
    let k = Kamailio::start(free_udp_port(), PASSWORD).unwrap();
    let far = FarEnd::start(k.addr(), "2000", PASSWORD, &tone_file(dir.path(), "far.wav", 697.0)).unwrap();
    with_logs(&k, Some(&far), || {
        far.wait_registered(T).unwrap();
        far.set_auto_answer(false);
        let ulaw = dir.path().join("audio.ul");
        write_ulaw(&ulaw, &tone(1004.0, -10.0, 1.0).unwrap()).unwrap();
        let (rtp, _) = free_udp_port_range(4);
        let args = [
            "-m", "1", "-i", "127.0.0.1", "-p", &free_udp_port().to_string(), "-mp", &rtp.to_string(), "-s",
            "2000", "-au", "1001", "-ap", PASSWORD, "-key", "caller", "1001", "-d", "1000", "-timeout", "4s",
            &k.addr().to_string(),
        ];
        let call = Sipp::spawn(&sipp_scenario("uac_call.xml"), &args, &[("audio.ul", &ulaw)]).unwrap();
        let outcome = call.wait(T);
        assert!(!outcome.success(), "answered with auto-answer off:\n{}", outcome.messages);
        assert!(outcome.received_statuses().contains(&180), "{}", outcome.messages);
        assert!(!outcome.received_statuses().contains(&200), "{}", outcome.messages);
        assert!(far.events().iter().any(|e| e.kind == "CALL_INCOMING"));
        assert!(!far.events().iter().any(|e| e.kind == "CALL_ESTABLISHED"));
    });
}

#[test]
fn tone_helpers_round_trip_through_a_wav_file() {
    let dir = tempfile::tempdir().unwrap();
    let p = tone_file(dir.path(), "t.wav", 1004.0);
    let wav = read_wav(&p).unwrap();
    assert_eq!(wav.rate, 8000);
    assert!((dominant_frequency(&wav.samples) - 1004.0).abs() < 1.0);
    assert!((level_dbm0(&wav.samples) + 6.0).abs() < 0.1);
}
