use super::*;
use gw_line::Match;
use proptest::prelude::*;
use serde::Deserialize;

/// The part of gatewayd's document this crate owns.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Doc {
    #[serde(default)]
    group: Vec<GroupConfig>,
    #[serde(default)]
    route: Vec<RouteConfig>,
}

const GROUPS: &str = r#"
[[group]]
name = "phones"
fxs = [1, 2, 3, 4]

[[group]]
name = "pstn"
fxo = [1, 2]
"#;

fn trunks() -> Vec<String> {
    vec!["carrier".to_string(), "backup".to_string()]
}

fn build(routes: &str) -> Result<(RouteTable, Vec<RouteWarning>), RouteError> {
    let doc: Doc = toml::from_str(&format!("{GROUPS}\n{routes}")).unwrap();
    RouteTable::new(&doc.group, &trunks(), &doc.route)
}

fn table(routes: &str) -> RouteTable {
    match build(routes) {
        Ok((t, _)) => t,
        Err(e) => panic!("{e}"),
    }
}

fn err(routes: &str) -> RouteError {
    build(routes).map(|_| ()).unwrap_err()
}

fn route(l: Lookup) -> RouteMatch {
    match l {
        Lookup::Route(m) => m,
        other => panic!("{other:?}"),
    }
}

fn causes(vs: &[u8]) -> CauseSet {
    vs.iter().map(|&v| Cause::new(v).unwrap()).collect()
}

/// The schema in the brief, apart from the comments and the second destination: the
/// brief's `{ trunk = "carrier" }` with `from = [.., "carrier"]` is a loop (a call
/// from the carrier to 1xxx would go straight back to it), and is refused.
const EXAMPLE: &str = r#"
[[route]]
name = "local"
from = ["phones", "carrier"]
called = ["1xxx"]
calling = ["2xxx"]
strip = 0
prefix = ""
calling_prefix = ""
presentation = "allowed"
max_calls = 4
emergency = false
to = [ { owner = true }, { trunk = "backup", failover_on = [34, 38, 41, 42, 47, 102], setup_timeout_ms = 3000 },
       { group = "phones", select = "round-robin" } ]
"#;

#[test]
fn the_documented_schema_loads() {
    let t = table(EXAMPLE);
    let m = route(t.lookup("carrier", "1001", Some("2001")));
    assert_eq!(m.rule, 0);
    assert_eq!(m.rule_name.as_deref(), Some("local"));
    assert_eq!(m.presentation, Some(Presentation::Allowed));
    assert_eq!(m.max_calls, Some(4));
    assert!(!m.emergency);
    assert_eq!(m.destinations.len(), 3);
    assert_eq!(m.destinations[0].target, Target::Owner);
    assert_eq!(m.destinations[1].target, Target::Trunk("backup".into()));
    assert_eq!(m.destinations[1].failover_on, causes(&[34, 38, 41, 42, 47, 102]));
    assert_eq!(m.destinations[1].setup_timeout, Duration::from_millis(3000));
    assert_eq!(m.destinations[2].target, Target::Group("phones".into()));
    assert_eq!(m.destinations[2].select, Select::RoundRobin);
}

#[test]
fn the_schema_refuses_unknown_fields_and_values() {
    let bad = |s: &str| toml::from_str::<Doc>(s).is_err();
    assert!(bad("[[route]]\nfrom=[\"phones\"]\ncalled=[\"1\"]\nto=[{owner=true}]\nstrp=1"));
    assert!(bad("[[route]]\nfrom=[\"phones\"]\ncalled=[\"1\"]\nto=[{owner=true, trunck=\"x\"}]"));
    assert!(bad("[[route]]\nfrom=[\"phones\"]\ncalled=[\"1\"]\nto=[{group=\"phones\", select=\"random\"}]"));
    assert!(bad("[[route]]\nfrom=[\"phones\"]\ncalled=[\"1\"]\nto=[{owner=true}]\npresentation=\"hidden\""));
    assert!(bad("[[group]]\nname=\"a\"\nfxs=[1]\nfxq=[2]"));
    assert!(!bad("[[group]]\nname=\"a\"\nfxs=[1]"));
}

