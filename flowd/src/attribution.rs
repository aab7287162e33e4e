//! The policy stage: which named policy and rule decide each flow, on any CNI, and how that
//! squares with what the kernel did (DENIED, DROPPED without a policy, NOT ENFORCED).

use std::{net::IpAddr, path::PathBuf, sync::Arc};

use tokio::sync::watch;

use crate::{
    enrich::{EndpointKind, EndpointMeta},
    flow::{FlowRecord, Outcome, Verdict},
    model::{PolicyVerdict, SideVerdict},
    pipeline::Stage,
    policy::{
        self, Endpoint, EndpointKey, EndpointResolver as _, Evaluation, PolicyEngine, Protocol,
        SideDecision, StaticPods, Transport,
    },
};

fn trace_line(step: &policy::TraceStep) -> String {
    match step {
        policy::TraceStep::Policy {
            policy,
            selected,
            rule,
            action,
            ..
        } => match (selected, rule, action) {
            (false, _, _) => format!("{policy}: not selected"),
            (true, Some(rule), Some(action)) => {
                format!("{policy}: rule {rule} matched, {action:?}")
            }
            (true, _, _) => format!("{policy}: no rule matched"),
        },
        policy::TraceStep::EndOfTier { tier, action } => {
            format!("end of tier {tier}: {action:?}")
        }
    }
}

fn side(decision: &SideDecision) -> SideVerdict {
    SideVerdict {
        allowed: decision.allowed,
        policy: decision.policy.clone(),
        rule: decision.rule,
        rule_name: decision.rule_name.clone(),
        ruling: decision.ruling,
        trace: decision.trace.iter().map(trace_line).collect(),
    }
}

pub fn verdict_of(evaluation: &Evaluation) -> PolicyVerdict {
    PolicyVerdict {
        egress: side(&evaluation.egress),
        ingress: side(&evaluation.ingress),
    }
}

/// What the kernel saw, reconciled with what the policies say.
pub fn reconcile(kernel: Verdict, outcome: Outcome, policy_allows: bool) -> Verdict {
    match (policy_allows, kernel) {
        (true, verdict) => verdict,
        (false, Verdict::Dropped) => Verdict::Denied,
        // Denied by policy, yet answered: whatever enforces policies let it through.
        (false, _) if outcome.got_through() => Verdict::NotEnforced,
        // No answer and no drop seen here: consistent with enforcement elsewhere on the path.
        (false, _) => Verdict::Denied,
    }
}

pub struct Attributor {
    /// Swapped whole when the policies change (files at start, the Kubernetes API later).
    engine: std::sync::RwLock<Arc<PolicyEngine>>,
    /// Policies from files, kept to be combined with those the API reports.
    file_policies: policy::PolicySet,
    /// What the engine was built from (files and API), for what-if checks that add to it.
    policy_set: std::sync::RwLock<Arc<policy::PolicySet>>,
    pods: StaticPods,
    /// Endpoints resolved once per (address, metadata entry), with their evaluation keys: the
    /// per-flow path is then a map lookup and a cached evaluation. A new metadata entry (a pod
    /// relabelled, an address reused) is a new key; the entry is held so its address is not
    /// reused while cached.
    endpoints: std::sync::Mutex<std::collections::HashMap<(IpAddr, usize), Arc<Resolved>>>,
    /// Verdicts by the cached evaluation they were made from: formatting a verdict (its action
    /// and trace) allocates, and most records repeat an evaluation. The evaluation is held so its
    /// address is not reused while cached.
    verdicts: std::sync::Mutex<VerdictCache>,
}

type VerdictCache = std::collections::HashMap<usize, (Arc<Evaluation>, Arc<PolicyVerdict>)>;

struct Resolved {
    endpoint: Endpoint,
    key: EndpointKey,
    _meta: Option<Arc<EndpointMeta>>,
    /// For an address no pod or node holds: the network set that names it on records.
    network_set: Option<Arc<EndpointMeta>>,
}

/// What records say of an address a network set holds.
fn network_set_meta(ip: IpAddr, set: &policy::NetworkSet) -> EndpointMeta {
    EndpointMeta {
        kind: EndpointKind::NetworkSet,
        namespace: set.namespace.clone().unwrap_or_default(),
        name: set.name.clone(),
        labels: Arc::new(set.labels.clone()),
        ..EndpointMeta::world(ip)
    }
}

