//! Deciding flows: which named policy and rule allowed or denied them.
//!
//! Egress is judged at the source pod and ingress at the destination pod, each
//! through Calico's tier walk: tiers in order; inside a tier, policies that
//! select the endpoint in that direction, in order; the first matching
//! Allow/Deny rule decides, Pass jumps to the next tier, Log goes on. A tier
//! whose policies select the endpoint but decide nothing applies its default
//! action (Deny, reported as rule -1). With no selecting policy in any tier,
//! traffic is allowed (not isolated); passing beyond the last tier reaches the
//! pod's profile, which allows.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::cache::{extra_key, lock, CacheKey, CacheStats, EvalCache, IpClasses};
pub use crate::decision::{Evaluation, PendingDecision, Ruling, SideDecision, TraceStep};
use crate::endpoint::{Endpoint, FlowQuery, FlowRef, NetworkSet, Transport};
use crate::index::Compiled;
use crate::model::{Detail, Policy, PolicySet};
use crate::walk::{apply_staged, decide_both};

#[derive(Debug, Clone, Copy)]
pub struct EngineOptions {
    /// Cached evaluations kept before the cache is emptied; 0 disables caching.
    pub cache_capacity: usize,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            cache_capacity: 1 << 20,
        }
    }
}

/// Precomputed cache key of an endpoint; see `PolicyEngine::endpoint_key`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EndpointKey {
    fingerprint: u128,
    engine: u64,
}

static NEXT_ENGINE_ID: AtomicU64 = AtomicU64::new(1);

/// Evaluates flows against a fixed policy set. Build a new engine when the
/// policies change. Safe to share between threads.
pub struct PolicyEngine {
    id: u64,
    enforced: Compiled,
    pending: Option<Compiled>,
    classes: IpClasses,
    reads_source_ports: bool,
    network_sets: Vec<NetworkSet>,
    cache: Mutex<EvalCache<Evaluation>>,
}

impl PolicyEngine {
    pub fn new(set: &PolicySet) -> PolicyEngine {
        PolicyEngine::with_options(set, EngineOptions::default())
    }

    pub fn with_options(set: &PolicySet, options: EngineOptions) -> PolicyEngine {
        let enforced_list: Vec<Policy> = set
            .policies
            .iter()
            .filter(|p| !p.kind.is_staged())
            .cloned()
            .collect();
        let has_staged = set.policies.iter().any(|p| p.kind.is_staged());
        let pending = has_staged.then(|| Compiled::new(apply_staged(set), &set.tiers));
        let enforced = Compiled::new(enforced_list, &set.tiers);
        let mut cidrs = enforced.cidrs();
        if let Some(p) = &pending {
            cidrs.extend(p.cidrs());
        }
        // Which sets hold an address can change a decision: part of its cache class.
        for set in &set.network_sets {
            cidrs.extend(set.nets.iter().copied());
        }
        let reads_source_ports = enforced.reads_source_ports()
            || pending.as_ref().is_some_and(Compiled::reads_source_ports);
        PolicyEngine {
            id: NEXT_ENGINE_ID.fetch_add(1, Ordering::Relaxed),
            enforced,
            pending,
            classes: IpClasses::new(cidrs),
            reads_source_ports,
            network_sets: set.network_sets.clone(),
            cache: Mutex::new(EvalCache::new(options.cache_capacity)),
        }
    }

    /// Evaluate with the cache. Results are shared; clone if you need to own one.
    pub fn evaluate(&self, q: &FlowQuery) -> Arc<Evaluation> {
        self.evaluate_ref(q.view())
    }

    /// Like `evaluate`, for callers that keep their endpoints elsewhere.
    pub fn evaluate_endpoints(
        &self,
        source: &Endpoint,
        destination: &Endpoint,
        transport: Transport,
    ) -> Arc<Evaluation> {
        self.evaluate_ref(FlowRef::new(source, destination, transport))
    }