#[test]
fn the_schema_round_trips_through_toml() {
    let doc: Doc = toml::from_str(EXAMPLE).unwrap();
    #[derive(serde::Serialize)]
    struct Out<'a> {
        route: &'a [RouteConfig],
    }
    let text = toml::to_string(&Out { route: &doc.route }).unwrap();
    let back: Doc = toml::from_str(&text).unwrap();
    assert_eq!(back.route, doc.route);
    assert!(!text.contains("strip"), "defaults are not written out:\n{text}");
}

#[test]
fn defaults_of_a_destination() {
    let t = table("[[route]]\nfrom = [\"phones\"]\ncalled = [\"9.\"]\nto = [{ trunk = \"carrier\" }]");
    let m = route(t.lookup("phones", "912", None));
    let d = &m.destinations[0];
    assert_eq!(d.failover_on, causes(&[34, 38, 41, 42, 47, 102, 3, 27]));
    assert!(!d.failover_on.contains(Cause::USER_BUSY));
    assert_eq!(d.setup_timeout, Duration::from_secs(3));
    assert_eq!(d.select, Select::First);
    assert_eq!(m.max_calls, None);
    assert_eq!(m.presentation, None);
}

#[test]
fn manipulation_of_both_numbers() {
    let t = table(
        r#"
[[route]]
from = ["phones"]
called = ["9."]
strip = 1
prefix = "0049"
calling_prefix = "4930"
presentation = "restricted"
to = [{ trunk = "carrier" }]

[[route]]
from = ["phones"]
called = ["exact:0"]
replace = "1001"
to = [{ owner = true }]

[[route]]
from = ["phones"]
called = ["prefix:00"]
strip = 5
to = [{ trunk = "backup" }]
"#,
    );
    let m = route(t.lookup("phones", "930123", Some("1002")));
    assert_eq!(m.called, "004930123");
    assert_eq!(m.calling.as_deref(), Some("49301002"));
    assert_eq!(m.presentation, Some(Presentation::Restricted));
    let m = route(t.lookup("phones", "930123", None));
    assert_eq!(m.calling, None, "no calling number stays none");
    let m = route(t.lookup("phones", "0", Some("1003")));
    assert_eq!((m.rule, m.called.as_str()), (1, "1001"));
    assert_eq!(m.calling.as_deref(), Some("1003"));
    let m = route(t.lookup("phones", "00", None));
    assert_eq!((m.rule, m.called.as_str()), (2, ""), "strip longer than the number leaves nothing");
}

#[test]
fn first_matching_rule_wins_and_sources_and_calling_filter() {
    let t = table(
        r#"
[[route]]
from = ["carrier"]
called = ["1xxx"]
calling = ["prefix:0049"]
to = [{ owner = true }]

[[route]]
from = ["carrier", "phones"]
called = ["1xxx"]
to = [{ group = "phones" }]

[[route]]
from = ["phones"]
called = ["x."]
to = [{ trunk = "carrier" }]
"#,
    );
    assert_eq!(route(t.lookup("carrier", "1001", Some("00491234"))).rule, 0);
    assert_eq!(route(t.lookup("carrier", "1001", Some("0033"))).rule, 1, "calling filter fails");
    assert_eq!(route(t.lookup("carrier", "1001", None)).rule, 1, "no calling number");
    assert_eq!(route(t.lookup("phones", "1001", None)).rule, 1);
    assert_eq!(route(t.lookup("phones", "55", None)).rule, 2);
    assert_eq!(t.lookup("carrier", "55", None), Lookup::NoRoute, "rule 2 is not from the carrier");
    assert_eq!(t.lookup("nobody", "1001", None), Lookup::NoRoute);
    assert_eq!(t.lookup("phones", "", None), Lookup::NeedMore);
    assert_eq!(t.lookup("phones", "1a01", None), Lookup::NoRoute);
    assert_eq!(t.lookup("carrier", "1001\u{0}", None), Lookup::NoRoute);
}

