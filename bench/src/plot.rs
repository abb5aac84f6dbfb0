//! `signet-bench --plot FILE.svg`: each Signet-vs-SPIRE figure of a run's
//! JSON as a pair of horizontal bars, Signet's above SPIRE's, with both
//! values and the ratio. Each figure has its own scale (units differ): a
//! log scale where the two differ by 10× or more, else linear from zero.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context;

/// One figure: its name without the `vs_spire_` prefix, its unit, and each
/// side's value or error.
#[derive(Debug)]
struct Pair {
    name: String,
    unit: String,
    signet: Result<f64, String>,
    spire: Result<f64, String>,
}

const WIDTH: f64 = 900.0;
const LABEL: f64 = 250.0;
const BARS: f64 = 520.0;
const ROW: f64 = 54.0;
const TOP: f64 = 50.0;
const SIGNET: &str = "#2f6db5";
const SPIRE: &str = "#e08a2c";

/// Reads the run's JSON at `json` and writes the SVG to `svg`.
pub fn plot(json: &Path, svg: &Path) -> anyhow::Result<()> {
    let text =
        std::fs::read_to_string(json).with_context(|| format!("reading {}", json.display()))?;
    let doc: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("{} is not JSON", json.display()))?;
    let pairs = pairs(&doc)?;
    anyhow::ensure!(
        !pairs.is_empty(),
        "{} has no vs_spire figures: run `signet-bench --vs-spire --json {}` first",
        json.display(),
        json.display()
    );
    std::fs::write(svg, render(&pairs, &doc["machine"]))
        .with_context(|| format!("writing {}", svg.display()))?;
    println!("wrote {} ({} figures)", svg.display(), pairs.len());
    Ok(())
}

/// The `<name>_signet` / `<name>_spire` figures, in the run's order.
fn pairs(doc: &serde_json::Value) -> anyhow::Result<Vec<Pair>> {
    let figures = doc["figures"].as_array().context("no `figures` array")?;
    let value = |name: &str| -> Option<(Result<f64, String>, String)> {
        let f = figures.iter().find(|f| f["name"] == name)?;
        let unit = f["unit"].as_str().unwrap_or("").to_owned();
        Some(match f["value"].as_f64() {
            Some(v) => (Ok(v), unit),
            None => (
                Err(f["error"].as_str().unwrap_or("failed").to_owned()),
                unit,
            ),
        })
    };
    Ok(figures
        .iter()
        .filter_map(|f| f["name"].as_str()?.strip_suffix("_signet"))
        .filter(|base| base.starts_with("vs_spire_"))
        .filter_map(|base| {
            let (signet, unit) = value(&format!("{base}_signet"))?;
            let (spire, _) = value(&format!("{base}_spire"))?;
            Some(Pair {
                name: base.trim_start_matches("vs_spire_").to_owned(),
                unit,
                signet,
                spire,
            })
        })
        .collect())
}

fn render(pairs: &[Pair], machine: &serde_json::Value) -> String {
    let height = TOP + ROW * pairs.len() as f64 + 40.0;
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="10" y="22" font-size="15" font-weight="bold">Signet vs SPIRE, same work, same run</text>"#
    );
    let _ = writeln!(
        s,
        r#"<rect x="{x}" y="12" width="12" height="12" fill="{SIGNET}"/><text x="{tx}" y="22">Signet</text><rect x="{x2}" y="12" width="12" height="12" fill="{SPIRE}"/><text x="{tx2}" y="22">SPIRE</text>"#,
        x = LABEL + 150.0,
        tx = LABEL + 166.0,
        x2 = LABEL + 230.0,
        tx2 = LABEL + 246.0,
    );
    for (i, p) in pairs.iter().enumerate() {
        row(&mut s, p, TOP + ROW * i as f64);
    }
    let cpu = machine["cpu"].as_str().unwrap_or("unknown CPU");
    let nproc = machine["nproc"].as_u64().unwrap_or(0);
    let _ = writeln!(
        s,
        r##"<text x="10" y="{y}" fill="#555">{nproc} × {cpu}; per figure: log scale where the values differ by 10× or more. Ratio = Signet ÷ SPIRE.</text>"##,
        y = height - 14.0,
        cpu = escape(cpu),
    );
    s.push_str("</svg>\n");
    s
}

