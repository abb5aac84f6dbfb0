//! Figures as they are measured: one `name value unit` line each on stdout,
//! then all of them as one JSON document.

use std::path::Path;

use anyhow::Context;
use serde_json::json;

/// One figure: its value, or why the system measured could not give one
/// (`--vs-spire` reports SPIRE's own error as the outcome).
struct Figure {
    name: String,
    value: Result<f64, String>,
    unit: String,
}

pub struct Report {
    figures: Vec<Figure>,
    /// Put before every name while set: the same figure on another setup
    /// (`pg_issue_ratio` beside `issue_ratio`).
    prefix: String,
}

impl Report {
    pub fn new() -> Self {
        Report {
            figures: Vec::new(),
            prefix: String::new(),
        }
    }

    /// Takes the figures `other` measured (already printed) into this one.
    pub fn extend(&mut self, other: Report) {
        self.figures.extend(other.figures);
    }

    /// Names added from now on start with `prefix` ("" to stop).
    pub fn set_prefix(&mut self, prefix: &str) {
        self.prefix = prefix.to_owned();
    }

    pub fn add(&mut self, name: &str, value: f64, unit: &str) {
        let name = format!("{}{name}", self.prefix);
        let name = name.as_str();
        let shown = if value.abs() >= 100.0 {
            format!("{value:.0}")
        } else if value == 0.0 || value.abs() >= 0.01 {
            format!("{value:.3}")
        } else {
            // A ratio far below 1 keeps three significant digits.
            format!("{value:.2e}")
        };
        println!("{name} {shown} {unit}");
        self.figures.push(Figure {
            name: name.into(),
            value: Ok(value),
            unit: unit.into(),
        });
    }

    /// A figure with no value: `name failed <unit> (<why>)` on stdout, a
    /// null value and the error in the JSON.
    pub fn failed(&mut self, name: &str, unit: &str, why: &str) {
        let name = format!("{}{name}", self.prefix);
        // One line per figure, whatever the error's text holds.
        let why = why.split_whitespace().collect::<Vec<_>>().join(" ");
        println!("{name} failed {unit} ({why})");
        self.figures.push(Figure {
            name,
            value: Err(why),
            unit: unit.into(),
        });
    }

    pub fn write_json(
        &self,
        path: &Path,
        machine: &serde_json::Value,
        quick: bool,
    ) -> anyhow::Result<()> {
        let figures: Vec<_> = self
            .figures
            .iter()
            .map(|f| match &f.value {
                Ok(v) => json!({"name": f.name, "value": v, "unit": f.unit}),
                Err(e) => json!({"name": f.name, "value": null, "unit": f.unit, "error": e}),
            })
            .collect();
        let doc = json!({"machine": machine, "quick": quick, "figures": figures});
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {dir:?}"))?;
        }
        std::fs::write(path, serde_json::to_string_pretty(&doc)? + "\n")
            .with_context(|| format!("writing {path:?}"))
    }
}

/// `nproc` and the CPU model, so a figure is read against its machine.
pub fn machine() -> serde_json::Value {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, m)| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into());
    json!({"nproc": cpus, "cpu": model})
}
