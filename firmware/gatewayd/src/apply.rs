//! Which parts of gatewayd a committed configuration touches, and whether
//! they can take it without a restart.
//!
//! Most of what an installer changes on a working site is taken live by
//! [`crate::gateway::Gateway::apply`]: the routing table and groups, port
//! numbers and dialling settings, FXO line settings, trunks (changed in place
//! or added at the end: a trunk whose registrar or accounts changed
//! re-registers, the others keep their bindings), emergency numbers, caller
//! ID, and the per-call media settings (codecs, ptime, jitter buffer,
//! telephone-event, comfort noise, busy-tone disconnect), which serve the
//! next call. Calls in progress keep their legs and audio.
//!
//! What is bound or allocated once at start needs a restart, which drops the
//! calls in progress: the SIP socket's address, the web and console
//! listeners and their budgets, the country (tones and cadences of the rt
//! thread), the rt core, the echo canceller's size and the modem bypass (the
//! rt thread allocates them before it starts), the RTP address and port
//! range, the number of trunk-to-trunk bridge channels, the log file, the
//! edge's admission limits, a port or line added or removed, and a trunk
//! removed or renamed.

use crate::config::Config;

/// What a change touches: `restart` non-empty means it can take effect only
/// with a restart (each entry says why); otherwise `live` names the parts
/// that change live.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChangePlan {
    pub restart: Vec<String>,
    pub live: Vec<String>,
}

pub fn plan_change(old: &Config, new: &Config) -> ChangePlan {
    let mut plan = ChangePlan::default();
    let mut restart = |cond: bool, what: &str| {
        if cond {
            plan.restart.push(what.to_string());
        }
    };
    restart(old.system != new.system, "[system] (country tones and the rt core)");
    restart(old.sip.listen != new.sip.listen, "sip.listen (the SIP socket)");
    restart(old.management != new.management, "[management] (the listeners)");
    restart(old.security != new.security, "[security] (the edge's admission limits)");
    restart(old.log != new.log, "[log]");
    let (om, nm) = (&old.media, &new.media);
    restart(
        om.rtp_ip != nm.rtp_ip || om.rtp_port_min != nm.rtp_port_min || om.rtp_port_max != nm.rtp_port_max,
        "media RTP address or ports",
    );
    restart(
        om.echo_canceller != nm.echo_canceller || om.echo_tail_ms != nm.echo_tail_ms || om.modem_bypass != nm.modem_bypass,
        "media echo canceller or modem bypass (set up by the rt thread at start)",
    );
    restart(om.sip_bridges != nm.sip_bridges, "media.sip_bridges (rt channels)");
    let (ol, nl) = (&old.limits, &new.limits);
    restart(
        ol.console_sessions != nl.console_sessions
            || ol.web_connections != nl.web_connections
            || ol.idle_timeout_s != nl.idle_timeout_s
            || ol.max_line_bytes != nl.max_line_bytes,
        "[limits] of the console and web connections",
    );
    let ports = |c: &Config| c.fxs.iter().map(|p| p.port).collect::<Vec<_>>();
    restart(ports(old) != ports(new), "an FXS port added or removed");
    let lines = |c: &Config| c.fxo.iter().map(|p| p.port).collect::<Vec<_>>();
    restart(lines(old) != lines(new), "an FXO line added or removed");
    let kept = new.trunk.len() >= old.trunk.len()
        && old.trunk.iter().zip(&new.trunk).all(|(o, n)| o.name == n.name);
    restart(!kept, "a trunk removed, renamed or reordered");

    let mut live = |cond: bool, what: String| {
        if cond {
            plan.live.push(what);
        }
    };
    live(old.route != new.route || old.group != new.group, "routing table".into());
    live(old.emergency != new.emergency, "emergency numbers".into());
    live(old.dialplan != new.dialplan, "dial plan".into());
    for (o, n) in old.fxs.iter().zip(&new.fxs) {
        live(o != n, format!("FXS {}", n.port));
    }
    for (o, n) in old.fxo.iter().zip(&new.fxo) {
        live(o != n, format!("FXO {}", n.port));
    }
    live(old.sip != new.sip, "trunk default ([sip])".into());
    for (k, n) in new.trunk.iter().enumerate() {
        match old.trunk.get(k) {
            Some(o) => live(o != n, format!("trunk {}", n.name)),
            None => live(true, format!("trunk {} added", n.name)),
        }
    }
    live(old.caller_id != new.caller_id, "caller ID".into());
    live(
        om.codecs != nm.codecs
            || om.telephone_event != nm.telephone_event
            || om.ptime_ms != nm.ptime_ms
            || om.jitter_ms != nm.jitter_ms
            || om.disconnect_on_busy_tone != nm.disconnect_on_busy_tone
            || om.silence_suppression != nm.silence_suppression,
        "media settings of new calls".into(),
    );
    live(
        ol.no_answer_timeout_s != nl.no_answer_timeout_s || ol.rtp_timeout_s != nl.rtp_timeout_s,
        "call limits".into(),
    );
    plan
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> Config {
        Config::default_sim()
    }

    #[test]
    fn a_port_number_and_the_routing_table_change_live() {
        let old = base();
        let mut new = old.clone();
        new.fxs[1].number = "2002".into();
        new.media.codecs = vec!["PCMA".into()];
        let plan = plan_change(&old, &new);
        assert!(plan.restart.is_empty(), "{plan:?}");
        assert_eq!(plan.live, vec!["FXS 2".to_string(), "media settings of new calls".to_string()]);
    }

    #[test]
    fn what_is_bound_at_start_needs_a_restart() {
        let old = base();
        let mut new = old.clone();
        new.system.country = "DE".into();
        new.sip.listen = "127.0.0.1:5999".parse().unwrap();
        new.media.echo_tail_ms = 128;
        let plan = plan_change(&old, &new);
        assert_eq!(plan.restart.len(), 3, "{plan:?}");
        new = old.clone();
        new.fxs.pop();
        assert_eq!(plan_change(&old, &new).restart, vec!["an FXS port added or removed".to_string()]);
    }

    #[test]
    fn no_change_is_an_empty_plan() {
        assert_eq!(plan_change(&base(), &base()), ChangePlan::default());
    }
}