#[test]
fn need_more_while_a_rule_could_still_match() {
    let t = table(
        r#"
[[route]]
from = ["phones"]
called = ["1xxx", "exact:911"]
to = [{ owner = true }]

[[route]]
from = ["phones"]
called = ["prefix:00"]
to = [{ trunk = "carrier" }]
"#,
    );
    assert_eq!(t.lookup("phones", "1", None), Lookup::NeedMore);
    assert_eq!(t.lookup("phones", "100", None), Lookup::NeedMore);
    assert_eq!(t.lookup("phones", "9", None), Lookup::NeedMore);
    assert_eq!(t.lookup("phones", "91", None), Lookup::NeedMore);
    assert_eq!(t.lookup("phones", "0", None), Lookup::NeedMore);
    assert_eq!(route(t.lookup("phones", "00", None)).rule, 1, "a match is final even if more could come");
    assert_eq!(t.lookup("phones", "10000", None), Lookup::NoRoute);
    assert_eq!(t.lookup("phones", "2", None), Lookup::NoRoute);
    assert_eq!(t.lookup("carrier", "1", None), Lookup::NoRoute, "not a source of any rule");
}

#[test]
fn digit_map_is_compiled_from_the_sources_rules() {
    let t = table(
        r#"
[[route]]
from = ["phones"]
called = ["1xxx", "exact:911"]
to = [{ owner = true }]

[[route]]
from = ["phones"]
called = ["prefix:00"]
to = [{ trunk = "carrier" }]

[[route]]
from = ["carrier"]
called = ["5xx"]
to = [{ owner = true }]
"#,
    );
    let d = t.digit_map("phones").unwrap();
    assert_eq!(d.check("1"), Match::Partial);
    assert_eq!(d.check("1001"), Match::Complete);
    assert_eq!(d.check("911"), Match::Complete);
    assert_eq!(d.check("00"), Match::CompleteOrMore, "prefix: P itself, or more");
    assert_eq!(d.check("0049"), Match::CompleteOrMore);
    assert_eq!(d.check("500"), Match::NoMatch, "the carrier's rule is not the phones'");
    assert_eq!(t.digit_map("carrier").unwrap().check("500"), Match::Complete);
    assert!(t.digit_map("backup").is_none(), "no rule takes calls from the backup trunk");
    assert!(t.digit_map("nobody").is_none());
}

#[test]
fn emergency_rules_are_checked_first() {
    let (t, w) = build(
        r#"
[[route]]
from = ["phones"]
called = ["9."]
strip = 1
to = [{ trunk = "carrier" }]

[[route]]
name = "emergency"
emergency = true
from = ["phones"]
called = ["911", "exact:112"]
to = [{ group = "pstn" }, { trunk = "carrier" }]
"#,
    )
    .unwrap();
    assert!(w.is_empty(), "{w:?}");
    let m = route(t.lookup("phones", "911", None));
    assert_eq!((m.rule, m.emergency, m.called.as_str()), (1, true, "911"));
    assert_eq!(m.destinations[0].target, Target::Group("pstn".into()));
    assert_eq!(route(t.lookup("phones", "912", None)).rule, 0);
    assert_eq!(route(t.lookup("phones", "112", None)).rule, 1);
}

#[test]
fn emergency_without_pstn_is_a_warning() {
    let (_, w) = build(
        "[[route]]\nemergency = true\nfrom = [\"phones\"]\ncalled = [\"911\"]\nto = [{ trunk = \"carrier\" }, { group = \"phones\" }]",
    )
    .unwrap();
    assert_eq!(w, [RouteWarning::EmergencyWithoutPstn { rule: 0 }]);
    assert!(w[0].to_string().starts_with("route[0]: emergency rule without a PSTN"), "{}", w[0]);
}

#[test]
fn group_errors_name_the_group() {
    let mk = |g: &[(&str, &[usize])]| {
        let gs: Vec<GroupConfig> =
            g.iter().map(|(n, p)| GroupConfig { name: n.to_string(), fxs: p.to_vec(), fxo: vec![] }).collect();
        RouteTable::new(&gs, &trunks(), &[]).map(|_| ()).unwrap_err()
    };
    assert_eq!(mk(&[("a", &[1]), ("a", &[2])]), RouteError::DuplicateGroup { group: 1, name: "a".into() });
    assert_eq!(mk(&[("carrier", &[1])]), RouteError::GroupTrunkClash { group: 0, name: "carrier".into() });
    assert!(matches!(mk(&[("a", &[0])]), RouteError::BadGroup { group: 0, .. }));
    assert!(matches!(mk(&[("a", &[1]), ("b", &[2, 2])]), RouteError::BadGroup { group: 1, .. }));
    assert!(matches!(mk(&[(" ", &[1])]), RouteError::BadGroup { group: 0, .. }));
    assert_eq!(mk(&[("a", &[1]), ("a", &[2])]).to_string(), "group[1]: a group named \"a\" already exists");
}

