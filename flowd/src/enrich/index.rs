//! The metadata index: addresses to pods, nodes and services, answering "who was this address at
//! that time" (a pod IP reused by a new pod must not relabel older flows).

use super::workload::Owners;
use crate::model::{is_private, EndpointKind, EndpointMeta, Labels, Workload};
use flowd_policy::{Protocol, ServiceMembership};
use std::{
    collections::{BTreeMap, HashMap},
    net::IpAddr,
    sync::{Arc, LazyLock},
    time::SystemTime,
};

/// Addresses are looked up twice per flow: a fast hasher (randomly seeded, so crafted addresses
/// cannot collide on purpose) instead of SipHash.
type AddressMap<V> = foldhash::HashMap<IpAddr, V>;

#[derive(Clone, Debug)]
pub struct PodInfo {
    pub named_ports: Vec<flowd_policy::NamedPort>,
    pub uid: String,
    pub namespace: String,
    pub name: String,
    pub labels: BTreeMap<String, String>,
    /// The pod's controller as its owner references name it (a ReplicaSet, a StatefulSet...);
    /// `finish` follows it to the workload.
    pub owner: Option<Workload>,
    pub node: String,
    pub service_account: String,
    pub host_ip: Option<IpAddr>,
    pub ips: Vec<IpAddr>,
    /// When the pod started (from status.startTime or creation): flows before it are not its.
    pub since: Option<SystemTime>,
}

/// Pods that held one address, by start time (newest last). One tenant is the common case and
/// stays inline: a lookup then touches no second allocation.
#[derive(Clone, Debug)]
enum Tenants {
    One(Option<SystemTime>, Arc<EndpointMeta>),
    Many(Vec<(Option<SystemTime>, Arc<EndpointMeta>)>),
}

impl Tenants {
    fn push(&mut self, since: Option<SystemTime>, meta: Arc<EndpointMeta>) {
        match self {
            Self::One(first_since, first) => {
                let mut all = vec![(*first_since, first.clone()), (since, meta)];
                all.sort_by_key(|(since, _)| *since);
                *self = Self::Many(all);
            }
            Self::Many(all) => {
                all.push((since, meta));
                all.sort_by_key(|(since, _)| *since);
            }
        }
    }

    /// The newest tenant that had started by `at`, else the oldest one.
    fn at(&self, at: SystemTime) -> Option<&Arc<EndpointMeta>> {
        match self {
            Self::One(_, meta) => Some(meta),
            Self::Many(all) => all
                .iter()
                .rev()
                .find(|(since, _)| since.is_none_or(|since| since <= at))
                .or_else(|| all.first())
                .map(|(_, meta)| meta),
        }
    }
}

/// Everything unknown shares one of two entries: a lookup of a world address allocates nothing.
static WORLD_PRIVATE: LazyLock<Arc<EndpointMeta>> =
    LazyLock::new(|| Arc::new(EndpointMeta::world(IpAddr::from([10, 0, 0, 0]))));
static WORLD_PUBLIC: LazyLock<Arc<EndpointMeta>> =
    LazyLock::new(|| Arc::new(EndpointMeta::world(IpAddr::from([192, 0, 2, 0]))));

fn world(ip: IpAddr) -> Arc<EndpointMeta> {
    if is_private(ip) {
        WORLD_PRIVATE.clone()
    } else {
        WORLD_PUBLIC.clone()
    }
}

/// By (endpoint address, "namespace/service"): the ports its slices serve it on; `None` for a
/// slice without ports (every port).
type BackendPorts = HashMap<(IpAddr, String), Option<Vec<(Protocol, u16)>>>;

/// A pod's services with the ports they reach it on, over all its addresses (empty: any port).
fn backed(services: &[String], ips: &[IpAddr], ports: &BackendPorts) -> Vec<ServiceMembership> {
    services
        .iter()
        .map(|service| {
            let mut all = Vec::new();
            for ip in ips {
                match ports.get(&(*ip, service.clone())) {
                    Some(Some(these)) => {
                        for port in these {
                            if !all.contains(port) {
                                all.push(*port);
                            }
                        }
                    }
                    Some(None) => {
                        return ServiceMembership {
                            service: service.clone(),
                            ports: Vec::new(),
                        }
                    }
                    None => {}
                }
            }
            ServiceMembership {
                service: service.clone(),
                ports: all,
            }
        })
        .collect()
}