fn row(s: &mut String, p: &Pair, y: f64) {
    let _ = writeln!(
        s,
        r##"<text x="10" y="{ty}">{name}</text><text x="10" y="{uy}" fill="#555" font-size="10">{unit}</text>"##,
        ty = y + 16.0,
        uy = y + 30.0,
        name = escape(&p.name),
        unit = escape(&format!("{}, {}", p.unit, better(&p.unit))),
    );
    let values: Vec<f64> = [&p.signet, &p.spire]
        .into_iter()
        .filter_map(|v| v.as_ref().ok().copied())
        .filter(|v| *v > 0.0)
        .collect();
    let max = values.iter().copied().fold(0.0, f64::max);
    let min = values.iter().copied().fold(f64::INFINITY, f64::min);
    let log = max > 0.0 && max / min >= 10.0;
    // Log bars start a decade below the smaller value, so it still shows.
    let width = |v: f64| -> f64 {
        if v <= 0.0 || max <= 0.0 {
            return 0.0;
        }
        if log {
            let floor = (min / 10.0).log10();
            BARS * (v.log10() - floor) / (max.log10() - floor)
        } else {
            BARS * v / max
        }
    };
    for (k, (v, color)) in [(&p.signet, SIGNET), (&p.spire, SPIRE)]
        .into_iter()
        .enumerate()
    {
        let by = y + 4.0 + 18.0 * k as f64;
        match v {
            Ok(v) => {
                let w = width(*v).max(1.0);
                let _ = writeln!(
                    s,
                    r#"<rect x="{LABEL}" y="{by}" width="{w:.1}" height="15" fill="{color}"/><text x="{tx:.1}" y="{ty}">{v}</text>"#,
                    tx = LABEL + w + 5.0,
                    ty = by + 12.0,
                    v = number(*v),
                );
            }
            Err(e) => {
                let short: String = e.chars().take(70).collect();
                let _ = writeln!(
                    s,
                    r##"<text x="{LABEL}" y="{ty}" fill="#b00">failed: {short}</text>"##,
                    ty = by + 12.0,
                    short = escape(&short),
                );
            }
        }
    }
    if let (Ok(a), Ok(b)) = (&p.signet, &p.spire) {
        if *b > 0.0 {
            let _ = writeln!(
                s,
                r#"<text x="{x}" y="{y}" font-weight="bold">×{r}</text>"#,
                x = WIDTH - 70.0,
                y = y + 24.0,
                r = number(a / b),
            );
        }
    }
    if log {
        let _ = writeln!(
            s,
            r##"<text x="{x}" y="{y}" fill="#555" font-size="10">log</text>"##,
            x = LABEL - 24.0,
            y = y + 24.0,
        );
    }
}

/// Rates are better higher; times and memory lower.
fn better(unit: &str) -> &'static str {
    if unit.ends_with("/s") {
        "higher is better"
    } else {
        "lower is better"
    }
}

/// Three significant digits, no exponent for everyday magnitudes.
fn number(v: f64) -> String {
    if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 1.0 {
        format!("{v:.2}")
    } else if v.abs() >= 0.001 {
        format!("{v:.3}")
    } else {
        format!("{v:.1e}")
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run() -> serde_json::Value {
        serde_json::json!({
            "machine": {"nproc": 2, "cpu": "Test <CPU>"},
            "figures": [
                {"name": "vs_spire_sync_10k_signet", "value": 950.0, "unit": "ms"},
                {"name": "vs_spire_sync_10k_spire", "value": 10100.0, "unit": "ms"},
                {"name": "vs_spire_sync_10k", "value": 0.094, "unit": "x"},
                {"name": "vs_spire_fetch_p99_c1_signet", "value": 0.7, "unit": "ms"},
                {"name": "vs_spire_fetch_p99_c1_spire", "value": null, "unit": "ms", "error": "4 MB & more"},
                {"name": "issue_ratio", "value": 0.75, "unit": "ratio"},
            ]
        })
    }

    #[test]
    fn each_vs_spire_figure_becomes_a_pair_and_others_are_left_out() {
        let pairs = pairs(&run()).unwrap();
        let names: Vec<&str> = pairs.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["sync_10k", "fetch_p99_c1"]);
        assert_eq!(pairs[0].signet, Ok(950.0));
        assert_eq!(pairs[1].spire, Err("4 MB & more".into()));
    }

    #[test]
    fn the_svg_shows_values_ratios_failures_and_escapes_text() {
        let doc = run();
        let svg = render(&pairs(&doc).unwrap(), &doc["machine"]);
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert!(svg.contains(">950<") && svg.contains(">10100<"));
        assert!(svg.contains("×0.094"), "the ratio of the pair");
        assert!(svg.contains(">log<"), "10x apart: log scale");
        assert!(svg.contains("failed: 4 MB &amp; more"));
        assert!(svg.contains("Test &lt;CPU&gt;"));
        assert_eq!(svg.matches("<svg").count(), 1);
    }

    #[test]
    fn on_a_log_scale_the_smaller_bar_is_still_visible() {
        let p = Pair {
            name: "x".into(),
            unit: "ms".into(),
            signet: Ok(1.0),
            spire: Ok(1000.0),
        };
        let mut s = String::new();
        row(&mut s, &p, 0.0);
        // A decade below the smaller value is the axis start: 1 of 4 decades.
        assert!(s.contains(r#"width="130.0""#), "{s}");
        assert!(s.contains(r#"width="520.0""#), "{s}");
    }
}
