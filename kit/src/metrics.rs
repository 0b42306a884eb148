//! Counters, gauges and histograms, kept by `prometheus-client` and rendered in
//! the Prometheus text format (version 0.0.4).
//!
//! A [`Registry`] is a handle passed to whoever records; metrics are looked up
//! once at start-up (or once per label set) and then updated without the
//! registry: counters and gauges are atomics, a histogram takes its own short
//! lock per observation.
//!
//! Names are the exposed names. A counter's name ends in `_total`; the crate
//! appends that suffix itself, so the family is registered without it.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};

use prometheus_client::encoding::prometheus_text;
use prometheus_client::metrics::family::MetricConstructor;
use prometheus_client::metrics::{counter, family, gauge, histogram};

/// The `Content-Type` of what [`Registry::render`] returns.
pub const CONTENT_TYPE: &str = prometheus_text::CONTENT_TYPE;

#[derive(Debug, Default)]
pub struct Counter(counter::Counter);

impl Counter {
    pub fn inc(&self) {
        self.0.inc();
    }
    pub fn add(&self, n: u64) {
        self.0.inc_by(n);
    }
    pub fn get(&self) -> u64 {
        self.0.get()
    }
}

#[derive(Debug, Default)]
pub struct Gauge(gauge::Gauge);

impl Gauge {
    pub fn inc(&self) {
        self.0.inc();
    }
    pub fn dec(&self) {
        self.0.dec();
    }
    pub fn get(&self) -> i64 {
        self.0.get()
    }
}

#[derive(Debug)]
pub struct Histogram(histogram::Histogram);

impl Histogram {
    pub fn observe(&self, value: f64) {
        self.0.observe(value);
    }
}

/// Bucket bounds for latencies in seconds, 100 µs to 10 s.
pub const LATENCY_SECONDS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    10.0,
];

/// Bucket bounds for batch sizes.
pub const BATCH_SIZES: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0];

/// A series' labels in the order the caller gave them, which is the order
/// they are exposed in.
type Labels = Vec<(String, String)>;

/// The bounds every series of one histogram family is made with: those given
/// when the family was first asked for.
#[derive(Debug, Clone)]
struct Bounds(Arc<[f64]>);

impl MetricConstructor<histogram::Histogram> for Bounds {
    fn new_metric(&self) -> histogram::Histogram {
        histogram::Histogram::new(self.0.iter().copied())
    }
}

/// One name's series. Cloning shares them.
#[derive(Clone)]
enum Family {
    Counter(family::Family<Labels, counter::Counter>),
    Gauge(family::Family<Labels, gauge::Gauge>),
    Histogram(family::Family<Labels, histogram::Histogram, Bounds>),
}

#[derive(Default)]
struct Families {
    /// What [`Registry::render`] encodes: every family, registered on first use.
    exposed: prometheus_client::registry::Registry,
    /// The same families by exposed name, since the crate's registry is
    /// write-only.
    by_name: HashMap<String, Family>,
}

#[derive(Default)]
pub struct Registry {
    families: RwLock<Families>,
}

impl Registry {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn counter(&self, name: &str, help: &str) -> Arc<Counter> {
        self.counter_with(name, help, &[])
    }

    pub fn counter_with(&self, name: &str, help: &str, labels: &[(&str, &str)]) -> Arc<Counter> {
        match self.family(name, help, || Family::Counter(family::Family::default())) {
            Family::Counter(f) => Arc::new(Counter(f.get_or_create_owned(&owned(labels)))),
            // The name is taken by another type: the caller records into a
            // series nobody scrapes rather than failing.
            _ => Arc::default(),
        }
    }

    pub fn gauge(&self, name: &str, help: &str) -> Arc<Gauge> {
        match self.family(name, help, || Family::Gauge(family::Family::default())) {
            Family::Gauge(f) => Arc::new(Gauge(f.get_or_create_owned(&Vec::new()))),
            _ => Arc::default(),
        }
    }

    pub fn histogram(&self, name: &str, help: &str, bounds: &[f64]) -> Arc<Histogram> {
        self.histogram_with(name, help, bounds, &[])
    }

    pub fn histogram_with(
        &self,
        name: &str,
        help: &str,
        bounds: &[f64],
        labels: &[(&str, &str)],
    ) -> Arc<Histogram> {
        let make =
            || Family::Histogram(family::Family::new_with_constructor(Bounds(bounds.into())));
        let series = match self.family(name, help, make) {
            Family::Histogram(f) => f.get_or_create_owned(&owned(labels)),
            _ => Bounds(bounds.into()).new_metric(),
        };
        Arc::new(Histogram(series))
    }