/// One valid rule, then the broken one as route[1].
fn err1(rule: &str) -> RouteError {
    err(&format!("[[route]]\nfrom = [\"carrier\"]\ncalled = [\"1xxx\"]\nto = [{{ owner = true }}]\n\n[[route]]\n{rule}"))
}

#[test]
fn each_rule_error_names_its_index() {
    use RouteError::*;
    assert_eq!(err1("from = []\ncalled = [\"1\"]\nto = [{ owner = true }]"), NoSource { rule: 1 });
    assert_eq!(
        err1("from = [\"phones\", \"fax\"]\ncalled = [\"1\"]\nto = [{ owner = true }]"),
        UnknownSource { rule: 1, name: "fax".into() }
    );
    assert_eq!(err1("from = [\"phones\"]\ncalled = []\nto = [{ owner = true }]"), NoPattern { rule: 1 });
    assert!(matches!(
        err1("from = [\"phones\"]\ncalled = [\"1\", \"9.1\"]\nto = [{ owner = true }]"),
        BadPattern { rule: 1, field: "called", index: 1, .. }
    ));
    assert!(matches!(
        err1("from = [\"phones\"]\ncalled = [\"1\"]\ncalling = [\"exact:\"]\nto = [{ owner = true }]"),
        BadPattern { rule: 1, field: "calling", index: 0, .. }
    ));
    assert!(matches!(
        err1("from = [\"phones\"]\ncalled = [\"9.\"]\nprefix = \"+49\"\nto = [{ owner = true }]"),
        BadNumber { rule: 1, field: "prefix", .. }
    ));
    assert!(matches!(
        err1("from = [\"phones\"]\ncalled = [\"9.\"]\nreplace = \"\"\nto = [{ owner = true }]"),
        BadNumber { rule: 1, field: "replace", .. }
    ));
    assert!(matches!(
        err1("from = [\"phones\"]\ncalled = [\"9.\"]\ncalling_prefix = \"4 9\"\nto = [{ owner = true }]"),
        BadNumber { rule: 1, field: "calling_prefix", .. }
    ));
    assert_eq!(
        err1("from = [\"phones\"]\ncalled = [\"9.\"]\nreplace = \"1\"\nstrip = 1\nto = [{ owner = true }]"),
        ReplaceWithStrip { rule: 1 }
    );
    assert_eq!(
        err1("from = [\"phones\"]\ncalled = [\"9.\"]\nreplace = \"1\"\nprefix = \"0\"\nto = [{ owner = true }]"),
        ReplaceWithStrip { rule: 1 }
    );
    assert_eq!(err1("from = [\"phones\"]\ncalled = [\"9.\"]\nmax_calls = 0\nto = [{ owner = true }]"), BadLimit { rule: 1 });
    assert_eq!(err1("from = [\"phones\"]\ncalled = [\"9.\"]\nto = []"), NoDestination { rule: 1 });
    let bad_dest = |d: &str| err1(&format!("from = [\"phones\"]\ncalled = [\"9.\"]\nto = [{{ owner = true }}, {d}]"));
    assert!(matches!(bad_dest("{}"), BadDestination { rule: 1, dest: 1, .. }));
    assert!(matches!(bad_dest("{ owner = true, trunk = \"carrier\" }"), BadDestination { rule: 1, dest: 1, .. }));
    assert!(matches!(bad_dest("{ trunk = \"carrier\", group = \"pstn\" }"), BadDestination { rule: 1, dest: 1, .. }));
    assert!(matches!(bad_dest("{ trunk = \"carrier\", select = \"first\" }"), BadDestination { rule: 1, dest: 1, .. }));
    assert!(matches!(bad_dest("{ trunk = \"carrier\", failover_on = [34, 0] }"), BadDestination { rule: 1, dest: 1, .. }));
    assert!(matches!(bad_dest("{ trunk = \"carrier\", failover_on = [300] }"), BadDestination { rule: 1, dest: 1, .. }));
    assert!(matches!(bad_dest("{ trunk = \"carrier\", setup_timeout_ms = 10 }"), BadDestination { rule: 1, dest: 1, .. }));
    assert_eq!(bad_dest("{ trunk = \"carrierx\" }"), UnknownDestination { rule: 1, dest: 1, name: "carrierx".into() });
    assert_eq!(bad_dest("{ group = \"sales\" }"), UnknownDestination { rule: 1, dest: 1, name: "sales".into() });

    let e = bad_dest("{ trunk = \"carrier\", setup_timeout_ms = 10 }");
    assert_eq!(e.to_string(), "route[1].to[1]: setup_timeout_ms: 10 is outside 100..=300000");
    let e = err1("from = [\"phones\"]\ncalled = [\"1\", \"9.1\"]\nto = [{ owner = true }]");
    assert!(e.to_string().starts_with("route[1].called[1]: \"9.1\": at 1: '.' must be last"), "{e}");
}

