//! Latency histograms with microsecond resolution, mergeable across worker
//! processes (workers print their recorded (value, count) pairs as JSON).

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Microseconds, 1 µs to 60 s, three significant digits.
pub struct Latency(Histogram<u64>);

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Recorded(pub Vec<(u64, u64)>);

#[derive(Debug, Clone, Copy, Serialize)]
pub struct Summary {
    pub count: u64,
    pub p50_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub max_us: u64,
}

impl Default for Latency {
    fn default() -> Self {
        // 1 µs .. 60 s at 3 significant digits is within hdrhistogram's bounds.
        #[allow(clippy::expect_used)]
        Self(Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid bounds"))
    }
}

impl Latency {
    pub fn record(&mut self, elapsed: std::time::Duration) {
        let us = (elapsed.as_micros() as u64).clamp(1, 60_000_000);
        let _ = self.0.record(us);
    }

    pub fn export(&self) -> Recorded {
        Recorded(
            self.0
                .iter_recorded()
                .map(|v| (v.value_iterated_to(), v.count_at_value()))
                .collect(),
        )
    }

    pub fn merge(&mut self, recorded: &Recorded) {
        for &(value, count) in &recorded.0 {
            let _ = self.0.record_n(value.clamp(1, 60_000_000), count);
        }
    }

    pub fn summary(&self) -> Summary {
        Summary {
            count: self.0.len(),
            p50_us: self.0.value_at_quantile(0.50),
            p99_us: self.0.value_at_quantile(0.99),
            p999_us: self.0.value_at_quantile(0.999),
            max_us: self.0.max(),
        }
    }
}

pub fn ms(us: u64) -> String {
    format!("{:.2} ms", us as f64 / 1000.0)
}
