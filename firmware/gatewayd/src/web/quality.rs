//! Live call quality: `GET /api/quality` (JSON, a session needed) and the
//! script that draws it, `GET /static/quality.js` (a same-origin file: the
//! CSP allows scripts from `'self'` only, none inline).
//!
//! Per port: its state and call, its call's RTP reception (jitter, packets
//! received, lost and late, frames concealed) and levels to and from the
//! line, and the rt thread's echo canceller figures (ERLE, ERL, echo delay,
//! comfort-noise level); for the box: the RTP
//! packets received, sent and malformed (the script turns them into rates)
//! and the rt loop's deadline misses. The script keeps the last 60 samples
//! (2 s apart) and draws each series as a small inline SVG polyline; it
//! also refreshes the dashboard's status text, so the page stays current
//! without reloading.

use super::*;

pub const SCRIPT: &str = include_str!("quality.js");

/// The figures the script plots.
pub fn figures(status: &crate::status::Status) -> serde_json::Value {
    let ports: Vec<serde_json::Value> = status
        .ports
        .iter()
        .map(|p| {
            let e = p.echo.as_ref();
            let q = p.signals.and_then(|g| g.quality);
            serde_json::json!({
                "port": p.port,
                "number": p.number,
                "state": p.state,
                "call": p.call,
                "erle_db": e.map(|e| e.erle_db),
                "erl_db": e.map(|e| e.erl_db),
                "echo_delay_ms": e.map(|e| e.delay_ms),
                "noise_dbm0": e.filter(|e| e.comfort_noise).map(|e| e.comfort_noise_dbm0),
                "rtp": q.map(|q| serde_json::json!({
                    "received": q.received,
                    "lost": q.lost,
                    "late": q.late,
                    "concealed": q.concealed,
                    "jitter_ms": q.jitter_ms,
                    "to_line_dbm0": q.to_line_dbm0,
                    "from_line_dbm0": q.from_line_dbm0,
                })),
            })
        })
        .collect();
    serde_json::json!({
        "ports": ports,
        "rtp": {
            "received": status.rt.rtp_received,
            "sent": status.rt.rtp_sent,
            "malformed": status.rt.rtp_malformed,
        },
        "deadline_misses": status.rt.deadline_misses,
        "text": status.to_text(),
    })
}

pub async fn api(State(web): State<Web>, headers: HeaderMap) -> Response {
    if let Err(r) = session(&web, &headers, false) {
        return r;
    }
    axum::Json(figures(&snapshot(&web.ctx.status))).into_response()
}

pub async fn script() -> Response {
    ([(header::CONTENT_TYPE, "text/javascript; charset=utf-8")], SCRIPT).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_figures_carry_each_calls_reception_and_levels() {
        let mut status = crate::status::Status::new("sim".into(), "127.0.0.1:5062".into(), None, crate::rt::RtStats::new(0).snapshot());
        status.rt.rtp_received = 120;
        status.ports.push(crate::gateway::PortStatus {
            port: 1,
            timeslot: 0,
            number: "1001".into(),
            hook: "OffHook".into(),
            state: "Connected".into(),
            call: Some("to 2000".into()),
            route: None,
            echo: None,
            signals: Some(crate::rt::SignalStatus {
                quality: Some(crate::rt::MediaQuality { received: 97, lost: 3, jitter_ms: 2.5, to_line_dbm0: -10.0, ..Default::default() }),
                ..Default::default()
            }),
        });
        let f = figures(&status);
        assert_eq!(f["rtp"]["received"], 120);
        let p = &f["ports"][0];
        assert_eq!((p["state"].as_str(), p["rtp"]["lost"].as_u64(), p["rtp"]["jitter_ms"].as_f64()), (Some("Connected"), Some(3), Some(2.5)));
        assert!(p["erle_db"].is_null(), "no echo canceller, no ERLE");
        assert!(f["text"].as_str().unwrap().contains("FXS 1"));
    }
}