#[test]
fn loops_through_a_trunk_or_the_pstn_are_refused() {
    use RouteError::Loop;
    // Straight back out of the trunk it came from, number unchanged.
    assert_eq!(err1("from = [\"carrier\", \"phones\"]\ncalled = [\"x.\"]\nto = [{ trunk = \"backup\" }, { trunk = \"carrier\" }]"), Loop { rule: 1, dest: 1 });
    // Strip 1, prefix 9: 9123 goes out as 9123 again.
    assert_eq!(err1("from = [\"pstn\"]\ncalled = [\"9xxx\"]\nstrip = 1\nprefix = \"9\"\nto = [{ group = \"pstn\" }]"), Loop { rule: 1, dest: 0 });
    // Replace with a number the rule matches.
    assert_eq!(err1("from = [\"backup\"]\ncalled = [\"5xx\"]\nreplace = \"555\"\nto = [{ trunk = \"backup\" }]"), Loop { rule: 1, dest: 0 });
    // The calling filter still matches after the calling prefix.
    assert_eq!(
        err1("from = [\"backup\"]\ncalled = [\"5xx\"]\ncalling = [\"x.\"]\ncalling_prefix = \"0\"\nto = [{ trunk = \"backup\" }]"),
        Loop { rule: 1, dest: 0 }
    );
    assert!(err1("from = [\"backup\"]\ncalled = [\"5xx\"]\nto = [{ trunk = \"backup\" }]").to_string().contains("loop"));
}

#[test]
fn no_loop_when_the_number_changes_out_of_the_rule_or_ends_at_a_phone() {
    // Strip the access code: 9123 leaves as 123, which this rule (9xxx) does not take.
    build("[[route]]\nfrom = [\"pstn\"]\ncalled = [\"9xxx\"]\nstrip = 1\nto = [{ group = \"pstn\" }]").unwrap();
    // The calling prefix makes the calling number fail the rule's calling filter.
    build("[[route]]\nfrom = [\"backup\"]\ncalled = [\"5xx\"]\ncalling = [\"1xxx\"]\ncalling_prefix = \"0\"\nto = [{ trunk = \"backup\" }]").unwrap();
    // Local calls: owner and FXS groups end at a phone.
    build("[[route]]\nfrom = [\"phones\", \"carrier\"]\ncalled = [\"1xxx\"]\nto = [{ owner = true }, { group = \"phones\" }]").unwrap();
    // A destination trunk that is not a source.
    build("[[route]]\nfrom = [\"phones\"]\ncalled = [\"x.\"]\nto = [{ trunk = \"carrier\" }]").unwrap();
}

