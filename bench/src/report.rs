//! Figures as they are measured: one `name value unit` line each on stdout,
//! then all of them as one JSON document.

use std::path::Path;

use anyhow::Context;
use serde_json::json;

pub struct Report {
    figures: Vec<(String, f64, String)>,
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

    /// Names added from now on start with `prefix` ("" to stop).
    pub fn set_prefix(&mut self, prefix: &str) {
        self.prefix = prefix.to_owned();
    }

    pub fn add(&mut self, name: &str, value: f64, unit: &str) {
        let name = format!("{}{name}", self.prefix);
        let name = name.as_str();
        let shown = if value.abs() >= 100.0 {
            format!("{value:.0}")
        } else {
            format!("{value:.3}")
        };
        println!("{name} {shown} {unit}");
        self.figures.push((name.into(), value, unit.into()));
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
            .map(|(name, value, unit)| json!({"name": name, "value": value, "unit": unit}))
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