fn memberships(
    services: &[String],
    ports: &HashMap<String, Vec<(Protocol, u16)>>,
) -> Vec<ServiceMembership> {
    services
        .iter()
        .map(|service| ServiceMembership {
            service: service.clone(),
            ports: ports.get(service).cloned().unwrap_or_default(),
        })
        .collect()
}

#[derive(Default)]
pub struct MetadataIndex {
    pods: Vec<PodInfo>,
    owners: Owners,
    namespaces: HashMap<String, Labels>,
    /// Labels of service accounts by (namespace, name): Calico policies select by them.
    service_accounts: HashMap<(String, String), Labels>,
    services: HashMap<IpAddr, String>,
    backends: HashMap<IpAddr, Vec<String>>,
    /// By "namespace/name": the service's own ports (for its cluster IPs).
    service_ports: HashMap<String, Vec<(Protocol, u16)>>,
    /// By (endpoint address, service): the ports its slices serve it on there; `None`: a slice
    /// without ports (every port).
    backend_ports: BackendPorts,
    nodes: HashMap<IpAddr, (String, BTreeMap<String, String>)>,
    /// Built by `finish`: per address, pods by start time, newest last.
    by_ip: AddressMap<Tenants>,
    fixed: AddressMap<Arc<EndpointMeta>>,
    /// Pods already folded into `by_ip` by `finish`.
    pod_count: usize,
    /// Every pod by UID, host-network ones included, for the local (cgroup) source.
    by_uid: HashMap<String, Arc<EndpointMeta>>,
}

impl MetadataIndex {
    pub fn add_pod(&mut self, pod: PodInfo) {
        self.pods.push(pod);
    }

    /// A ReplicaSet or Job and its controller, so pods they made name the real workload.
    pub fn add_owner(&mut self, kind: &str, namespace: &str, name: &str, owner: Option<Workload>) {
        self.owners.add(kind, namespace, name, owner);
    }

    pub fn add_namespace(&mut self, name: &str, labels: BTreeMap<String, String>) {
        self.namespaces.insert(name.to_owned(), Arc::new(labels));
    }

    pub fn add_service_account(
        &mut self,
        namespace: &str,
        name: &str,
        labels: BTreeMap<String, String>,
    ) {
        self.service_accounts
            .insert((namespace.to_owned(), name.to_owned()), Arc::new(labels));
    }

    pub fn add_service(
        &mut self,
        namespace: &str,
        name: &str,
        ips: &[IpAddr],
        ports: &[(Protocol, u16)],
    ) {
        let name = format!("{namespace}/{name}");
        for ip in ips {
            self.services.insert(*ip, name.clone());
        }
        self.service_ports.insert(name, ports.to_vec());
    }

    /// One EndpointSlice: its addresses back `service` on `ports` (slices of one service add up).
    pub fn add_backends(
        &mut self,
        namespace: &str,
        service: &str,
        ips: &[IpAddr],
        ports: &[(Protocol, u16)],
    ) {
        let name = format!("{namespace}/{service}");
        for ip in ips {
            let entry = self.backends.entry(*ip).or_default();
            if !entry.contains(&name) {
                entry.push(name.clone());
            }
            let known = self
                .backend_ports
                .entry((*ip, name.clone()))
                .or_insert_with(|| Some(Vec::new()));
            match known {
                Some(known) if !ports.is_empty() => {
                    for port in ports {
                        if !known.contains(port) {
                            known.push(*port);
                        }
                    }
                }
                _ => *known = None,
            }
        }
    }

    pub fn add_node(&mut self, name: &str, labels: BTreeMap<String, String>, ips: &[IpAddr]) {
        for ip in ips {
            self.nodes.insert(*ip, (name.to_owned(), labels.clone()));
        }
    }

    pub fn pods(&self) -> usize {
        self.pods.len() + self.pod_count
    }