#[test]
fn shadowed_rules_are_refused_when_provable() {
    use RouteError::Shadowed;
    assert_eq!(
        err("[[route]]\nfrom = [\"phones\", \"carrier\"]\ncalled = [\"1x.\"]\nto = [{ owner = true }]\n\n[[route]]\nfrom = [\"phones\"]\ncalled = [\"1xxx\", \"exact:155\"]\nto = [{ trunk = \"carrier\" }]"),
        Shadowed { rule: 1, by: 0 }
    );
    // Covered by the union of an earlier rule's patterns.
    assert_eq!(
        err("[[route]]\nfrom = [\"phones\"]\ncalled = [\"1[0-4]\", \"1[5-9]\"]\nto = [{ owner = true }]\n\n[[route]]\nfrom = [\"phones\"]\ncalled = [\"1x\"]\nto = [{ trunk = \"carrier\" }]"),
        Shadowed { rule: 1, by: 0 }
    );
    // An emergency rule later in the file is evaluated first and shadows an earlier one.
    assert_eq!(
        err("[[route]]\nfrom = [\"phones\"]\ncalled = [\"exact:911\"]\nto = [{ trunk = \"carrier\" }]\n\n[[route]]\nemergency = true\nfrom = [\"phones\"]\ncalled = [\"911\"]\nto = [{ group = \"pstn\" }]"),
        Shadowed { rule: 0, by: 1 }
    );
    let e = err("[[route]]\nfrom = [\"phones\"]\ncalled = [\"x.\"]\nto = [{ trunk = \"carrier\" }]\n\n[[route]]\nfrom = [\"phones\"]\ncalled = [\"1xxx\"]\nto = [{ owner = true }]");
    assert_eq!(e.to_string(), "route[1]: never used: every call it could take matches route[0] first");
}

#[test]
fn partial_overlap_is_not_shadowing() {
    // More sources than the earlier rule.
    build("[[route]]\nfrom = [\"phones\"]\ncalled = [\"x.\"]\nto = [{ trunk = \"carrier\" }]\n\n[[route]]\nfrom = [\"phones\", \"carrier\"]\ncalled = [\"1xxx\"]\nto = [{ owner = true }]").unwrap();
    // Patterns only partly covered.
    build("[[route]]\nfrom = [\"phones\"]\ncalled = [\"1[0-4]\"]\nto = [{ owner = true }]\n\n[[route]]\nfrom = [\"phones\"]\ncalled = [\"1x\"]\nto = [{ trunk = \"carrier\" }]").unwrap();
    // prefix:9 matches "9" alone, 9. does not.
    build("[[route]]\nfrom = [\"phones\"]\ncalled = [\"9.\"]\nto = [{ trunk = \"carrier\" }]\n\n[[route]]\nfrom = [\"phones\"]\ncalled = [\"prefix:9\"]\nto = [{ trunk = \"backup\" }]").unwrap();
    // The earlier rule filters on the calling number.
    build("[[route]]\nfrom = [\"phones\"]\ncalled = [\"x.\"]\ncalling = [\"1001\"]\nto = [{ trunk = \"carrier\" }]\n\n[[route]]\nfrom = [\"phones\"]\ncalled = [\"x.\"]\nto = [{ trunk = \"backup\" }]").unwrap();
    // Both filter on calling numbers, the later one on numbers the earlier one does not take.
    build("[[route]]\nfrom = [\"phones\"]\ncalled = [\"x.\"]\ncalling = [\"100x\"]\nto = [{ trunk = \"carrier\" }]\n\n[[route]]\nfrom = [\"phones\"]\ncalled = [\"x.\"]\ncalling = [\"10xx\"]\nto = [{ trunk = \"backup\" }]").unwrap();
}

#[test]
fn calling_filters_can_shadow_too() {
    assert_eq!(
        err("[[route]]\nfrom = [\"phones\"]\ncalled = [\"x.\"]\ncalling = [\"10xx\"]\nto = [{ trunk = \"carrier\" }]\n\n[[route]]\nfrom = [\"phones\"]\ncalled = [\"9.\"]\ncalling = [\"100x\"]\nto = [{ trunk = \"backup\" }]"),
        RouteError::Shadowed { rule: 1, by: 0 }
    );
}

