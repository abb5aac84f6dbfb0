//! Logging for both daemons: to stderr, `RUST_LOG` sets the level (info
//! unless set), human-readable lines or JSON. Colours only on a terminal:
//! escape codes in a log file or the journal make it unreadable and
//! ungreppable.

use std::io::IsTerminal;

pub fn init(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}
