//! Live call quality: `GET /api/quality` (JSON, a session needed) and the
//! script that draws it, `GET /static/quality.js` (a same-origin file: the
//! CSP allows scripts from `'self'` only, none inline).
//!
//! Per port: its state and call, and the rt thread's echo canceller figures
//! (ERLE, ERL, echo delay, comfort-noise level); for the box: the RTP
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
            serde_json::json!({
                "port": p.port,
                "number": p.number,
                "state": p.state,
                "call": p.call,
                "erle_db": e.map(|e| e.erle_db),
                "erl_db": e.map(|e| e.erl_db),
                "echo_delay_ms": e.map(|e| e.delay_ms),
                "noise_dbm0": e.filter(|e| e.comfort_noise).map(|e| e.comfort_noise_dbm0),
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
