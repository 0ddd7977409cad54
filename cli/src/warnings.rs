//! The library's warnings on stderr, one `warning: …` line each: a login kept in a rescue file, a
//! credential whose fsync failed, a hard link a refresh splits. The library logs them through
//! `tracing`; a command-line user has no subscriber of their own, so without this they would
//! never learn of them. Warnings never hold a token (`tests/scenarios/secrets.rs` checks the logs).
//! Only ours are shown: a dependency's warning (wasmtime-wasi-http logs the debug text of every
//! failed connection) says again, in its own words, what the error the user sees already says.

use std::fmt;

use tracing::{Event, Level, Subscriber};
use tracing_subscriber::filter::Targets;
use tracing_subscriber::fmt::format::{FormatEvent, FormatFields, Writer};
use tracing_subscriber::fmt::{FmtContext, FormattedFields};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;

/// The crates whose warnings are shown: the library and this CLI.
const OURS: [&str; 2] = ["entelix_auth_claude_code", "claude_code_auth"];

/// Send every warning and error the library and the CLI log to stderr.
pub(super) fn show_on_stderr() {
    let ours = Targets::new().with_targets(OURS.map(|target| (target, Level::WARN)));
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(Level::WARN)
        .with_writer(std::io::stderr)
        .event_format(WarningLine)
        .finish()
        .with(ours);
    let _ = tracing::subscriber::set_global_default(subscriber);
}

/// `warning: <message> <field>=<value> …`, control characters shown as `�`.
struct WarningLine;

impl<S, N> FormatEvent<S, N> for WarningLine
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut fields = FormattedFields::<N>::new(String::new());
        ctx.field_format()
            .format_fields(fields.as_writer(), event)?;
        writeln!(writer, "warning: {}", super::render::shown(&fields))
    }
}
