//! Logging for both daemons: to stderr, `RUST_LOG` sets the level (info
//! unless set), human-readable lines or JSON. Colours only on a terminal:
//! escape codes in a log file or the journal make it unreadable and
//! ungreppable. Under systemd, when stderr is the journal's stream
//! (`JOURNAL_STREAM` names it), each line starts with its syslog priority
//! (`<3>` error, `<4>` warning, ...) so `journalctl -p warning` finds the
//! warnings; the journal stamps lines itself, so the timestamp is left out.

use std::io::IsTerminal;
use std::os::fd::AsFd;

use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::{self, FormatEvent, FormatFields, Writer};
use tracing_subscriber::fmt::FmtContext;
use tracing_subscriber::registry::LookupSpan;

pub fn init(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let journal = stderr_is_journal();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(!journal && std::io::stderr().is_terminal());
    let _ = match (json, journal) {
        (false, false) => builder.try_init(),
        (true, false) => builder.json().try_init(),
        (false, true) => builder
            .event_format(SyslogPriority(format().without_time()))
            .try_init(),
        (true, true) => builder
            .json()
            .event_format(SyslogPriority(format().json()))
            .try_init(),
    };
}

fn format() -> format::Format {
    format::Format::default()
}

/// stderr is the stream `JOURNAL_STREAM` (`<device>:<inode>`) names, so
/// systemd connected it to the journal (not merely an inherited variable).
fn stderr_is_journal() -> bool {
    let Some(named) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    match nix::sys::stat::fstat(std::io::stderr().as_fd()) {
        Ok(st) => names_stream(&named.to_string_lossy(), st.st_dev, st.st_ino),
        Err(_) => false,
    }
}

fn names_stream(journal_stream: &str, dev: u64, ino: u64) -> bool {
    journal_stream
        .split_once(':')
        .and_then(|(d, i)| Some((d.parse::<u64>().ok()?, i.parse::<u64>().ok()?)))
        == Some((dev, ino))
}

/// The syslog priority the journal reads from a `<N>` line prefix.
fn priority(level: &Level) -> u8 {
    match *level {
        Level::ERROR => 3,
        Level::WARN => 4,
        Level::INFO => 6,
        Level::DEBUG | Level::TRACE => 7,
    }
}

/// Another event format with the line's `<N>` priority in front.
struct SyslogPriority<F>(F);

impl<S, N, F> FormatEvent<S, N> for SyslogPriority<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> std::fmt::Result {
        write!(writer, "<{}>", priority(event.metadata().level()))?;
        self.0.format_event(ctx, writer, event)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use tracing_subscriber::fmt::MakeWriter;

    use super::*;

    #[test]
    fn journal_stream_must_name_this_very_stream() {
        assert!(names_stream("64769:123456", 64769, 123456));
        assert!(!names_stream("64769:123456", 64769, 123457));
        assert!(!names_stream("64769", 64769, 123456));
        assert!(!names_stream("x:123456", 64769, 123456));
        assert!(!names_stream("", 0, 0));
    }

    #[derive(Clone, Default)]
    struct Lines(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Lines {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Lines {
        type Writer = Lines;
        fn make_writer(&'a self) -> Lines {
            self.clone()
        }
    }

    #[test]
    fn each_line_carries_the_priority_of_its_level() {
        let lines = Lines::default();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(lines.clone())
            .with_ansi(false)
            .with_max_level(Level::DEBUG)
            .event_format(SyslogPriority(format().without_time()))
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            tracing::error!("e");
            tracing::warn!(n = 1, "w");
            tracing::info!("i");
            tracing::debug!("d");
        });
        let text = String::from_utf8(lines.0.lock().unwrap().clone()).unwrap();
        let got: Vec<&str> = text.lines().collect();
        assert_eq!(
            got,
            [
                "<3>ERROR signet_runtime::logging::tests: e",
                "<4> WARN signet_runtime::logging::tests: w n=1",
                "<6> INFO signet_runtime::logging::tests: i",
                "<7>DEBUG signet_runtime::logging::tests: d",
            ]
        );
    }
}
