//! Prometheus text (the operator's /metrics, the API server's), parsed by a crate in this one
//! place, for the tests and, through a `#[path]` module, the benchmarks.

use std::collections::BTreeMap;

use prometheus_parse::{Sample, Scrape, Value};

/// The samples of one scrape.
pub struct Metrics(Scrape);

impl Metrics {
    pub fn parse(text: &str) -> Self {
        // The parser reads lines from an `io` source; from a string nothing can fail.
        Self(Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).expect("lines of a string"))
    }

    /// The series of `name` whose labels include each pair of `with`.
    fn series<'a>(&'a self, name: &'a str, with: &'a [(&str, &str)]) -> impl Iterator<Item = &'a Sample> {
        self.0
            .samples
            .iter()
            .filter(move |s| s.metric == name && with.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
    }

    /// The sum of the counters or gauges of `name` whose labels include each pair of `with`.
    pub fn sum(&self, name: &str, with: &[(&str, &str)]) -> f64 {
        self.series(name, with).map(|s| Self::one(&s.value)).sum()
    }

    /// As `sum`, per value of the labels `by` (in that order).
    pub fn sum_by(&self, name: &str, by: &[&str]) -> BTreeMap<Vec<String>, f64> {
        let mut sums = BTreeMap::new();
        for s in self.series(name, &[]) {
            let key = by
                .iter()
                .map(|l| s.labels.get(l).unwrap_or_default().to_owned())
                .collect();
            *sums.entry(key).or_insert(0.0) += Self::one(&s.value);
        }
        sums
    }

    /// The cumulative bucket counts of histogram `name` (the family, without `_bucket`),
    /// summed over the series whose labels include each pair of `with`: (upper bound, count)
    /// by rising bound, the last one +Inf.
    pub fn buckets(&self, name: &str, with: &[(&str, &str)]) -> Vec<(f64, f64)> {
        let mut buckets: Vec<(f64, f64)> = Vec::new();
        for s in self.series(name, with) {
            let Value::Histogram(counts) = &s.value else { continue };
            for c in counts {
                match buckets.iter_mut().find(|(bound, _)| *bound == c.less_than) {
                    Some((_, n)) => *n += c.count,
                    None => buckets.push((c.less_than, c.count)),
                }
            }
        }
        buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        buckets
    }

    /// A counter's or a gauge's value (a histogram or a summary is read with `buckets`).
    fn one(value: &Value) -> f64 {
        match value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
            Value::Histogram(_) | Value::Summary(_) => 0.0,
        }
    }
}
