//! Prometheus metrics, collected from the node's counters at scrape time.
//!
//! The request path only bumps relaxed atomics (in `command::Node`); this collector turns
//! them into OpenMetrics text when `/metrics` is scraped, so metrics cost nothing per request
//! beyond those increments.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use command::node::LATENCY_BUCKETS_USEC;
use command::{Node, COMMANDS};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

/// Exposes a node's counters.
#[derive(Debug)]
pub struct NodeCollector(pub Arc<Node>);

fn counter(e: &mut DescriptorEncoder<'_>, name: &str, help: &str, value: u64) -> std::fmt::Result {
    let c = ConstCounter::new(value);
    c.encode(e.encode_descriptor(name, help, None, c.metric_type())?)
}

fn gauge(e: &mut DescriptorEncoder<'_>, name: &str, help: &str, value: i64) -> std::fmt::Result {
    let g = ConstGauge::new(value);
    g.encode(e.encode_descriptor(name, help, None, g.metric_type())?)
}

/// Encodes a counter family labelled `cmd`, skipping commands never called.
fn per_command(
    e: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    node: &Node,
    counter: impl Fn(&command::node::CommandStats) -> &std::sync::atomic::AtomicU64,
) -> std::fmt::Result {
    let mut family = e.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (spec, stats) in COMMANDS.iter().zip(node.command_stats.iter()) {
        let n = counter(stats).load(Relaxed);
        if n > 0 {
            ConstCounter::new(n).encode(family.encode_family(&[("cmd", spec.name)])?)?;
        }
    }
    Ok(())
}

impl Collector for NodeCollector {
    fn encode(&self, mut e: DescriptorEncoder<'_>) -> std::fmt::Result {
        let node = &self.0;
        let store = node.store.stats();
        let config = node.store.config();
        let s = &node.stats;
        counter(
            &mut e,
            "ringcache_keyspace_hits",
            "Reads that found their key.",
            store.hits,
        )?;
        counter(
            &mut e,
            "ringcache_keyspace_misses",
            "Reads that found no key.",
            store.misses,
        )?;
        counter(
            &mut e,
            "ringcache_keys_evicted",
            "Keys evicted to stay within maxmemory.",
            store.evicted,
        )?;
        counter(
            &mut e,
            "ringcache_keys_expired",
            "Keys removed because their TTL passed.",
            store.expired,
        )?;
        gauge(&mut e, "ringcache_keys", "Keys held.", store.keys as i64)?;
        gauge(
            &mut e,
            "ringcache_memory_used_bytes",
            "Bytes charged against maxmemory.",
            store.used_bytes as i64,
        )?;
        gauge(
            &mut e,
            "ringcache_memory_max_bytes",
            "The maxmemory budget (0 = unlimited).",
            config.max_memory_bytes as i64,
        )?;
        gauge(
            &mut e,
            "ringcache_memory_rss_bytes",
            "Resident set size of the process.",
            command::node::rss_bytes() as i64,
        )?;
        gauge(
            &mut e,
            "ringcache_connections_current",
            "Connected clients.",
            node.client_count() as i64,
        )?;
        counter(
            &mut e,
            "ringcache_connections_received",
            "Connections accepted.",
            s.connections_received.load(Relaxed),
        )?;
        counter(
            &mut e,
            "ringcache_connections_rejected",
            "Connections refused at maxclients.",
            s.rejected_connections.load(Relaxed),
        )?;
        counter(
            &mut e,
            "ringcache_connections_output_limit_closed",
            "Clients closed for not reading replies or exceeding the output limit.",
            s.output_limit_disconnections.load(Relaxed),
        )?;
        gauge(
            &mut e,
            "ringcache_client_buffer_bytes",
            "Bytes held by all clients' query and output buffers (against maxmemory-clients).",
            s.client_buffer_bytes.load(Relaxed) as i64,
        )?;
        counter(
            &mut e,
            "ringcache_clients_evicted",
            "Clients disconnected, largest buffers first, to bring all clients' buffers under maxmemory-clients.",
            s.clients_evicted.load(Relaxed),
        )?;
        counter(
            &mut e,
            "ringcache_panics",
            "Panics caught in this process (each is a bug: the request or task that hit it was lost).",
            crate::panics::count(),
        )?;
        counter(
            &mut e,
            "ringcache_protocol_errors",
            "Connections closed for malformed requests.",
            s.protocol_errors.load(Relaxed),
        )?;
        counter(
            &mut e,
            "ringcache_net_input_bytes",
            "Bytes read from clients.",
            s.net_input_bytes.load(Relaxed),
        )?;
        counter(
            &mut e,
            "ringcache_net_output_bytes",
            "Bytes written to clients.",
            s.net_output_bytes.load(Relaxed),
        )?;
        counter(
            &mut e,
            "ringcache_commands_unknown",
            "Unknown commands received.",
            s.unknown_commands.load(Relaxed),
        )?;

        per_command(
            &mut e,
            "ringcache_commands",
            "Commands executed, by command.",
            node,
            |c| &c.calls,
        )?;
        per_command(
            &mut e,
            "ringcache_commands_failed",
            "Commands that replied with an error, by command.",
            node,
            |c| &c.failed,
        )?;

        if let Some(cluster) = node.cluster.get() {
            for (name, help, value) in cluster.metrics() {
                gauge(&mut e, name, help, value)?;
            }
            for h in cluster.histograms() {
                let mut family =
                    e.encode_descriptor(h.name, h.help, None, MetricType::Histogram)?;
                family.encode_histogram::<NoLabelSet>(h.sum, h.count, &h.buckets, None)?;
            }
        }

        // Per-bucket counts: `encode_histogram` sums them into the cumulative `le` series
        // itself (handing it running totals counted every command many times over).
        let mut count = 0u64;
        let mut buckets = Vec::with_capacity(LATENCY_BUCKETS_USEC.len() + 1);
        for (i, bound) in LATENCY_BUCKETS_USEC.iter().enumerate() {
            let n = node.latency.buckets[i].load(Relaxed);
            count += n;
            buckets.push((*bound as f64 / 1e6, n));
        }
        let n = node.latency.buckets[LATENCY_BUCKETS_USEC.len()].load(Relaxed);
        count += n;
        buckets.push((f64::INFINITY, n));
        let sum_secs = node.latency.sum_usec.load(Relaxed) as f64 / 1e6;
        let mut h = e.encode_descriptor(
            "ringcache_command_duration_seconds",
            "Time to execute a command (excluding network), all commands.",
            None,
            MetricType::Histogram,
        )?;
        h.encode_histogram::<NoLabelSet>(sum_secs, count, &buckets, None)?;
        Ok(())
    }
}

/// Returns a registry with the node's collector.
pub fn registry(node: Arc<Node>) -> Registry {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(NodeCollector(node)));
    registry
}