#[test]
fn trace_explains_each_rule() {
    let t = table(
        r#"
[[route]]
name = "local"
from = ["phones", "carrier"]
called = ["1xxx"]
to = [{ owner = true }]

[[route]]
name = "out"
from = ["phones"]
called = ["9."]
calling = ["1xxx"]
strip = 1
max_calls = 2
to = [{ trunk = "carrier", setup_timeout_ms = 2000 }, { group = "pstn" }]

[[route]]
from = ["carrier"]
called = ["x."]
to = [{ group = "phones", select = "round-robin" }]

[[route]]
name = "sos"
emergency = true
from = ["phones"]
called = ["911"]
to = [{ group = "pstn" }]
"#,
    );
    let tr = t.trace("phones", "95551234", Some("1001"));
    let text = tr.to_string();
    let expected = r#"route from "phones" called "95551234" calling "1001"
  route[3] "sos" (emergency): called "95551234" does not match 911
  route[0] "local": called "95551234" does not match 1xxx
  route[1] "out": MATCH (called pattern 9.)
  route[2]: not reached
result: route[1] "out"
  called "95551234" -> "5551234"
  calling "1001" -> "1001"
  max calls: 2
  1. trunk "carrier", failover on 3, 27, 34, 38, 41, 42, 47, 102, setup timeout 2000 ms
  2. group "pstn" (first), failover on 3, 27, 34, 38, 41, 42, 47, 102, setup timeout 3000 ms"#;
    assert_eq!(text, expected, "\n{text}");
    assert_eq!(tr.result, t.lookup("phones", "95551234", Some("1001")));

    let text = t.trace("phones", "9", Some("1001")).to_string();
    assert!(text.contains("route[3] \"sos\" (emergency): called \"9\" needs more digits for 911"), "{text}");
    assert!(text.contains("route[2]: not from \"phones\""), "{text}");
    assert!(text.ends_with("result: need more digits"), "{text}");

    let text = t.trace("phones", "95", Some("2001")).to_string();
    assert!(text.contains("route[1] \"out\": calling \"2001\" does not match 1xxx"), "{text}");
    assert!(text.ends_with("result: no route (cause 3)"), "{text}");

    let text = t.trace("phones", "95", None).to_string();
    assert!(text.contains("route[1] \"out\": needs a calling number matching 1xxx"), "{text}");

    let text = t.trace("fax", "1001", None).to_string();
    assert!(text.contains("\"fax\" is neither a group nor a trunk"), "{text}");
}

#[test]
fn the_briefs_example_as_written_is_a_loop() {
    let looped = EXAMPLE.replace("{ trunk = \"backup\"", "{ trunk = \"carrier\"");
    assert_eq!(err(&looped), RouteError::Loop { rule: 0, dest: 1 });
}

#[test]
fn large_tables_validate_and_shadowing_is_found_among_them() {
    let groups = vec![GroupConfig { name: "phones".into(), fxs: (1..=24).collect(), fxo: vec![] }];
    let rule = |called: Vec<String>| RouteConfig {
        from: vec!["phones".into(), "carrier".into()],
        called,
        to: vec![DestinationConfig { owner: true, ..Default::default() }],
        ..Default::default()
    };
    let mut routes: Vec<RouteConfig> = (0..200).map(|n| rule(vec![format!("exact:{}", 10_000 + n)])).collect();
    routes.push(rule(vec!["x.".into()]));
    let (t, _) = RouteTable::new(&groups, &trunks(), &routes).unwrap();
    assert_eq!(route(t.lookup("carrier", "10199", None)).rule, 199);
    assert_eq!(route(t.lookup("carrier", "10200", None)).rule, 200);
    routes.swap(0, 200);
    let e = RouteTable::new(&groups, &trunks(), &routes).map(|_| ()).unwrap_err();
    assert_eq!(e, RouteError::Shadowed { rule: 1, by: 0 });
}

#[test]
fn groups_and_sources() {
    let t = table(EXAMPLE);
    assert_eq!(t.fxs_source(3), Some("phones"));
    assert_eq!(t.fxs_source(5), None);
    assert_eq!(t.group("pstn").unwrap().fxo, [1, 2]);
    assert!(t.is_source("carrier") && t.is_source("phones") && !t.is_source("x"));
    assert_eq!(t.len(), 1);
}

