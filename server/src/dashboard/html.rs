//! The pieces every page is built of: escaping, the layout, tables, a
//! time-left bar and the issuance chart, as SVG (no script needed).

use std::fmt::Write;

/// Text made safe for HTML content and attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A query-string value, percent-encoded.
pub fn url_component(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:0;color:#1b1f24}\
header{background:#1b3a57;color:#fff;padding:.6em 1em}header a{color:#fff;margin-right:1.2em}\
main{padding:1em}table{border-collapse:collapse;margin:.5em 0 1.5em}\
td,th{border-bottom:1px solid #ddd;padding:.3em .7em;text-align:left;vertical-align:top}\
.bar{width:12em;height:.8em;background:#eee;display:inline-block}.bar span{display:block;height:100%}\
.ok{color:#176f2c}.bad{color:#a4161a}.muted{color:#667}code{font-size:.9em}\
.tiles{display:flex;gap:1em;flex-wrap:wrap}.tile{border:1px solid #ddd;padding:.6em 1em;min-width:9em}\
.tile b{font-size:1.6em;display:block}";

/// A whole page: header with the pages, `body` inside `main`.
pub fn page(title: &str, trust_domain: &str, body: &str) -> String {
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width\">\
         <title>{title} · Signet · {td}</title><style>{STYLE}</style></head><body>\
         <header><strong>Signet</strong> · {td} · \
         <a href=\"/ui\">Overview</a><a href=\"/ui/agents\">Agents</a>\
         <a href=\"/ui/entries\">Entries</a><a href=\"/ui/audit\">Audit</a>\
         <a href=\"/ui/anomalies\">Anomalies</a></header>\
         <main><h1>{title}</h1>{body}</main></body></html>",
        title = esc(title),
        td = esc(trust_domain),
    )
}

/// A table: `head` cells, then rows of cells already made safe.
pub fn table(head: &[&str], rows: &[Vec<String>]) -> String {
    let mut out = String::from("<table><thead><tr>");
    for h in head {
        let _ = write!(out, "<th>{}</th>", esc(h));
    }
    out.push_str("</tr></thead><tbody>");
    for row in rows {
        out.push_str("<tr>");
        for cell in row {
            let _ = write!(out, "<td>{cell}</td>");
        }
        out.push_str("</tr>");
    }
    out.push_str("</tbody></table>");
    out
}

/// "3d 4h", "5h 12m", "42m", "30s"; "expired" at or below zero.
pub fn duration_left(secs: i64) -> String {
    if secs <= 0 {
        return "expired".into();
    }
    let (d, h, m) = (secs / 86_400, secs % 86_400 / 3600, secs % 3600 / 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{secs}s"),
        (0, 0, m) => format!("{m}m"),
        (0, h, m) => format!("{h}h {m}m"),
        (d, h, _) => format!("{d}d {h}h"),
    }
}

/// How much of `not_before..not_after` is left at `now`, as a bar.
pub fn life_bar(not_before: i64, not_after: i64, now: i64) -> String {
    let total = (not_after - not_before).max(1) as f64;
    let left = ((not_after - now) as f64 / total).clamp(0.0, 1.0);
    let color = if left > 0.25 { "#2e8b57" } else { "#d97706" };
    format!(
        "<span class=\"bar\" title=\"{pct:.0}% left\"><span style=\"width:{pct:.1}%;background:{color}\"></span></span>",
        pct = left * 100.0
    )
}

/// Per-minute counts (oldest first) as an SVG bar chart.
pub fn minute_chart(counts: &[u64]) -> String {
    let (w, h) = (600.0, 120.0);
    let max = counts.iter().copied().max().unwrap_or(0).max(1) as f64;
    let n = counts.len().max(1) as f64;
    let bw = w / n;
    let mut out = format!(
        "<svg id=\"issuance-chart\" role=\"img\" aria-label=\"SVIDs issued per minute, last {} minutes\" \
         width=\"{w}\" height=\"{total}\" viewBox=\"0 0 {w} {total}\">",
        counts.len(),
        total = h + 16.0
    );
    for (i, c) in counts.iter().enumerate() {
        let bh = (*c as f64 / max) * h;
        let _ = write!(
            out,
            "<rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"{bw2:.1}\" height=\"{bh:.1}\" fill=\"#1b3a57\"><title>{c}</title></rect>",
            x = i as f64 * bw,
            y = h - bh,
            bw2 = (bw - 1.0).max(0.5),
        );
    }
    let _ = write!(
        out,
        "<text x=\"0\" y=\"{y}\" font-size=\"11\">-{m} min</text><text x=\"{w2}\" y=\"{y}\" font-size=\"11\" text-anchor=\"end\">now (peak {peak}/min)</text></svg>",
        y = h + 13.0,
        m = counts.len(),
        w2 = w,
        peak = max as u64
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped_and_times_read_well() {
        assert_eq!(
            esc("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
        assert_eq!(url_component("spiffe://a/b c"), "spiffe%3A%2F%2Fa%2Fb%20c");
        assert_eq!(duration_left(0), "expired");
        assert_eq!(duration_left(42), "42s");
        assert_eq!(duration_left(3 * 3600 + 120), "3h 2m");
        assert_eq!(duration_left(2 * 86_400 + 3600), "2d 1h");
        assert!(life_bar(0, 100, 50).contains("width:50.0%"));
        assert!(minute_chart(&[0, 5, 10]).contains("peak 10/min"));
    }
}