/// The evaluator's view of an endpoint that metadata names as a pod.
fn endpoint_of(ip: IpAddr, meta: &EndpointMeta) -> Endpoint {
    if meta.kind == EndpointKind::Service {
        // A cluster IP not yet translated: a destination of Calico `services` matches.
        return Endpoint {
            services: meta.service_memberships.clone(),
            ..Endpoint::external(ip)
        };
    }
    if meta.kind == EndpointKind::Node {
        // Never policed as a pod; admin policies' `nodes` peers match it by its labels.
        return Endpoint {
            pod: Some(meta.name.clone()),
            labels: (*meta.labels).clone(),
            host: true,
            ..Endpoint::external(ip)
        };
    }
    let mut endpoint = Endpoint::pod(&meta.namespace, &meta.name, ip);
    endpoint.labels = (*meta.labels).clone();
    endpoint.namespace_labels = (*meta.namespace_labels).clone();
    endpoint.service_account =
        (!meta.service_account.is_empty()).then(|| meta.service_account.clone());
    endpoint.service_account_labels = (*meta.service_account_labels).clone();
    endpoint.named_ports = meta.named_ports.clone();
    endpoint.services = meta.service_memberships.clone();
    endpoint
}

/// Addresses remembered before the endpoint cache starts over (bounded memory).
const ENDPOINT_CACHE: usize = 1 << 16;

impl Attributor {
    /// Policies and pods from files; every problem is logged and the rest still loads.
    pub fn load(policy_files: &[PathBuf], metadata_files: &[PathBuf]) -> Self {
        let loaded = policy::load_paths(policy_files);
        for error in &loaded.errors {
            tracing::warn!(error = %error, "policy object skipped");
        }
        for warning in &loaded.warnings {
            tracing::info!(warning = %warning, "policy loading");
        }
        let pods = StaticPods::load_paths(metadata_files);
        for error in &pods.errors {
            tracing::warn!(error = %error, "pod object skipped for policy evaluation");
        }
        tracing::info!(policies = loaded.policies.policies.len(), "policies loaded");
        Self {
            engine: std::sync::RwLock::new(Arc::new(PolicyEngine::new(&loaded.policies))),
            policy_set: std::sync::RwLock::new(Arc::new(loaded.policies.clone())),
            file_policies: loaded.policies,
            pods: pods.pods,
            endpoints: std::sync::Mutex::new(std::collections::HashMap::new()),
            verdicts: std::sync::Mutex::new(VerdictCache::new()),
        }
    }