    /// The family called `name`, registered with `make` if it is new.
    fn family(&self, name: &str, help: &str, make: impl FnOnce() -> Family) -> Family {
        if let Some(family) = self.read().by_name.get(name) {
            return family.clone();
        }
        let mut families = self
            .families
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let Families { exposed, by_name } = &mut *families;
        by_name
            .entry(name.to_string())
            .or_insert_with(|| {
                let family = make();
                // The crate ends every help text with a full stop of its own.
                let help = help.strip_suffix('.').unwrap_or(help);
                match &family {
                    Family::Counter(f) => {
                        let stem = name.strip_suffix("_total").unwrap_or(name);
                        exposed.register(stem, help, f.clone());
                    }
                    Family::Gauge(f) => exposed.register(name, help, f.clone()),
                    Family::Histogram(f) => exposed.register(name, help, f.clone()),
                }
                family
            })
            .clone()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Families> {
        self.families.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_text::encode(&mut out, &self.read().exposed);
        out
    }
}

fn owned(labels: &[(&str, &str)]) -> Labels {
    labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_exposition_lists_every_series_with_cumulative_buckets() {
        let r = Registry::new();
        r.counter_with("http_requests_total", "Requests.", &[("route", "/v1/me")])
            .add(3);
        r.gauge("sessions", "Open sessions.").inc();
        let h = r.histogram("ack_seconds", "Ack latency.", &[0.1, 1.0]);
        h.observe(0.05);
        h.observe(0.5);
        h.observe(5.0);
        let text = r.render();
        assert!(text.contains("http_requests_total{route=\"/v1/me\"} 3"));
        assert!(text.contains("sessions 1"));
        assert!(text.contains("ack_seconds_bucket{le=\"0.1\"} 1"));
        assert!(text.contains("ack_seconds_bucket{le=\"1\"} 2"));
        assert!(text.contains("ack_seconds_bucket{le=\"+Inf\"} 3"));
        assert!(text.contains("ack_seconds_count 3"));
    }

    #[test]
    fn names_and_help_texts_are_exposed_exactly_as_registered() {
        let r = Registry::new();
        r.counter("chat_messages_stored_total", "Messages stored.")
            .inc();
        r.gauge("gateway_sessions", "Open WebSocket sessions.");
        r.histogram("chat_append_seconds", "Append latency.", LATENCY_SECONDS)
            .observe(0.003);
        let text = r.render();
        assert!(text.contains(
            "# HELP chat_messages_stored_total Messages stored.\n\
             # TYPE chat_messages_stored_total counter\n\
             chat_messages_stored_total 1\n"
        ));
        assert!(text.contains(
            "# HELP gateway_sessions Open WebSocket sessions.\n\
             # TYPE gateway_sessions gauge\n\
             gateway_sessions 0\n"
        ));
        assert!(text.contains("# TYPE chat_append_seconds histogram\n"));
        assert!(text.contains("chat_append_seconds_bucket{le=\"0.0001\"} 0\n"));
        assert!(text.contains("chat_append_seconds_bucket{le=\"0.005\"} 1\n"));
        assert!(text.contains("chat_append_seconds_bucket{le=\"10\"} 1\n"));
    }

    #[test]
    fn one_name_and_label_set_is_one_series() {
        let r = Registry::new();
        let labels = [("route", "/v1/me"), ("status", "200")];
        r.counter_with("http_requests_total", "Requests.", &labels)
            .inc();
        r.counter_with("http_requests_total", "Requests.", &labels)
            .inc();
        r.counter_with(
            "http_requests_total",
            "Requests.",
            &[("route", "/healthz"), ("status", "200")],
        )
        .inc();
        assert_eq!(
            r.counter_with("http_requests_total", "Requests.", &labels)
                .get(),
            2
        );
        let text = r.render();
        assert_eq!(
            text.matches("# TYPE http_requests_total counter").count(),
            1
        );
        assert!(text.contains("http_requests_total{route=\"/v1/me\",status=\"200\"} 2\n"));
        assert!(text.contains("http_requests_total{route=\"/healthz\",status=\"200\"} 1\n"));
    }

    #[test]
    fn labelled_histograms_put_le_after_their_own_labels() {
        let r = Registry::new();
        r.histogram_with("batch", "Batch sizes.", BATCH_SIZES, &[("store", "chat")])
            .observe(3.0);
        let text = r.render();
        assert!(text.contains("batch_bucket{store=\"chat\",le=\"2\"} 0\n"));
        assert!(text.contains("batch_bucket{store=\"chat\",le=\"4\"} 1\n"));
        assert!(text.contains("batch_bucket{store=\"chat\",le=\"+Inf\"} 1\n"));
        assert!(text.contains("batch_count{store=\"chat\"} 1\n"));
    }

    #[test]
    fn a_name_taken_by_another_type_keeps_its_first_type() {
        let r = Registry::new();
        r.gauge("sessions", "Open sessions.").inc();
        r.counter("sessions", "Open sessions.").add(5);
        let text = r.render();
        assert!(text.contains("# TYPE sessions gauge\nsessions 1\n"));
        assert!(!text.contains("counter"));
    }
}
