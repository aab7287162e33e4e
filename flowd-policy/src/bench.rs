//! A synthetic-cluster benchmark (not a test), run by `cargo xtask bench` through
//! `flowd/benches/bench.rs`.
//!
//! Builds policies as YAML (so the loader is exercised too), a pod population,
//! a pool of distinct flows, then measures uncached and cached evaluations/s.

use std::collections::BTreeMap;
use std::fmt::{self, Write};
use std::net::{IpAddr, Ipv4Addr};
use std::time::Instant;

use crate::endpoint::{Endpoint, Protocol, Transport};
use crate::eval::{EngineOptions, PolicyEngine};
use crate::load::load_str;

#[derive(Debug, Clone)]
pub struct BenchConfig {
    pub policies: usize,
    pub pods: usize,
    pub namespaces: usize,
    /// Distinct flows the cached run draws from.
    pub distinct_flows: usize,
    pub cached_queries: usize,
    pub uncached_queries: usize,
    pub seed: u64,
}

impl Default for BenchConfig {
    fn default() -> Self {
        BenchConfig {
            policies: 1000,
            pods: 10_000,
            namespaces: 100,
            distinct_flows: 20_000,
            cached_queries: 2_000_000,
            uncached_queries: 20_000,
            seed: 42,
        }
    }
}

#[derive(Debug, Clone)]
pub struct BenchReport {
    pub config: BenchConfig,
    pub loaded_policies: usize,
    pub load_ms: f64,
    pub build_ms: f64,
    pub uncached_per_sec: f64,
    pub cached_per_sec: f64,
    /// With `PolicyEngine::endpoint_key` computed once per pod.
    pub cached_keyed_per_sec: f64,
    pub keys_ms: f64,
    pub cache_hit_rate: f64,
    pub cache_entries: usize,
    pub allowed_fraction: f64,
}

impl fmt::Display for BenchReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "policies: {} loaded in {:.1} ms, engine built in {:.1} ms",
            self.loaded_policies, self.load_ms, self.build_ms
        )?;
        writeln!(
            f,
            "pods: {} in {} namespaces; distinct flows: {}",
            self.config.pods, self.config.namespaces, self.config.distinct_flows
        )?;
        writeln!(
            f,
            "uncached: {:.0} evaluations/s ({} queries)",
            self.uncached_per_sec, self.config.uncached_queries
        )?;
        writeln!(
            f,
            "cached:   {:.0} evaluations/s ({} queries, hit rate {:.1}%, {} entries)",
            self.cached_per_sec,
            self.config.cached_queries,
            self.cache_hit_rate * 100.0,
            self.cache_entries
        )?;
        writeln!(
            f,
            "cached with precomputed endpoint keys: {:.0} evaluations/s (keys for all pods in {:.1} ms)",
            self.cached_keyed_per_sec, self.keys_ms
        )?;
        write!(f, "allowed: {:.1}% of flows", self.allowed_fraction * 100.0)
    }
}

/// xorshift64*: deterministic and dependency-free.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

const APPS: usize = 20;

fn ns_name(i: usize) -> String {
    format!("ns-{i}")
}

fn ns_labels(i: usize) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("team".to_string(), format!("team-{}", i % 10)),
        (
            "env".to_string(),
            if i.is_multiple_of(2) { "prod" } else { "dev" }.to_string(),
        ),
    ])
}

/// The pod population: `app-N` workloads spread over the namespaces.
pub fn synthetic_pods(cfg: &BenchConfig) -> Vec<Endpoint> {
    let per_ns = cfg.pods.div_ceil(cfg.namespaces.max(1));
    (0..cfg.pods)
        .map(|i| {
            let ns = i / per_ns.max(1);
            let j = i % per_ns.max(1);
            let app = j % APPS;
            let ip = Ipv4Addr::new(10, (ns % 250) as u8, (j / 250) as u8, (j % 250) as u8 + 1);
            let mut ep = Endpoint::pod(&ns_name(ns), &format!("app-{app}-{j}"), IpAddr::V4(ip))
                .with_label("app", &format!("app-{app}"))
                .with_label("tier", ["frontend", "backend", "data"][app % 3])
                .with_label("version", &format!("v{}", app % 3))
                .with_label("pod-template-hash", &format!("h{app}"))
                .with_service_account(&format!("sa-{app}"))
                .with_named_port("http", 8080, Protocol::Tcp);
            ep.namespace_labels = ns_labels(ns);
            ep
        })
        .collect()
}