    /// The policies evaluated with now (files and API), as loaded.
    pub fn policy_set(&self) -> Arc<policy::PolicySet> {
        self.policy_set
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// The evaluator's view of a stored record's endpoint: the metadata files' pod at that
    /// address when there is one, else what the record says (namespace, name, labels; the
    /// namespace's name label, which the API server sets on every namespace), else an outside
    /// address.
    pub fn record_endpoint(&self, endpoint: &crate::proto::v1::Endpoint) -> Option<Endpoint> {
        let ip: IpAddr = endpoint.ip.parse().ok()?;
        if let Ok(known) = self.pods.resolve(&endpoint.ip) {
            // A pod, a node, or a cluster IP with its services: more than the record says.
            if known.is_named() {
                return Some(known);
            }
        }
        if endpoint.kind() != crate::proto::v1::EndpointKind::Pod {
            return Some(Endpoint::external(ip));
        }
        let mut pod = Endpoint::pod(&endpoint.namespace, &endpoint.name, ip);
        pod.labels = endpoint
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        pod.namespace_labels = [(
            "kubernetes.io/metadata.name".to_owned(),
            endpoint.namespace.clone(),
        )]
        .into();
        Some(pod)
    }

    /// The policies evaluated with now, for the policy board.
    pub fn loaded_policies(&self) -> Vec<crate::graph::LoadedPolicy> {
        self.engine()
            .policies()
            .iter()
            .map(|p| crate::graph::LoadedPolicy {
                reference: crate::flow::wire::policy_ref(&p.reference(), Some(0), None),
                text: p.text.to_string(),
                origin: p.origin.clone(),
            })
            .collect()
    }

    fn engine(&self) -> Arc<PolicyEngine> {
        // A poisoned lock still holds a complete engine: swaps replace it whole.
        self.engine
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Evaluates with the file policies plus `extra` (policies the Kubernetes API reports) from
    /// now on. Endpoint keys of the old engine are dropped with the cache.
    pub fn replace_api_policies(&self, extra: &policy::PolicySet) {
        let mut combined = self.file_policies.clone();
        combined.extend(extra.clone());
        let engine = Arc::new(PolicyEngine::new(&combined));
        *self
            .engine
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = engine;
        *self
            .policy_set
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(combined);
        if let Ok(mut cache) = self.endpoints.lock() {
            cache.clear();
        }
        if let Ok(mut cache) = self.verdicts.lock() {
            cache.clear();
        }
    }

    /// The verdict of `evaluation`, made once per cached evaluation.
    fn verdict(&self, evaluation: Arc<Evaluation>) -> Arc<PolicyVerdict> {
        let key = Arc::as_ptr(&evaluation) as usize;
        let Ok(mut cache) = self.verdicts.lock() else {
            return Arc::new(verdict_of(&evaluation));
        };
        if let Some((_, verdict)) = cache.get(&key) {
            return verdict.clone();
        }
        if cache.len() >= ENDPOINT_CACHE {
            cache.clear();
        }
        let verdict = Arc::new(verdict_of(&evaluation));
        cache.insert(key, (evaluation, verdict.clone()));
        verdict
    }

    fn endpoint(&self, ip: IpAddr, meta: Option<&Arc<EndpointMeta>>) -> Arc<Resolved> {
        let meta = meta.filter(|m| {
            matches!(
                m.kind,
                EndpointKind::Pod | EndpointKind::Node | EndpointKind::Service
            )
        });
        let cache_key = (ip, meta.map_or(0, |m| Arc::as_ptr(m) as usize));
        if let Some(known) = self
            .endpoints
            .lock()
            .ok()
            .and_then(|c| c.get(&cache_key).cloned())
        {
            return known;
        }
        let endpoint = match meta {
            Some(meta) => endpoint_of(ip, meta),
            None => self
                .pods
                .resolve(&ip.to_string())
                .unwrap_or_else(|_| Endpoint::external(ip)),
        };
        let engine = self.engine();
        let key = engine.endpoint_key(&endpoint);
        // Only an address that nothing else names: a pod from the files keeps its name.
        let network_set = if endpoint.is_named() {
            None
        } else {
            engine
                .network_set_of(&ip)
                .map(|set| Arc::new(network_set_meta(ip, set)))
        };
        let entry = Arc::new(Resolved {
            endpoint,
            key,
            _meta: meta.cloned(),
            network_set,
        });
        if let Ok(mut cache) = self.endpoints.lock() {
            if cache.len() >= ENDPOINT_CACHE {
                cache.clear();
            }
            cache.insert(cache_key, entry.clone());
        }
        entry
    }

    fn evaluate_resolved(
        &self,
        source: &Resolved,
        destination: &Resolved,
        transport: Transport,
    ) -> Arc<Evaluation> {
        self.engine().evaluate_keyed(
            (&source.endpoint, source.key),
            (&destination.endpoint, destination.key),
            transport,
        )
    }

    /// Decides a record with the metadata enrichment attached (any source: API, files, cgroup).
    pub fn attribute(&self, record: &mut FlowRecord) {
        let source = self.endpoint(record.source.ip, record.source_meta.as_ref());
        let destination = self.endpoint(record.destination.ip, record.destination_meta.as_ref());
        let transport = Transport::observed(
            Protocol::from_number(record.protocol),
            record.source.port,
            record.destination.port,
            record.icmp_type,
            record.icmp_code,
        );
        let evaluation = self.evaluate_resolved(&source, &destination, transport);
        let verdict = self.verdict(evaluation);
        record.verdict = reconcile(record.verdict, record.outcome, verdict.allowed());
        record.policy = Some(verdict);
        if let Some(set) = &source.network_set {
            record.source_meta = Some(set.clone());
        }
        if let Some(set) = &destination.network_set {
            record.destination_meta = Some(set.clone());
        }
    }
}

/// The policy stage: records in, the same records with their deciding policy and reconciled
/// verdict out. With `api_policies` (the Kubernetes source publishes there), evaluation uses the
/// files' policies plus the latest published set, from the first batch after it arrives.
pub struct Attribution {
    attributor: Arc<Attributor>,
    api_policies: Option<watch::Receiver<Arc<policy::PolicySet>>>,
}

impl Attribution {
    pub fn new(
        attributor: Arc<Attributor>,
        api_policies: Option<watch::Receiver<Arc<policy::PolicySet>>>,
    ) -> Self {
        Self {
            attributor,
            api_policies,
        }
    }

    fn take_published_policies(&mut self) {
        let Some(receiver) = self.api_policies.as_mut() else {
            return;
        };
        match receiver.has_changed() {
            Ok(true) => {
                let policies = receiver.borrow_and_update().clone();
                self.attributor.replace_api_policies(&policies);
            }
            Ok(false) => {}
            // The source is gone (shutting down); the current engine stays.
            Err(_) => self.api_policies = None,
        }
    }
}

impl Stage for Attribution {
    type Input = FlowRecord;
    type Output = FlowRecord;
    const NAME: &'static str = "policy";

    fn process(&mut self, mut records: Vec<FlowRecord>) -> Vec<FlowRecord> {
        self.take_published_policies();
        for record in &mut records {
            self.attributor.attribute(record);
        }
        records
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reconciliation_table() {
        use Outcome::*;
        use Verdict::*;
        let cases = [
            (Forwarded, Closed, true, Forwarded),
            (Dropped, Unanswered, true, Dropped),
            (Dropped, Unanswered, false, Denied),
            (Forwarded, Established, false, NotEnforced),
            (Forwarded, Answered, false, NotEnforced),
            (Forwarded, Unanswered, false, Denied),
            (Forwarded, RequestOnly, false, Denied),
        ];
        for (kernel, outcome, allows, expected) in cases {
            assert_eq!(
                reconcile(kernel, outcome, allows),
                expected,
                "{kernel:?} {outcome:?} {allows}"
            );
        }
    }

    /// The stage reads the record's source port and ICMP message, not only its destination port.
    #[test]
    fn source_ports_and_icmp_types_decide_records() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let pods = dir.path().join("pods.yaml");
        std::fs::write(
            &pods,
            "apiVersion: v1\nkind: Pod\nmetadata: {name: dns, namespace: default}\n\
             status: {podIP: 198.18.0.2}\n",
        )
        .expect("pod file");
        let attributor = Attributor::load(&[], &[pods]);
        let policies = crate::policy::load_str(
            "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\n\
             metadata: {name: only-some}\n\
             spec:\n  selector: all()\n  types: [Ingress]\n  ingress:\n\
             \x20\x20- {action: Allow, protocol: ICMP, icmp: {type: 8}}\n\
             \x20\x20- {action: Allow, protocol: UDP, source: {ports: ['40000:40099']}}\n",
            "test",
        );
        assert!(policies.errors.is_empty(), "{:?}", policies.errors);
        attributor.replace_api_policies(&policies.policies);
        let allowed = |record: FlowRecord| {
            let mut record = record;
            attributor.attribute(&mut record);
            record.policy.expect("a verdict").allowed()
        };
        assert!(allowed(FlowRecord::sample(40000)));
        assert!(!allowed(FlowRecord::sample(40100)));
        let ping = |icmp_type| {
            let mut record = FlowRecord::sample(0);
            record.protocol = 1;
            record.source.port = 0;
            record.destination.port = 0;
            record.icmp_type = icmp_type;
            record
        };
        assert!(allowed(ping(8)));
        assert!(!allowed(ping(13)));
    }

    /// An address no pod holds but a network set does is named by the most specific set, and
    /// rules select it by the set's labels.
    #[test]
    fn network_sets_name_outside_addresses_on_records() {
        let attributor = Attributor::load(&[], &[]);
        let loaded = crate::policy::load_str(
            "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkSet\n\
             metadata: {name: resolvers, labels: {role: dns}}\nspec: {nets: [198.18.0.0/24]}\n\
             ---\napiVersion: projectcalico.org/v3\nkind: NetworkSet\n\
             metadata: {name: edge, namespace: shop, labels: {role: edge}}\n\
             spec: {nets: [198.18.0.2/32]}\n",
            "test",
        );
        assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
        attributor.replace_api_policies(&loaded.policies);
        let mut record = FlowRecord::sample(40000);
        attributor.attribute(&mut record);
        let named = |meta: &Option<Arc<EndpointMeta>>| {
            meta.as_ref()
                .map(|m| (m.kind, m.namespace.clone(), m.name.clone()))
        };
        assert_eq!(
            named(&record.destination_meta),
            Some((EndpointKind::NetworkSet, "shop".into(), "edge".into())),
            "the /32 is more specific than the /24"
        );
        assert_eq!(
            named(&record.source_meta),
            Some((EndpointKind::NetworkSet, String::new(), "resolvers".into()))
        );
        let mut elsewhere = FlowRecord::sample(40000);
        elsewhere.destination.ip = "198.19.0.1".parse().unwrap();
        attributor.attribute(&mut elsewhere);
        assert_eq!(named(&elsewhere.destination_meta), None, "in no set");
    }

    /// Calico `services` rules: the service's endpoints on its endpoint ports, and its cluster IP
    /// on its own ports, as the metadata's Services and EndpointSlices say.
    #[test]
    fn service_rules_match_endpoints_and_cluster_ips_with_their_ports() {
        let mut index = crate::enrich::MetadataIndex::default();
        let mut report = crate::enrich::LoadReport::default();
        crate::enrich::parse_objects(
            std::path::Path::new("cluster.yaml"),
            "apiVersion: v1\nkind: Pod\nmetadata: {name: client, namespace: shop, labels: {app: client}}\n\
             status: {podIP: 198.18.0.1}\n---\n\
             apiVersion: v1\nkind: Pod\nmetadata: {name: web-0, namespace: shop, labels: {app: web}}\n\
             status: {podIP: 198.18.0.2}\n---\n\
             apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: shop}\n\
             spec: {clusterIP: 198.18.1.1, ports: [{port: 80, targetPort: 8080}]}\n---\n\
             apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n\
             metadata: {name: web-x, namespace: shop, labels: {kubernetes.io/service-name: web}}\n\
             endpoints: [{addresses: [198.18.0.2]}]\nports: [{port: 8080, protocol: TCP}]\n---\n\
             apiVersion: v1\nkind: Pod\nmetadata: {name: web-1, namespace: shop, labels: {app: web}}\n\
             status: {podIP: 198.18.0.3}\n---\n\
             apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n\
             metadata: {name: web-y, namespace: shop, labels: {kubernetes.io/service-name: web}}\n\
             endpoints: [{addresses: [198.18.0.3]}]\nports: [{port: 9090, protocol: TCP}]\n",
            &mut index,
            &mut report,
        );
        assert!(report.errors.is_empty(), "{:?}", report.errors);
        index.finish();
        let attributor = Attributor::load(&[], &[]);
        let loaded = crate::policy::load_str(
            "apiVersion: projectcalico.org/v3\nkind: NetworkPolicy\n\
             metadata: {name: client, namespace: shop}\n\
             spec:\n  selector: app == 'client'\n  types: [Egress]\n  egress:\n\
             \x20\x20- {action: Allow, protocol: TCP, destination: {services: {name: web}}}\n",
            "test",
        );
        assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
        attributor.replace_api_policies(&loaded.policies);
        let allowed = |destination: &str, port: u16| {
            let mut record = FlowRecord::sample(40000);
            record.protocol = 6;
            record.destination.ip = destination.parse().unwrap();
            record.destination.port = port;
            let now = std::time::SystemTime::now();
            record.source_meta = Some(index.lookup(record.source.ip, now));
            record.destination_meta = Some(index.lookup(record.destination.ip, now));
            attributor.attribute(&mut record);
            record.policy.expect("a verdict").egress.allowed
        };
        assert!(
            allowed("198.18.0.2", 8080),
            "an endpoint on its endpoint port"
        );
        assert!(!allowed("198.18.0.2", 80), "not the endpoint's port");
        assert!(
            allowed("198.18.1.1", 80),
            "the cluster IP on the service port"
        );
        assert!(!allowed("198.18.1.1", 8080), "not the service's port");
        assert!(!allowed("198.18.0.9", 8080), "not the service's");
        // Each endpoint on its own slice's ports, not on another slice's.
        assert!(allowed("198.18.0.3", 9090));
        assert!(!allowed("198.18.0.3", 8080));
        assert!(!allowed("198.18.0.2", 9090));
    }

    #[test]
    fn records_of_one_evaluation_share_a_verdict_until_the_policies_change() {
        let attributor = Attributor::load(&[], &[]);
        let decide = || {
            let mut record = FlowRecord::sample(40000);
            attributor.attribute(&mut record);
            record.policy.expect("a verdict")
        };
        let (first, second) = (decide(), decide());
        assert!(Arc::ptr_eq(&first, &second), "made once, shared");
        assert!(first.allowed(), "no policy selects anything");
        let deny_all = crate::policy::load_str(
            "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\n\
             metadata: {name: deny-all, namespace: default}\n\
             spec: {podSelector: {}, policyTypes: [Ingress, Egress]}\n",
            "test",
        );
        attributor.replace_api_policies(&deny_all.policies);
        let after = decide();
        assert!(
            !Arc::ptr_eq(&first, &after),
            "a new engine makes new verdicts"
        );
    }
}
