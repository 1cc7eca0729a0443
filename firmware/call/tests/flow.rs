//! The pieces together, as gatewayd's switch uses them: a phone dials out, the first
//! trunk is down, the backup answers 503 with a Reason header, the PSTN group rings.

use std::time::{Duration, Instant};

use gw_call::{
    reason, Cause, CauseMap, GroupConfig, Hunt, LocalReason, Limits, Location, Lookup, Release, RouteConfig, RouteTable,
    Routing, Select, Step, Target, TargetState,
};

const DOC: &str = r#"
[[group]]
name = "phones"
fxs = [1, 2]

[[group]]
name = "pstn"
fxo = [1, 2]

[[route]]
name = "out"
from = ["phones"]
called = ["9."]
strip = 1
max_calls = 1
to = [{ trunk = "carrier" }, { trunk = "backup", setup_timeout_ms = 1000 }, { group = "pstn", select = "round-robin" }]
"#;

#[derive(serde::Deserialize)]
struct Doc {
    group: Vec<GroupConfig>,
    route: Vec<RouteConfig>,
}

#[test]
fn dial_out_with_a_dead_trunk_a_refusing_backup_and_the_pstn() {
    let doc: Doc = toml::from_str(DOC).unwrap();
    let (table, warnings) = RouteTable::new(&doc.group, &["carrier".into(), "backup".into()], &doc.route).unwrap();
    assert!(warnings.is_empty());

    // The phone on port 2 collects against the table.
    let from = table.fxs_source(2).unwrap();
    let map = table.digit_map(from).unwrap();
    assert_eq!(map.check("9"), gw_line::Match::Partial);
    let Lookup::Route(m) = table.lookup(from, "95551234", Some("1002")) else { panic!() };
    assert_eq!(m.called, "5551234");

    let mut limits = Limits::new();
    let t0 = Instant::now();
    assert!(limits.admit(t0, from, 30));
    assert!(limits.try_acquire(m.rule, m.max_calls));
    assert!(!limits.try_acquire(m.rule, m.max_calls), "max_calls = 1");

    let health = |t: &Target| match t {
        Target::Trunk(n) if n == "carrier" => TargetState::Down,
        _ => TargetState::Unknown,
    };
    let mut routing = Routing::new(&m);
    let Step::Try { dest_index: 1, target, deadline } = routing.next_attempt(t0, &health) else { panic!() };
    assert_eq!(target, Target::Trunk("backup".into()));
    assert_eq!(deadline, t0 + Duration::from_secs(1));

    // The backup answers 503 with a Q.850 reason: the reason wins (34, not 41).
    let map = CauseMap::default();
    let cause = map.cause_for(503, reason::parse("Q.850;cause=34;text=\"No circuit/channel available\""));
    assert_eq!(cause, Cause::NO_CIRCUIT_AVAILABLE);
    let t1 = t0 + Duration::from_millis(300);
    let step = routing.attempt_failed(t1, Release::remote(cause, Location::BeyondInterworking), &health);
    let Step::Try { dest_index: 2, target: Target::Group(g), .. } = step else { panic!("{step:?}") };

    // Which FXO port of the group.
    let mut hunt = Hunt::new();
    let ports = &table.group(&g).unwrap().fxo;
    assert_eq!(hunt.pick(&g, ports, Select::RoundRobin, &|p| p != 1), Some(2));

    // Nobody answers in time on the PSTN either: 102, and no destination is left.
    let Some(Step::GiveUp(r)) = routing.handle_timeout(routing.poll_timeout().unwrap(), &health) else { panic!() };
    assert_eq!(r, Release::local(LocalReason::SetupTimeout));
    let shown: Vec<String> = routing.attempts().iter().map(|a| format!("{}: {}", a.target, a.result.unwrap())).collect();
    assert_eq!(
        shown,
        [
            "trunk \"carrier\": 38 network out of order (trunk down)",
            "trunk \"backup\": 34 no circuit/channel available",
            "group \"pstn\": 102 recovery on timer expiry (setup timeout)",
        ]
    );
    // Towards a SIP caller this would be 504 with the cause in a Reason header.
    assert_eq!(map.status_for(r.cause), Some(504));
    assert_eq!(reason::format_reason(r.cause), "Q.850;cause=102;text=\"Recovery on timer expiry\"");
    limits.release(m.rule);
    assert_eq!(limits.active(m.rule), 0);
}