    /// Resolves cross-object links (namespace labels, services of each pod) into shared entries.
    /// The raw pods are consumed: each pod lives once, in its shared entry.
    pub fn finish(&mut self) {
        let pods = std::mem::take(&mut self.pods);
        self.pod_count = pods.len();
        let mut by_ip: AddressMap<Tenants> =
            AddressMap::with_capacity_and_hasher(pods.len(), Default::default());
        let mut by_uid = HashMap::new();
        let mut label_sets: std::collections::HashSet<Labels> = std::collections::HashSet::new();
        for pod in pods {
            let (ips, since, uid) = (pod.ips.clone(), pod.since, pod.uid.clone());
            let namespace_labels = self
                .namespaces
                .get(&pod.namespace)
                .cloned()
                .unwrap_or_default();
            let mut services: Vec<String> = pod
                .ips
                .iter()
                .flat_map(|ip| self.backends.get(ip).cloned().unwrap_or_default())
                .collect();
            services.sort();
            services.dedup();
            let service_memberships = backed(&services, &pod.ips, &self.backend_ports);
            let workload = self
                .owners
                .resolve(&pod.namespace, pod.owner.as_ref(), &pod.labels);
            let service_account_labels = self
                .service_accounts
                .get(&(pod.namespace.clone(), pod.service_account.clone()))
                .cloned()
                .unwrap_or_default();
            let meta = Arc::new(EndpointMeta {
                kind: EndpointKind::Pod,
                namespace: pod.namespace,
                name: pod.name,
                labels: match label_sets.get(&pod.labels) {
                    Some(shared) => shared.clone(),
                    None => {
                        let labels = Arc::new(pod.labels);
                        label_sets.insert(labels.clone());
                        labels
                    }
                },
                namespace_labels,
                workload,
                services,
                service_memberships,
                node: pod.node,
                service_account: pod.service_account,
                service_account_labels,
                named_ports: pod.named_ports,
            });
            if !uid.is_empty() {
                by_uid.insert(uid, meta.clone());
            }
            for ip in &ips {
                match by_ip.get_mut(ip) {
                    Some(tenants) => tenants.push(since, meta.clone()),
                    None => {
                        by_ip.insert(*ip, Tenants::One(since, meta.clone()));
                    }
                }
            }
        }
        let mut fixed = AddressMap::default();
        for (ip, (node, labels)) in &self.nodes {
            fixed.insert(
                *ip,
                Arc::new(EndpointMeta {
                    kind: EndpointKind::Node,
                    name: node.clone(),
                    labels: Arc::new(labels.clone()),
                    node: node.clone(),
                    ..EndpointMeta::world(*ip)
                }),
            );
        }
        for (ip, service) in &self.services {
            let (namespace, name) = service.split_once('/').unwrap_or(("", service));
            fixed.insert(
                *ip,
                Arc::new(EndpointMeta {
                    kind: EndpointKind::Service,
                    namespace: namespace.to_owned(),
                    name: name.to_owned(),
                    namespace_labels: self.namespaces.get(namespace).cloned().unwrap_or_default(),
                    services: vec![service.clone()],
                    service_memberships: memberships(
                        std::slice::from_ref(service),
                        &self.service_ports,
                    ),
                    ..EndpointMeta::world(*ip)
                }),
            );
        }
        self.by_ip = by_ip;
        self.by_uid = by_uid;
        self.fixed = fixed;
    }

    /// Who `ip` was at `at`: the newest pod that had started by then, else a node, a service, or
    /// the world (private or public).
    pub fn lookup(&self, ip: IpAddr, at: SystemTime) -> Arc<EndpointMeta> {
        self.find(ip, at).cloned().unwrap_or_else(|| world(ip))
    }

    /// `lookup` for a batch, answers in query order. Every entry is found and its reference count
    /// read before any is taken: taking one is a locked instruction, which on a big index would
    /// otherwise wait out each cache miss in turn instead of letting them overlap.
    pub fn lookup_many(&self, queries: &[(IpAddr, SystemTime)]) -> Vec<Arc<EndpointMeta>> {
        let found: Vec<Option<&Arc<EndpointMeta>>> = queries
            .iter()
            .map(|&(ip, at)| {
                let meta = self.find(ip, at);
                if let Some(meta) = meta {
                    std::hint::black_box(Arc::strong_count(meta));
                }
                meta
            })
            .collect();
        found
            .into_iter()
            .zip(queries)
            .map(|(meta, &(ip, _))| meta.cloned().unwrap_or_else(|| world(ip)))
            .collect()
    }

    fn find(&self, ip: IpAddr, at: SystemTime) -> Option<&Arc<EndpointMeta>> {
        self.by_ip
            .get(&ip)
            .and_then(|tenants| tenants.at(at))
            .or_else(|| self.fixed.get(&ip))
    }

    /// The pod with this UID (the local source finds it from a socket's cgroup).
    pub fn pod_by_uid(&self, uid: &str) -> Option<Arc<EndpointMeta>> {
        self.by_uid.get(uid).cloned()
    }
}

#[cfg(test)]
mod tests;
