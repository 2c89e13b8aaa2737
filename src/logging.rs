//! Logs for `TF_LOG`: terraform's plugin host (go-plugin) reads the provider's
//! stderr and treats each hclog-style JSON line (`@level`, `@message`,
//! `@timestamp`, `@module`) as a log entry at that level. tf-provider itself only
//! logs to `PLUGIN_LOG_FILE`, so this subscriber is installed before `serve`.

use std::fmt::Write as _;
use std::io::Write as _;

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Layer;

/// The most verbose level wanted, from `TF_LOG_PROVIDER` or `TF_LOG` (as
/// terraform reads them); `INFO` when neither is set.
pub fn level_from_env() -> Level {
    let raw = std::env::var("TF_LOG_PROVIDER")
        .or_else(|_| std::env::var("TF_LOG"))
        .unwrap_or_default();
    match raw.to_ascii_lowercase().as_str() {
        "trace" | "json" | "1" => Level::TRACE,
        "debug" => Level::DEBUG,
        "warn" => Level::WARN,
        "error" | "off" => Level::ERROR,
        _ => Level::INFO,
    }
}

struct Fields(Map<String, Value>);

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0
            .insert(field.name().to_owned(), Value::String(value.to_owned()));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().to_owned(), value.into());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().to_owned(), value.into());
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().to_owned(), value.into());
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().to_owned(), value.into());
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let mut s = String::new();
        let _ = write!(s, "{value:?}");
        self.0.insert(field.name().to_owned(), Value::String(s));
    }
}

/// Writes one hclog JSON line per event to stderr, with the fields of the
/// enclosing spans (platform, family, image) merged in.
pub struct HclogLayer {
    max: Level,
}

impl<S> Layer<S> for HclogLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        id: &tracing::span::Id,
        ctx: Context<'_, S>,
    ) {
        let mut f = Fields(Map::new());
        attrs.record(&mut f);
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(f);
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let meta = event.metadata();
        // tf-provider's server is ours too (vendored, ADR 006): it says which
        // socket the plugin listens on.
        let ours = meta.target().starts_with("golden")
            || meta.target().starts_with("terraform_provider_golden")
            || meta.target() == "tf_provider::server";
        // Dependencies (gRPC, HTTP) speak only when something is wrong.
        let max = if ours { self.max } else { Level::WARN };
        if *meta.level() > max {
            return;
        }
        let mut obj = Map::new();
        let mut spans = Vec::new();
        if let Some(scope) = ctx.event_scope(event) {
            for span in scope.from_root() {
                spans.push(span.name());
                if let Some(f) = span.extensions().get::<Fields>() {
                    for (k, v) in &f.0 {
                        obj.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        let mut fields = Fields(Map::new());
        event.record(&mut fields);
        let message = fields
            .0
            .remove("message")
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        obj.extend(fields.0);
        let level = match *meta.level() {
            Level::TRACE => "trace",
            Level::DEBUG => "debug",
            Level::INFO => "info",
            Level::WARN => "warn",
            Level::ERROR => "error",
        };
        obj.insert("@level".into(), level.into());
        obj.insert("@message".into(), message.into());
        obj.insert(
            "@module".into(),
            format!("golden.{}", spans.join("."))
                .trim_end_matches('.')
                .into(),
        );
        let ts = time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default();
        obj.insert("@timestamp".into(), ts.into());
        let line = Value::Object(obj).to_string();
        let _ = writeln!(std::io::stderr().lock(), "{line}");
    }
}

/// Installs the subscriber once, in `main`.
pub fn install() {
    let subscriber = tracing_subscriber::registry().with(HclogLayer {
        max: level_from_env(),
    });
    let _ = tracing::subscriber::set_global_default(subscriber);
}
