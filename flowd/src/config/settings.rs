//! Every agent setting, declared once: doc (the README's and `--help`'s text), kind, type,
//! default, the default as people read it, its check and its flag. See `declare.rs` for what
//! each line becomes.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use super::{
    checks::{at_least_one, interface_names, positive, ring_buffer_size},
    default_node_name,
    flow_filter::FlowFilterSetting,
    ConfigError, Setting, DEFAULT_SOCKET, DEFAULT_STORE,
};
use crate::{
    capture::{DropProbeMode, TcAttach},
    export::{KafkaCompression, KafkaFormat, KafkaSasl},
    flow::aggregate::Level,
    flow_metrics::{FlowMetric, MetricLabels},
};

settings! {
    /// interfaces to attach to
    interfaces: list String = Vec::new(), shown "all non-loopback",
        check interface_names, flag #[arg(long = "interface", short = 'i', value_name = "NAME")];
    /// namespace of those interfaces (name under /run/netns, or path)
    netns: optional PathBuf = None, shown "agent's own",
        flag #[arg(long, value_name = "NAME|PATH")];
    /// `tcx` (first in the chain), `clsact` (netlink filters; the qdisc is left in place on
    /// exit, the filters are removed), or `auto`: tcx on kernels >= 6.6
    tc_attach: value TcAttach = TcAttach::Auto, shown "auto",
        flag #[arg(long, value_enum, value_name = "HOW")];
    /// `btf` (tp_btf/kfree_skb, needs kernel BTF), `tracepoint` (classic skb:kfree_skb;
    /// tracefs is mounted if absent), `off`, or `auto`: btf where the kernel has BTF, else
    /// tracepoint. Without BTF drops are counted by reason (`host_drops_<reason>`) but not tied
    /// to flows
    drop_probe: value DropProbeMode = DropProbeMode::Auto, shown "auto",
        flag #[arg(long, value_enum, value_name = "PROBE")];
    /// unix socket of the gRPC API
    socket: value PathBuf = PathBuf::from(DEFAULT_SOCKET), shown "/run/flowd/flowd.sock",
        flag #[arg(long, value_name = "PATH")];
    /// group that may use the unix socket besides its owner (a name or a numeric gid); the
    /// socket is always mode 0660
    socket_group: optional String = None, shown "the agent's",
        flag #[arg(long, value_name = "GROUP")];
    /// also serve the API on this TCP address; beyond loopback it needs `tlsCert`, `tlsKey` and
    /// `tlsClientCa` (or `insecureListen`)
    listen: optional SocketAddr = None, shown "off",
        flag #[arg(long, value_name = "ADDR")];
    /// node name on every record
    node: value String = default_node_name(), shown "$NODE_NAME, else host name",
        flag #[arg(long, value_name = "NAME")];
    /// report a live flow at least this often
    active_timeout: duration Duration = Duration::from_secs(5), shown "5s",
        check positive, flag #[arg(long, value_name = "DURATION")];
    /// a flow quiet this long is over
    idle_timeout: duration Duration = Duration::from_secs(15), shown "15s",
        check positive, flag #[arg(long, value_name = "DURATION")];
    /// how often the kernel map is scanned
    sweep_interval: duration Duration = Duration::from_secs(1), shown "1s",
        check positive, flag #[arg(long, value_name = "DURATION")];
    /// a request unanswered this long is reported `UNANSWERED`
    unanswered_timeout: duration Duration = Duration::from_secs(3), shown "3s",
        check positive, flag #[arg(long, value_name = "DURATION")];
    /// kernel flow map capacity
    flow_map_entries: value u32 = 65_536, shown "65536",
        check at_least_one, flag #[arg(long, value_name = "N")];
    /// kernel event ring, power of two
    ring_buffer_bytes: value u32 = 1 << 20, shown "1048576",
        check ring_buffer_size, flag #[arg(long, value_name = "BYTES")];
    /// BPF filesystem directory where the maps and tc links are pinned, so counting goes on
    /// while the agent is down and a restarted agent reports it (`off`: nothing outlives the
    /// agent). A BPF filesystem is mounted there if none is. One agent per directory
    pin_path: value PathBuf = PathBuf::from("/sys/fs/bpf/flowd"), shown "/sys/fs/bpf/flowd",
        flag #[arg(long, value_name = "PATH|off")];
    /// receive buffer of the rtnetlink socket that follows interfaces (capped by
    /// net.core.rmem_max); when a burst of changes overflows it, the links are listed again
    netlink_receive_buffer: value usize = 1 << 20, shown "1048576",
        check at_least_one, flag #[arg(long, value_name = "BYTES")];
    /// durable flow history (redb)
    store_path: value PathBuf = PathBuf::from(DEFAULT_STORE), shown "/var/lib/flowd/flows.redb",
        flag #[arg(long, value_name = "PATH")];
    /// history older than this is deleted
    retention_max_age: duration Duration = Duration::from_secs(24 * 3600), shown "24h",
        check positive, flag #[arg(long, value_name = "DURATION")];
    /// oldest history beyond this many record bytes is deleted
    retention_max_bytes: value u64 = 1 << 30, shown "1073741824",
        flag #[arg(long, value_name = "BYTES")];
    /// page cache of the history database
    store_cache_bytes: value usize = 32 << 20, shown "33554432",
        flag #[arg(long, value_name = "BYTES")];
    /// records kept in memory while the history cannot be written (disk full); the oldest beyond are lost and counted
    store_hold_records: value usize = 65_536, shown "65536",
        flag #[arg(long, value_name = "N")];
    /// TLS certificate on the `listen` address (PEM file); needs `tlsKey`
    tls_cert: optional PathBuf = None, shown "off",
        flag #[arg(long, value_name = "FILE")];
    /// TLS private key on the `listen` address (PEM file); needs `tlsCert`
    tls_key: optional PathBuf = None, shown "off",
        flag #[arg(long, value_name = "FILE")];
    /// require client certificates signed by this CA (PEM file)
    tls_client_ca: optional PathBuf = None, shown "off",
        flag #[arg(long, value_name = "FILE")];
    /// records a follower may lag before a gap marker
    subscriber_buffer: value usize = 16_384, shown "16384",
        check at_least_one, flag #[arg(long, value_name = "N")];
    /// GetFlows calls open at once; one more is refused with RESOURCE_EXHAUSTED
    max_subscribers: value usize = crate::api::DEFAULT_MAX_SUBSCRIBERS, shown "256",
        check at_least_one, flag #[arg(long, value_name = "N")];
    /// filters (allow and deny together) in one GetFlows request; more is INVALID_ARGUMENT
    max_filters: value usize = crate::api::DEFAULT_MAX_FILTERS, shown "64",
        check at_least_one, flag #[arg(long, value_name = "N")];
    /// values in one field of one GetFlows filter; more is INVALID_ARGUMENT
    max_filter_values: value usize = crate::api::DEFAULT_MAX_FILTER_VALUES, shown "1024",
        check at_least_one, flag #[arg(long, value_name = "N")];
    /// largest request message the API decodes (bytes)
    max_request_bytes: value usize = crate::api::DEFAULT_MAX_REQUEST_BYTES, shown "1048576",
        check at_least_one, flag #[arg(long, value_name = "BYTES")];
    /// HTTP/2 pings on quiet API connections, so clients that vanished are noticed
    keepalive_interval: duration Duration = crate::api::DEFAULT_KEEPALIVE_INTERVAL, shown "30s",
        check positive, flag #[arg(long, value_name = "DURATION")];
    /// how long a ping may go unanswered before the connection is closed
    keepalive_timeout: duration Duration = crate::api::DEFAULT_KEEPALIVE_TIMEOUT, shown "20s",
        check positive, flag #[arg(long, value_name = "DURATION")];
    /// how often a follower that asked for watermarks (the relay) hears that the history moved
    /// on while nothing matches; the relay's merge waits at most this long for a quiet node
    watermark_interval: duration Duration = Duration::from_secs(1), shown "1s",
        check positive, flag #[arg(long, value_name = "DURATION")];
    /// capacity of the channels between pipeline stages (batches)
    pipeline_buffer: value usize = 8_192, shown "8192",
        check at_least_one, flag #[arg(long, value_name = "N")];
    /// `connection`, `source-port` (source ports folded) or `workload` (endpoints folded; by
    /// address until workload metadata exists); verdicts and outcomes never merge
    aggregation: value Level = Level::Connection, shown "connection",
        flag #[arg(long, value_enum, value_name = "LEVEL")];
    /// flush interval of the folding levels
    aggregation_interval: duration Duration = Duration::from_secs(60), shown "60s",
        check positive, flag #[arg(long, value_name = "DURATION")];
    /// Kubernetes objects naming endpoints (Pod, ReplicaSet, Job, Namespace, Service,
    /// EndpointSlice, Node, as `kubectl get -o yaml` prints them): files or directories; objects
    /// of other kinds are skipped with a warning naming the file and the kind
    metadata_files: list PathBuf = Vec::new(), shown "none",
        flag #[arg(long = "metadata-file", value_name = "PATH")];
    /// how often metadata files are checked (and the index rebuilt after API changes)
    metadata_reload_interval: duration Duration = Duration::from_secs(10), shown "10s",
        check positive, flag #[arg(long, value_name = "DURATION")];
    /// watch the Kubernetes API for pods, namespaces, services, EndpointSlices, nodes
    /// (in-cluster config in a pod, kubeconfig elsewhere)
    kubernetes: switch bool = false, shown "off",
        flag #[arg(long)];
    /// policies to attribute every flow to (Kubernetes NetworkPolicy, Calico policies, tiers
    /// and staged kinds; files or directories)
    policy_files: list PathBuf = Vec::new(), shown "none",
        flag #[arg(long = "policy-file", value_name = "PATH")];
    /// serve Prometheus metrics (`/metrics`) on this address (plain HTTP: beyond loopback
    /// only with `insecureMetrics`)
    metrics_listen: optional SocketAddr = None, shown "off",
        flag #[arg(long, value_name = "ADDR")];
    /// flow metrics `/metrics` carries: `flows`, `connections`, `bytes`, `packets`, `drops`
    /// (kernel drops by reason), `denials` (by policy and rule), `outcomes`; `flowMetrics: []`
    /// in the settings file turns them all off
    flow_metrics: list FlowMetric = FlowMetric::ALL.to_vec(), shown "all",
        flag #[arg(long = "flow-metric", value_enum, value_name = "METRIC")];
    /// context labels one flow metric carries, `METRIC=LABEL[,LABEL...]` with labels
    /// `source_namespace`, `source_workload`, `destination_namespace`, `destination_workload`
    /// (e.g. `denials=source_namespace,destination_workload`); each multiplies that metric's
    /// series, up to `flowMetricMaxSeries`
    flow_metric_labels: list MetricLabels = Vec::new(), shown "none",
        flag #[arg(long = "flow-metric-labels", value_name = "METRIC=LABEL,...")];
    /// series one flow metric may have; a record that would add one more is counted in a
    /// series whose context labels read `_other` (and in `flowd_flow_metrics_folded_total`)
    flow_metric_max_series: value usize = 2000, shown "2000",
        check at_least_one, flag #[arg(long, value_name = "N")];
    /// serve the web UI (`/`: service graph, flows, policy board) and its JSON API on this
    /// address; beyond loopback it needs `tlsCert`, `tlsKey` and `tlsClientCa` (or `insecureUi`)
    ui_listen: optional SocketAddr = None, shown "off",
        flag #[arg(long, value_name = "ADDR")];
    /// allow `uiListen` beyond loopback without TLS and client certificates: anyone who
    /// reaches the port reads every flow
    insecure_ui: switch bool = false, shown "off",
        flag #[arg(long)];
    /// GetGraph and RecommendPolicy calls served at once (each reads its whole window); one
    /// more is refused with RESOURCE_EXHAUSTED
    max_queries: value usize = crate::api::DEFAULT_MAX_QUERIES, shown "4",
        check at_least_one, flag #[arg(long, value_name = "N")];
    /// edges in a graph answer (GetGraph, the UI); beyond them the ones with the fewest
    /// connections are left out, denied and dropped ones last
    graph_max_edges: value usize = crate::graph::DEFAULT_MAX_EDGES, shown "2000",
        check at_least_one, flag #[arg(long, value_name = "N")];
    /// allow `listen` beyond loopback without TLS and client certificates: anyone who reaches
    /// the port reads every flow
    insecure_listen: switch bool = false, shown "off",
        flag #[arg(long)];
    /// allow `metricsListen` beyond loopback (plain HTTP: anyone who reaches the port reads the
    /// agent's counters, never flows)
    insecure_metrics: switch bool = false, shown "off",
        flag #[arg(long)];
    /// also write every record as a JSON line here
    export_file: optional PathBuf = None, shown "off",
        flag #[arg(long, value_name = "PATH")];
    /// rotate the export file at this size
    export_file_max_bytes: value u64 = 100 << 20, shown "104857600",
        flag #[arg(long, value_name = "BYTES")];
    /// rotated export files kept
    export_file_max_files: value usize = 5, shown "5",
        flag #[arg(long, value_name = "N")];
    /// also send every record, at least once, to this OTLP/gRPC receiver (an OpenTelemetry
    /// Collector) as a log record: `http://HOST:PORT`
    otlp_endpoint: optional String = None, shown "off",
        flag #[arg(long, value_name = "URL")];
    /// records in one OTLP export request at most
    otlp_batch_records: value usize = 1000, shown "1000",
        check at_least_one, flag #[arg(long, value_name = "N")];
    /// an OTLP export request unanswered this long fails and is retried
    otlp_timeout: duration Duration = Duration::from_secs(10), shown "10s",
        check positive, flag #[arg(long, value_name = "DURATION")];
    /// also send every record, at least once, to the Kafka cluster these brokers bootstrap
    /// (`HOST:PORT[,...]`)
    kafka_brokers: list String = Vec::new(), shown "off",
        flag #[arg(long, value_delimiter = ',', value_name = "HOST:PORT[,...]")];
    /// the topic records go to (it must exist, or the brokers create topics)
    kafka_topic: value String = "flowd.flows".to_owned(), shown "flowd.flows",
        flag #[arg(long, value_name = "NAME")];
    /// a message's value: `protobuf` (a `flowd.v1.Flow`) or `json` (its proto3 JSON mapping)
    kafka_format: value KafkaFormat = KafkaFormat::Protobuf, shown "protobuf",
        flag #[arg(long, value_enum, value_name = "FORMAT")];
    /// compression of produced batches: `none`, `gzip` or `snappy`
    kafka_compression: value KafkaCompression = KafkaCompression::Gzip, shown "gzip",
        flag #[arg(long, value_enum, value_name = "CODEC")];
    /// records in one produce round (split by partition) at most
    kafka_batch_records: value usize = 5000, shown "5000",
        check at_least_one, flag #[arg(long, value_name = "N")];
    /// a produce round unanswered (by every in-sync replica) this long fails and is retried
    kafka_timeout: duration Duration = Duration::from_secs(10), shown "10s",
        check positive, flag #[arg(long, value_name = "DURATION")];
    /// speak TLS to the brokers, trusting this CA (PEM file)
    kafka_tls_ca: optional PathBuf = None, shown "off (plaintext)",
        flag #[arg(long, value_name = "FILE")];
    /// client certificate for the brokers (PEM file); needs `kafkaTlsKey` and `kafkaTlsCa`
    kafka_tls_cert: optional PathBuf = None, shown "off",
        flag #[arg(long, value_name = "FILE")];
    /// the client certificate's private key (PEM file)
    kafka_tls_key: optional PathBuf = None, shown "off",
        flag #[arg(long, value_name = "FILE")];
    /// SASL authentication: `plain`, `scram-sha-256` or `scram-sha-512`; needs
    /// `kafkaSaslUsername` and `kafkaSaslPasswordFile`
    kafka_sasl_mechanism: optional KafkaSasl = None, shown "off",
        flag #[arg(long, value_enum, value_name = "MECHANISM")];
    /// SASL user name
    kafka_sasl_username: optional String = None, shown "off",
        flag #[arg(long, value_name = "NAME")];
    /// a file holding the SASL password (a file, so the password is in no flag or settings file)
    kafka_sasl_password_file: optional PathBuf = None, shown "off",
        flag #[arg(long, value_name = "FILE")];
    /// export to OTLP only records matching one of these GetFlows filters (a `flowd.v1.FlowFilter`
    /// each, proto3 JSON as YAML; flag: JSON)
    otlp_allow: list FlowFilterSetting = Vec::new(), shown "every record",
        flag #[arg(long, value_name = "FILTER")];
    /// and of those, none matching one of these
    otlp_deny: list FlowFilterSetting = Vec::new(), shown "none",
        flag #[arg(long, value_name = "FILTER")];
    /// export to Kafka only records matching one of these GetFlows filters (as `otlpAllow`)
    kafka_allow: list FlowFilterSetting = Vec::new(), shown "every record",
        flag #[arg(long, value_name = "FILTER")];
    /// and of those, none matching one of these
    kafka_deny: list FlowFilterSetting = Vec::new(), shown "none",
        flag #[arg(long, value_name = "FILTER")];
    /// how long an exporter's batch waits to fill once its first record is there
    export_batch_wait: duration Duration = Duration::from_millis(200), shown "200ms",
        check positive, flag #[arg(long, value_name = "DURATION")];
    /// the longest pause between an exporter's retries (the first is 200 ms, then doubling);
    /// what waits is in the history, so an outage delays delivery and loses nothing the node
    /// still holds
    export_retry_max: duration Duration = Duration::from_secs(30), shown "30s",
        check positive, flag #[arg(long, value_name = "DURATION")];
}
