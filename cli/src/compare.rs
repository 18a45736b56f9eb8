//! `pier endpoints compare NAME`: live against shadow variants, from a running server's
//! `/metrics` — requests, mean / p50 / p99 latency per variant, and how often each shadow
//! answered as the production variant did.

use std::collections::BTreeMap;

use anyhow::Context;

/// One Prometheus sample line: name, labels, value.
fn parse_line(line: &str) -> Option<(&str, BTreeMap<&str, &str>, f64)> {
    if line.starts_with('#') || line.trim().is_empty() {
        return None;
    }
    let (head, value) = line.rsplit_once(' ')?;
    let value: f64 = value.parse().ok()?;
    let (name, labels) = match head.split_once('{') {
        Some((name, rest)) => (name, rest.strip_suffix('}')?),
        None => (head, ""),
    };
    let mut map = BTreeMap::new();
    // Label values here are names Pier validated (no quotes or commas inside).
    for pair in labels.split(',').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=')?;
        map.insert(k, v.trim_matches('"'));
    }
    Some((name, map, value))
}

/// Latency histogram of one variant, summed over models, versions and outcomes.
#[derive(Default, Debug)]
struct Latency {
    count: f64,
    sum: f64,
    /// Cumulative count by upper bound.
    buckets: BTreeMap<u64, (f64, f64)>,
}

impl Latency {
    /// The `q` quantile: the upper bound of the first bucket holding it.
    fn quantile(&self, q: f64) -> Option<f64> {
        let target = q * self.count;
        self.buckets
            .values()
            .find(|(_, cumulative)| *cumulative >= target)
            .map(|(le, _)| *le)
    }
}

/// The comparison table of `endpoint` from the metrics text.
pub fn report(metrics: &str, endpoint: &str) -> String {
    let mut latency: BTreeMap<String, Latency> = BTreeMap::new();
    let mut shadows: BTreeMap<String, BTreeMap<String, f64>> = BTreeMap::new();
    for line in metrics.lines() {
        let Some((name, labels, value)) = parse_line(line) else {
            continue;
        };
        if labels.get("endpoint") != Some(&endpoint) {
            continue;
        }
        let variant = labels.get("variant").copied().unwrap_or("");
        if variant.is_empty() {
            continue;
        }
        match name {
            "pier_request_duration_seconds_count" => {
                latency.entry(variant.into()).or_default().count += value;
            }
            "pier_request_duration_seconds_sum" => {
                latency.entry(variant.into()).or_default().sum += value;
            }
            "pier_request_duration_seconds_bucket" => {
                let le = match labels.get("le") {
                    Some(&"+Inf") => f64::INFINITY,
                    Some(le) => le.parse().unwrap_or(f64::INFINITY),
                    None => continue,
                };
                let entry = latency
                    .entry(variant.into())
                    .or_default()
                    .buckets
                    .entry(le.to_bits())
                    .or_insert((le, 0.0));
                entry.1 += value;
            }
            "pier_shadow_comparisons_total" => {
                let result = labels.get("result").copied().unwrap_or("");
                *shadows
                    .entry(variant.into())
                    .or_default()
                    .entry(result.into())
                    .or_default() += value;
            }
            _ => {}
        }
    }
    let ms = |s: Option<f64>| match s {
        Some(s) if s.is_finite() => format!("{:.2}", s * 1000.0),
        Some(_) => "inf".into(),
        None => "-".into(),
    };
    let mut out = format!(
        "{:<20} {:<7} {:>9} {:>9} {:>9} {:>9} {:>10}\n",
        "VARIANT", "ROLE", "REQUESTS", "MEAN_MS", "P50_MS", "P99_MS", "AGREEMENT"
    );
    for (variant, l) in &latency {
        let counts = shadows.get(variant);
        let role = if counts.is_some() { "shadow" } else { "live" };
        let agreement = counts.map_or("-".to_owned(), |c| {
            let total: f64 = c.values().sum();
            let agree = c.get("agree").copied().unwrap_or(0.0);
            if total > 0.0 {
                format!("{:.1}%", 100.0 * agree / total)
            } else {
                "-".into()
            }
        });
        let mean = (l.count > 0.0).then(|| l.sum / l.count);
        out.push_str(&format!(
            "{:<20} {:<7} {:>9} {:>9} {:>9} {:>9} {:>10}\n",
            variant,
            role,
            l.count,
            ms(mean),
            ms(l.quantile(0.5)),
            ms(l.quantile(0.99)),
            agreement
        ));
    }
    for (variant, c) in &shadows {
        let failed = c.get("failed").copied().unwrap_or(0.0);
        if failed > 0.0 {
            out.push_str(&format!(
                "shadow {variant}: {failed} copies failed where the live variant answered\n"
            ));
        }
    }
    out
}

/// Fetches `metrics_url` and prints the report of `endpoint`.
pub async fn run(metrics_url: &str, token: Option<&str>, endpoint: &str) -> anyhow::Result<()> {
    let mut request = reqwest::Client::new().get(metrics_url);
    if let Some(token) = token.filter(|t| !t.is_empty()) {
        request = request.bearer_auth(token);
    }
    let text = request
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .with_context(|| format!("cannot read metrics at {metrics_url}"))?
        .text()
        .await?;
    let table = report(&text, endpoint);
    if table.lines().count() <= 1 {
        anyhow::bail!("no requests of endpoint {endpoint:?} in {metrics_url} yet");
    }
    print!("{table}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn live_and_shadow_rows_with_quantiles_and_agreement() {
        let text = r#"# TYPE pier_request_duration_seconds histogram
pier_request_duration_seconds_bucket{endpoint="ep",variant="a",model="m",version="1",le="0.001"} 50
pier_request_duration_seconds_bucket{endpoint="ep",variant="a",model="m",version="1",le="0.01"} 99
pier_request_duration_seconds_bucket{endpoint="ep",variant="a",model="m",version="1",le="+Inf"} 100
pier_request_duration_seconds_sum{endpoint="ep",variant="a",model="m",version="1"} 0.3
pier_request_duration_seconds_count{endpoint="ep",variant="a",model="m",version="1"} 100
pier_request_duration_seconds_bucket{endpoint="ep",variant="s",model="m",version="1",le="0.001"} 10
pier_request_duration_seconds_bucket{endpoint="ep",variant="s",model="m",version="1",le="0.01"} 20
pier_request_duration_seconds_bucket{endpoint="ep",variant="s",model="m",version="1",le="+Inf"} 20
pier_request_duration_seconds_sum{endpoint="ep",variant="s",model="m",version="1"} 0.1
pier_request_duration_seconds_count{endpoint="ep",variant="s",model="m",version="1"} 20
pier_request_duration_seconds_count{endpoint="other",variant="a",model="m",version="1"} 7
pier_shadow_comparisons_total{endpoint="ep",variant="s",result="agree"} 15
pier_shadow_comparisons_total{endpoint="ep",variant="s",result="disagree"} 3
pier_shadow_comparisons_total{endpoint="ep",variant="s",result="failed"} 2
"#;
        let r = report(text, "ep");
        let rows: Vec<Vec<&str>> = r.lines().map(|l| l.split_whitespace().collect()).collect();
        assert_eq!(
            rows[1],
            ["a", "live", "100", "3.00", "1.00", "10.00", "-"],
            "{r}"
        );
        assert_eq!(
            rows[2],
            ["s", "shadow", "20", "5.00", "1.00", "10.00", "75.0%"],
            "{r}"
        );
        assert!(r.contains("shadow s: 2 copies failed"), "{r}");
        assert_eq!(report(text, "none").lines().count(), 1);
    }
}