    /// The cache key of an endpoint for this engine. Flow pipelines that keep
    /// endpoints around can compute it once per endpoint change and use
    /// `evaluate_keyed`, which then never reads the endpoint on a cache hit.
    pub fn endpoint_key(&self, ep: &Endpoint) -> EndpointKey {
        EndpointKey {
            fingerprint: self.classes.fingerprint(ep),
            engine: self.id,
        }
    }

    /// `evaluate` with precomputed keys. A key made by another engine (the
    /// policies changed since) is recomputed, so stale keys cost time, not
    /// correctness; a key for an endpoint that changed afterwards is the
    /// caller's mistake and gives the old endpoint's answer.
    pub fn evaluate_keyed(
        &self,
        source: (&Endpoint, EndpointKey),
        destination: (&Endpoint, EndpointKey),
        transport: Transport,
    ) -> Arc<Evaluation> {
        let fp = |(ep, key): (&Endpoint, EndpointKey)| {
            if key.engine == self.id {
                key.fingerprint
            } else {
                self.classes.fingerprint(ep)
            }
        };
        let q = FlowRef::new(source.0, destination.0, transport);
        let key = (
            fp(source),
            fp(destination),
            transport.port,
            transport.protocol.number(),
            extra_key(&transport, self.reads_source_ports),
        );
        self.cached(key, q)
    }

    fn evaluate_ref(&self, q: FlowRef<'_>) -> Arc<Evaluation> {
        let transport = q.transport();
        let key = (
            self.classes.fingerprint(q.source),
            self.classes.fingerprint(q.destination),
            q.port,
            q.protocol.number(),
            extra_key(&transport, self.reads_source_ports),
        );
        self.cached(key, q)
    }

    fn cached(&self, key: CacheKey, q: FlowRef<'_>) -> Arc<Evaluation> {
        if let Some(hit) = lock(&self.cache).get(&key) {
            return hit;
        }
        let result = Arc::new(self.decide(&q, Detail(false)));
        lock(&self.cache).insert(key, Arc::clone(&result));
        result
    }

    /// Evaluate without the cache (and without filling it).
    pub fn evaluate_uncached(&self, q: &FlowQuery) -> Evaluation {
        self.decide(&q.view(), Detail(false))
    }

    /// Evaluate with a full trace for `policy explain`: every policy considered,
    /// including those that did not select the endpoint, and why each rule did
    /// not match. Slower; never cached.
    pub fn explain(&self, q: &FlowQuery) -> Evaluation {
        self.decide(&q.view(), Detail(true))
    }

    fn decide(&self, q: &FlowRef<'_>, d: Detail) -> Evaluation {
        let q = &FlowRef {
            network_sets: &self.network_sets,
            ..*q
        };
        let (egress, ingress) = decide_both(&self.enforced, q, d);
        let pending = self.pending.as_ref().map(|c| {
            let (egress, ingress) = decide_both(c, q, d);
            PendingDecision {
                allowed: egress.allowed && ingress.allowed,
                egress,
                ingress,
            }
        });
        Evaluation {
            allowed: egress.allowed && ingress.allowed,
            egress,
            ingress,
            pending,
        }
    }

    pub fn cache_stats(&self) -> CacheStats {
        lock(&self.cache).stats()
    }

    pub fn clear_cache(&self) {
        lock(&self.cache).clear();
    }

    /// The network set that names `ip` on records: of the sets holding it, the one with the
    /// longest matching prefix (then namespaced before global, then by name).
    pub fn network_set_of(&self, ip: &std::net::IpAddr) -> Option<&NetworkSet> {
        self.network_sets
            .iter()
            .filter_map(|s| s.longest_match(ip).map(|len| (len, s)))
            .max_by(|(a, x), (b, y)| {
                a.cmp(b)
                    .then_with(|| x.namespace.is_some().cmp(&y.namespace.is_some()))
                    .then_with(|| y.qualified_name().cmp(&x.qualified_name()))
            })
            .map(|(_, s)| s)
    }

    /// Enforced policies in evaluation order.
    pub fn policies(&self) -> &[Policy] {
        &self.enforced.policies
    }

    /// Tier names in evaluation order.
    pub fn tier_order(&self) -> Vec<String> {
        self.enforced.tiers.iter().map(|t| t.name.clone()).collect()
    }
}
