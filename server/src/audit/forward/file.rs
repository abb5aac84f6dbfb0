//! The JSON-lines file: one record per line, appended and synced per
//! batch; past `max_bytes` it is renamed to `.1` (older ones shifting to
//! `.2` ... up to `keep`, the oldest dropped) and a new one begun.

use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonFileSettings {
    pub path: PathBuf,
    pub max_bytes: u64,
    /// Rotated files kept beside the current one.
    pub keep: u32,
}

pub struct JsonFile {
    settings: JsonFileSettings,
}

fn numbered(path: &Path, n: u32) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{n}"));
    PathBuf::from(name)
}

/// Appends `lines`, then rotates if the file is now past its size.
fn append_blocking(s: &JsonFileSettings, lines: &[String]) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(&s.path)?;
    let mut buf = String::new();
    for l in lines {
        buf.push_str(l);
        buf.push('\n');
    }
    f.write_all(buf.as_bytes())?;
    f.sync_data()?;
    if f.metadata()?.len() >= s.max_bytes {
        drop(f);
        rotate(s)?;
    }
    Ok(())
}

fn rotate(s: &JsonFileSettings) -> std::io::Result<()> {
    if s.keep == 0 {
        return std::fs::remove_file(&s.path);
    }
    for n in (1..s.keep).rev() {
        let from = numbered(&s.path, n);
        if from.exists() {
            std::fs::rename(&from, numbered(&s.path, n + 1))?;
        }
    }
    std::fs::rename(&s.path, numbered(&s.path, 1))
}

impl JsonFile {
    pub fn new(settings: JsonFileSettings) -> Self {
        Self { settings }
    }

    pub async fn append(&self, lines: Vec<String>) -> std::io::Result<()> {
        let s = self.settings.clone();
        tokio::task::spawn_blocking(move || append_blocking(&s, &lines))
            .await
            .map_err(std::io::Error::other)?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_appended_and_rotated_keeping_the_newest_files() {
        let dir = tempfile::tempdir().unwrap();
        let s = JsonFileSettings {
            path: dir.path().join("audit.jsonl"),
            max_bytes: 20,
            keep: 2,
        };
        let line = |n: u32| vec![format!("{{\"seq\":{n:04}}}")];
        for n in 1..=5 {
            append_blocking(&s, &line(n)).unwrap();
        }
        // 13 bytes a line: every second line rotates.
        let read = |p: PathBuf| std::fs::read_to_string(p).unwrap_or_default();
        assert_eq!(read(s.path.clone()), "{\"seq\":0005}\n");
        assert_eq!(
            read(numbered(&s.path, 1)),
            "{\"seq\":0003}\n{\"seq\":0004}\n"
        );
        assert_eq!(
            read(numbered(&s.path, 2)),
            "{\"seq\":0001}\n{\"seq\":0002}\n"
        );
        assert!(!numbered(&s.path, 3).exists());
    }
}
