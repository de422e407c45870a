//! The dashboards and alerts in deploy/ only use metrics the binaries really export: every `ingest_*` and
//! `worker_*` name in deploy/grafana and deploy/prometheus is scraped from a running ingest and worker
//! after some traffic, and every `rabbitmq_*` name is one RabbitMQ's Prometheus plugin documents (the
//! test broker runs without plugins, so those are checked against that list).

mod support;

use std::collections::BTreeSet;
use std::time::Duration;
use support::{eventually, mid, now_ms, user, Options, Stack};

/// RabbitMQ's per-object metrics the dashboard and alerts rely on (rabbitmq_prometheus plugin,
/// `/metrics/per-object`).
const RABBITMQ_METRICS: &[&str] = &["rabbitmq_queue_messages_ready", "rabbitmq_queue_consumers"];

/// Metric names in PromQL expressions, histogram series mapped to their family.
fn names_used() -> BTreeSet<String> {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy");
    let mut text = String::new();
    for dir in ["grafana/dashboards", "prometheus"] {
        for entry in std::fs::read_dir(format!("{root}/{dir}")).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "json" || e == "yml") {
                text.push_str(&std::fs::read_to_string(path).unwrap());
                text.push('\n');
            }
        }
    }
    let mut names = BTreeSet::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let starts = ["ingest_", "worker_", "rabbitmq_"]
            .iter()
            .any(|p| text[i..].starts_with(p))
            && (i == 0
                || !(bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_' || bytes[i - 1] == b'.'));
        if starts {
            let end = text[i..]
                .find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'))
                .map_or(text.len(), |e| i + e);
            let name = &text[i..end];
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| name.strip_suffix(s))
                .unwrap_or(name);
            names.insert(family.to_owned());
            i = end;
        } else {
            i += 1;
        }
    }
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_metric_in_the_dashboards_and_alerts_is_exported() {
    let used = names_used();
    assert!(used.len() > 20, "the deploy files were read: {used:?}");
    let stack = Stack::start(Options::default()).await;
    let customer = user();
    stack.dm(&customer, &mid(), "hello metrics", now_ms()).await;
    assert!(
        eventually(Duration::from_secs(30), || async {
            stack.sent_to(&customer).len() == 1
        })
        .await
    );
    let client = omnidm_sim::webhook::http_client();
    let mut exported = String::new();
    for url in std::iter::once(format!("{}/metrics", stack.ingest_url))
        .chain(stack.worker_addrs.iter().map(|a| format!("http://{a}/metrics")))
    {
        exported.push_str(&client.get(url).send().await.unwrap().text().await.unwrap());
    }
    let families: BTreeSet<&str> = exported
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    let missing: Vec<&String> = used
        .iter()
        .filter(|name| {
            if name.starts_with("rabbitmq_") {
                !RABBITMQ_METRICS.contains(&name.as_str())
            } else {
                !families.contains(name.as_str())
            }
        })
        .collect();
    assert!(
        missing.is_empty(),
        "used in deploy/ but not exported: {missing:?}"
    );
    stack.stop().await;
}