/// Policies as one multi-document YAML text: 70% Kubernetes, 25% Calico
/// NetworkPolicy, 5% GlobalNetworkPolicy (in a "security" tier and the default tier).
pub fn synthetic_policies(cfg: &BenchConfig) -> String {
    let mut y = String::from(
        "apiVersion: projectcalico.org/v3\nkind: Tier\nmetadata: {name: security}\nspec: {order: 100}\n",
    );
    let n_k8s = cfg.policies * 70 / 100;
    let n_calico = cfg.policies * 25 / 100;
    let n_global = cfg.policies.saturating_sub(n_k8s + n_calico);
    let nss = cfg.namespaces.max(1);
    for p in 0..n_k8s {
        let ns = ns_name(p % nss);
        let a = p % APPS;
        let b = (p + 1) % APPS;
        let _ = write!(y, "---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: k8s-{p}, namespace: {ns}}}\nspec:\n");
        let _ = match p % 5 {
            0 => writeln!(y, "  podSelector: {{}}\n  policyTypes: [Ingress]"),
            1 => writeln!(
                y,
                "  podSelector: {{matchLabels: {{app: app-{a}}}}}\n  ingress:\n  - from: [{{podSelector: {{matchLabels: {{app: app-{b}}}}}}}]\n    ports: [{{port: {}}}]",
                8000 + p % 50
            ),
            2 => writeln!(
                y,
                "  podSelector: {{matchLabels: {{app: app-{a}}}}}\n  ingress:\n  - from:\n    - namespaceSelector: {{matchLabels: {{team: team-{}}}}}\n      podSelector: {{matchExpressions: [{{key: tier, operator: In, values: [frontend, backend]}}]}}\n    ports: [{{port: http}}]",
                p % 10
            ),
            3 => writeln!(
                y,
                "  podSelector: {{matchLabels: {{app: app-{a}}}}}\n  policyTypes: [Egress]\n  egress:\n  - to: [{{ipBlock: {{cidr: 10.0.0.0/8, except: [10.{}.0.0/16]}}}}]\n  - ports: [{{port: 53, protocol: UDP}}]",
                p % 250
            ),
            _ => writeln!(
                y,
                "  podSelector: {{matchLabels: {{app: app-{a}}}}}\n  ingress:\n  - from: [{{ipBlock: {{cidr: 192.168.{}.0/24}}}}]\n    ports: [{{port: 30000, endPort: 30100}}]",
                p % 256
            ),
        };
    }
    for p in 0..n_calico {
        let ns = ns_name(p % nss);
        let a = p % APPS;
        let _ = write!(y, "---\napiVersion: projectcalico.org/v3\nkind: NetworkPolicy\nmetadata: {{name: cnp-{p}, namespace: {ns}}}\nspec:\n  order: {}\n", p % 200);
        let _ = if p.is_multiple_of(2) {
            writeln!(
                y,
                "  selector: app == 'app-{a}' && version != 'v2'\n  ingress:\n  - action: Deny\n    source: {{selector: \"app in {{'app-{}', 'app-{}'}}\"}}\n  - action: Allow\n    protocol: TCP\n    destination: {{ports: ['9000:9100', 8080]}}",
                (a + 3) % APPS,
                (a + 4) % APPS
            )
        } else {
            writeln!(
                y,
                "  selector: has(tier) && tier starts with 'back'\n  egress:\n  - action: Log\n  - action: Allow\n    destination: {{namespaceSelector: env == 'prod', selector: all()}}\n  - action: Allow\n    protocol: UDP\n    destination: {{ports: [53]}}"
            )
        };
    }
    for p in 0..n_global {
        let _ = write!(y, "---\napiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {{name: gnp-{p}}}\nspec:\n");
        let _ = if p.is_multiple_of(2) {
            writeln!(
                y,
                "  tier: security\n  order: {p}\n  selector: all()\n  ingress:\n  - action: Deny\n    source: {{selector: quarantine == 'true'}}\n  - action: Pass"
            )
        } else {
            writeln!(
                y,
                "  order: {}\n  namespaceSelector: team == 'team-{}'\n  selector: app == 'app-{}'\n  ingress:\n  - action: Allow\n    protocol: TCP\n    source: {{namespaceSelector: all()}}\n    destination: {{ports: [443]}}",
                500 + p,
                p % 10,
                p % APPS
            )
        };
    }
    y
}

