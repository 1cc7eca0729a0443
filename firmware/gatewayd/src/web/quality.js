// gatewayd web UI: live quality plots and the dashboard's refresh.
// Polls /api/quality every 2 s; draws each series as an inline SVG polyline.
"use strict";
(function () {
  const KEEP = 60;
  const history = {};
  let last = null;
  const svgNS = "http://www.w3.org/2000/svg";

  function push(key, v) {
    const h = history[key] || (history[key] = []);
    h.push(v);
    if (h.length > KEEP) h.shift();
    return h;
  }

  function plot(values, lo, hi, label, unit) {
    const w = 180, hgt = 40;
    const fig = document.createElement("figure");
    fig.className = "plot";
    const svg = document.createElementNS(svgNS, "svg");
    svg.setAttribute("width", w);
    svg.setAttribute("height", hgt);
    svg.setAttribute("viewBox", "0 0 " + w + " " + hgt);
    const frame = document.createElementNS(svgNS, "rect");
    frame.setAttribute("width", w);
    frame.setAttribute("height", hgt);
    frame.setAttribute("fill", "#f8f8f8");
    frame.setAttribute("stroke", "#ccc");
    svg.appendChild(frame);
    const pts = [];
    values.forEach(function (v, i) {
      if (v === null || v === undefined || isNaN(v)) return;
      const x = ((KEEP - values.length + i) * (w - 2)) / (KEEP - 1) + 1; // newest at the right
      const c = Math.min(hi, Math.max(lo, v));
      const y = hgt - 1 - ((c - lo) * (hgt - 2)) / (hi - lo);
      pts.push(x.toFixed(1) + "," + y.toFixed(1));
    });
    const line = document.createElementNS(svgNS, "polyline");
    line.setAttribute("points", pts.join(" "));
    line.setAttribute("fill", "none");
    line.setAttribute("stroke", "#06c");
    svg.appendChild(line);
    fig.appendChild(svg);
    const cap = document.createElement("figcaption");
    const now = values.length ? values[values.length - 1] : null;
    cap.textContent = label + ": " + (now === null || now === undefined ? "-" : now.toFixed(1) + " " + unit);
    fig.appendChild(cap);
    return fig;
  }

  function render(q, dt) {
    const box = document.getElementById("quality");
    if (!box) return;
    const parts = [];
    const rx = last && dt > 0 ? (q.rtp.received - last.rtp.received) / dt : null;
    const tx = last && dt > 0 ? (q.rtp.sent - last.rtp.sent) / dt : null;
    const bad = last && dt > 0 ? (q.rtp.malformed - last.rtp.malformed) / dt : null;
    const row = document.createElement("div");
    row.className = "plots";
    row.id = "quality-rtp";
    row.appendChild(plot(push("rx", rx), 0, 500, "RTP in", "pkt/s"));
    row.appendChild(plot(push("tx", tx), 0, 500, "RTP out", "pkt/s"));
    row.appendChild(plot(push("bad", bad), 0, 50, "RTP malformed", "pkt/s"));
    parts.push(row);
    q.ports.forEach(function (p) {
      const key = "p" + p.port;
      const div = document.createElement("div");
      div.className = "plots";
      div.id = "quality-port-" + p.port;
      const h = document.createElement("h3");
      h.textContent = "FXS " + p.port + " (" + p.number + "): " + p.state + (p.call ? ", " + p.call : "");
      div.appendChild(h);
      const r = p.rtp;
      const prev = last && last.ports.find(function (o) { return o.port === p.port; });
      const pr = prev && prev.rtp;
      // Loss over the last interval: lost / (received + lost), in %.
      let loss = null;
      if (r && pr && r.received >= pr.received) {
        const got = r.received - pr.received, lost = Math.max(0, r.lost - pr.lost);
        loss = got + lost > 0 ? (100 * lost) / (got + lost) : 0;
      }
      div.appendChild(plot(push(key + "jitter", r ? r.jitter_ms : null), 0, 60, "jitter", "ms"));
      div.appendChild(plot(push(key + "loss", loss), 0, 20, "loss", "%"));
      div.appendChild(plot(push(key + "tx", r ? r.to_line_dbm0 : null), -70, 0, "level to line", "dBm0"));
      div.appendChild(plot(push(key + "rx", r ? r.from_line_dbm0 : null), -70, 0, "level from line", "dBm0"));
      div.appendChild(plot(push(key + "erle", p.erle_db), 0, 60, "ERLE", "dB"));
      div.appendChild(plot(push(key + "erl", p.erl_db), -10, 40, "ERL", "dB"));
      div.appendChild(plot(push(key + "delay", p.echo_delay_ms), 0, 64, "echo delay", "ms"));
      div.appendChild(plot(push(key + "noise", p.noise_dbm0), -90, -20, "comfort noise", "dBm0"));
      parts.push(div);
    });
    box.replaceChildren.apply(box, parts);
    const text = document.getElementById("status-text");
    if (text) text.textContent = q.text;
  }

  let t0 = null;
  function poll() {
    fetch("/api/quality", { credentials: "same-origin", cache: "no-store" })
      .then(function (r) {
        if (r.redirected || !r.ok) throw new Error("session ended");
        return r.json();
      })
      .then(function (q) {
        const t = Date.now() / 1000;
        render(q, t0 === null ? 0 : t - t0);
        t0 = t;
        last = q;
        const s = document.getElementById("quality-state");
        if (s) s.textContent = "live, updated " + new Date().toLocaleTimeString();
      })
      .catch(function () {
        const s = document.getElementById("quality-state");
        if (s) s.textContent = "not updating (logged out?): reload the page";
      });
  }
  poll();
  setInterval(poll, 2000);
})();