proptest! {
    #[test]
    fn lookup_and_trace_never_panic(from in "\\PC{0,8}", called in "\\PC{0,12}", calling in proptest::option::of("\\PC{0,8}")) {
        let t = table(EXAMPLE);
        let _ = t.lookup(&from, &called, calling.as_deref());
        let _ = t.trace(&from, &called, calling.as_deref()).to_string();
        let _ = t.lookup("phones", &called, calling.as_deref());
    }

    #[test]
    fn new_never_panics_on_arbitrary_strings(
        names in proptest::collection::vec("\\PC{0,6}", 0..4),
        pats in proptest::collection::vec("[0-9xzn.\\[\\]\\-*#:a-z]{0,8}", 0..4),
        nums in proptest::collection::vec("\\PC{0,4}", 3),
        strip in 0usize..12,
        pick in proptest::collection::vec(0usize..8, 0..6),
    ) {
        let pool: Vec<String> = names.iter().cloned().chain(["phones".into(), "carrier".into(), "pstn".into()]).collect();
        let name = |i: usize| pool[i % pool.len()].clone();
        let groups = vec![
            GroupConfig { name: "phones".into(), fxs: vec![1, 2], fxo: vec![] },
            GroupConfig { name: "pstn".into(), fxs: vec![], fxo: vec![1] },
            GroupConfig { name: name(0), fxs: vec![3], fxo: vec![] },
        ];
        let routes: Vec<RouteConfig> = pick.iter().map(|&k| RouteConfig {
            name: Some(name(k)),
            from: vec![name(k), name(k + 1)],
            called: pats.clone(),
            calling: pats.iter().take(k % 2).cloned().collect(),
            strip,
            prefix: nums[0].clone(),
            replace: (k % 3 == 0).then(|| nums[1].clone()),
            calling_prefix: nums[2].clone(),
            emergency: k % 4 == 0,
            to: vec![
                DestinationConfig { trunk: Some(name(k + 2)), ..Default::default() },
                DestinationConfig { group: Some(name(k + 3)), failover_on: Some(vec![k as u16 * 40]), ..Default::default() },
            ],
            ..Default::default()
        }).collect();
        if let Ok((t, _)) = RouteTable::new(&groups, &["carrier".into(), name(1)], &routes) {
            for n in &nums {
                let _ = t.lookup("phones", n, Some(n));
                let _ = t.trace("carrier", n, None).to_string();
            }
            let _ = t.digit_map("phones");
        }
    }

    /// Without calling filters, the digit map and the lookup agree on every number,
    /// and a refused table's shadowing claim holds on every number tried.
    #[test]
    fn digit_map_lookup_and_shadowing_agree(
        rules in proptest::collection::vec(
            proptest::collection::vec(
                prop_oneof!["[12x]{1,4}\\.?", "exact:[12]{1,4}", "prefix:[12]{1,3}"],
                1..3,
            ),
            1..5,
        ),
    ) {
        let groups = vec![GroupConfig { name: "phones".into(), fxs: vec![1], fxo: vec![] }];
        let routes: Vec<RouteConfig> = rules.iter().map(|called| RouteConfig {
            from: vec!["phones".into()],
            called: called.clone(),
            to: vec![DestinationConfig { trunk: Some("carrier".into()), ..Default::default() }],
            ..Default::default()
        }).collect();
        let mut numbers = vec![String::new()];
        for len in 1..=5 {
            let mut n = vec![0u8; len];
            loop {
                numbers.push(n.iter().map(|&d| char::from(b'1' + d)).collect());
                let Some(i) = n.iter().rposition(|&d| d < 2) else { break };
                n[i] += 1;
                n[i + 1..].iter_mut().for_each(|d| *d = 0);
            }
        }
        let full = |pats: &[String], d: &str| pats.iter().any(|p| NumberPattern::parse(p).unwrap().check(d) == PatMatch::Full);
        match RouteTable::new(&groups, &["carrier".into()], &routes) {
            Ok((t, _)) => {
                let map = t.digit_map("phones").unwrap();
                for d in &numbers {
                    let expected = match map.check(d) {
                        Match::Complete | Match::CompleteOrMore => "route",
                        Match::Partial => "more",
                        Match::NoMatch => "none",
                    };
                    let got = match t.lookup("phones", d, None) {
                        Lookup::Route(m) => {
                            prop_assert!(full(&rules[m.rule], d));
                            prop_assert!((0..m.rule).all(|i| !full(&rules[i], d)), "an earlier rule matches {}", d);
                            "route"
                        }
                        Lookup::NeedMore => "more",
                        Lookup::NoRoute => "none",
                    };
                    prop_assert_eq!(got, expected, "{}", d);
                }
            }
            Err(RouteError::Shadowed { rule, by }) => {
                for d in &numbers {
                    if full(&rules[rule], d) {
                        prop_assert!(full(&rules[by], d), "route[{}] does not take {}", by, d);
                    }
                }
            }
            Err(e) => prop_assert!(false, "{}", e),
        }
    }
}