/// Run the benchmark and report.
pub fn run(cfg: &BenchConfig) -> BenchReport {
    let yaml = synthetic_policies(cfg);
    let t = Instant::now();
    let loaded = load_str(&yaml, "synthetic.yaml");
    let load_ms = t.elapsed().as_secs_f64() * 1000.0;
    let t = Instant::now();
    let engine = PolicyEngine::new(&loaded.policies);
    let build_ms = t.elapsed().as_secs_f64() * 1000.0;
    let uncached =
        PolicyEngine::with_options(&loaded.policies, EngineOptions { cache_capacity: 0 });

    let pods = synthetic_pods(cfg);
    if pods.is_empty() {
        return BenchReport {
            config: cfg.clone(),
            loaded_policies: loaded.policies.policies.len(),
            load_ms,
            build_ms,
            uncached_per_sec: 0.0,
            cached_per_sec: 0.0,
            cached_keyed_per_sec: 0.0,
            keys_ms: 0.0,
            cache_hit_rate: 0.0,
            cache_entries: 0,
            allowed_fraction: 0.0,
        };
    }
    let mut rng = Rng(cfg.seed | 1);
    let ports = [8080u16, 9050, 443, 30050, 8001, 53];
    let pool: Vec<(usize, usize, Protocol, u16)> = (0..cfg.distinct_flows.max(1))
        .map(|_| {
            let s = rng.below(pods.len());
            // Mostly same-namespace traffic, as in real clusters.
            let d = if rng.below(10) < 7 {
                let per_ns = cfg.pods.div_ceil(cfg.namespaces.max(1)).max(1);
                let base = (s / per_ns) * per_ns;
                (base + rng.below(per_ns)).min(pods.len().saturating_sub(1))
            } else {
                rng.below(pods.len())
            };
            let port = ports[rng.below(ports.len())];
            let proto = if port == 53 {
                Protocol::Udp
            } else {
                Protocol::Tcp
            };
            (s, d, proto, port)
        })
        .collect();

    let mut allowed = 0usize;
    let t = Instant::now();
    for i in 0..cfg.uncached_queries {
        let (s, d, proto, port) = pool[i % pool.len()];
        if uncached
            .evaluate_endpoints(&pods[s], &pods[d], Transport::new(proto, port))
            .allowed
        {
            allowed += 1;
        }
    }
    let uncached_secs = t.elapsed().as_secs_f64();

    // Warm the cache once over the pool, then time random draws from it.
    for &(s, d, proto, port) in &pool {
        engine.evaluate_endpoints(&pods[s], &pods[d], Transport::new(proto, port));
    }
    let warm = engine.cache_stats();
    let t = Instant::now();
    let mut checksum = 0usize;
    for _ in 0..cfg.cached_queries {
        let (s, d, proto, port) = pool[rng.below(pool.len())];
        checksum += usize::from(
            engine
                .evaluate_endpoints(&pods[s], &pods[d], Transport::new(proto, port))
                .allowed,
        );
    }
    let cached_secs = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let keys: Vec<_> = pods.iter().map(|p| engine.endpoint_key(p)).collect();
    let keys_ms = t.elapsed().as_secs_f64() * 1000.0;
    let t = Instant::now();
    for _ in 0..cfg.cached_queries {
        let (s, d, proto, port) = pool[rng.below(pool.len())];
        checksum += usize::from(
            engine
                .evaluate_keyed(
                    (&pods[s], keys[s]),
                    (&pods[d], keys[d]),
                    Transport::new(proto, port),
                )
                .allowed,
        );
    }
    let keyed_secs = t.elapsed().as_secs_f64();
    let stats = engine.cache_stats();
    let timed_hits = stats.hits - warm.hits;
    let timed_total = (stats.hits + stats.misses) - (warm.hits + warm.misses);
    std::hint::black_box(checksum);

    BenchReport {
        config: cfg.clone(),
        loaded_policies: loaded.policies.policies.len(),
        load_ms,
        build_ms,
        uncached_per_sec: cfg.uncached_queries as f64 / uncached_secs.max(1e-9),
        cached_per_sec: cfg.cached_queries as f64 / cached_secs.max(1e-9),
        cached_keyed_per_sec: cfg.cached_queries as f64 / keyed_secs.max(1e-9),
        keys_ms,
        cache_hit_rate: timed_hits as f64 / (timed_total.max(1)) as f64,
        cache_entries: stats.entries,
        allowed_fraction: allowed as f64 / cfg.uncached_queries.max(1) as f64,
    }
}
