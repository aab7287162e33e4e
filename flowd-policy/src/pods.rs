//! Resolving "NS/POD" or "IP" text to endpoints, from Pod, Namespace and ServiceAccount
//! objects (as `kubectl get pods,namespaces,serviceaccounts -A -o yaml` prints them).

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::path::PathBuf;
use std::str::FromStr;

use serde_json::Value;

use crate::endpoint::{Endpoint, ServiceMembership};
use crate::error::LoadError;
use crate::load::{expand_paths, object_label, objects, parse_documents, read_file};
use crate::objects::{
    parse_endpoint_slice, parse_metadata, parse_namespace, parse_node, parse_pod, parse_service,
    PodObject,
};

/// Turns the text of a flow's side into an endpoint.
pub trait EndpointResolver {
    fn resolve(&self, text: &str) -> Result<Endpoint, String>;
}

/// Pods and namespaces known up front. Addresses that are no pod's resolve to
/// external endpoints.
#[derive(Debug, Clone, Default)]
pub struct StaticPods {
    pods: BTreeMap<(String, String), Endpoint>,
    by_ip: HashMap<IpAddr, (String, String)>,
    namespaces: BTreeMap<String, BTreeMap<String, String>>,
    /// Labels of service accounts by (namespace, name).
    service_accounts: BTreeMap<(String, String), BTreeMap<String, String>>,
    /// Services by cluster IP, and the services each endpoint address backs, with ports.
    cluster_ips: HashMap<IpAddr, ServiceMembership>,
    backends: HashMap<IpAddr, Vec<ServiceMembership>>,
    /// Node addresses: host endpoints with the node's labels (admin policies' `nodes` peers).
    nodes: HashMap<IpAddr, (String, BTreeMap<String, String>)>,
}

/// The kinds `StaticPods` reads, for messages.
pub const POD_KINDS: &str = "Pod, Namespace, ServiceAccount, Service, EndpointSlice, Node";

/// Result of loading pods: the rest loads when one object is bad.
#[derive(Debug, Default)]
pub struct PodsLoad {
    pub pods: StaticPods,
    pub errors: Vec<LoadError>,
    pub warnings: Vec<String>,
}

impl StaticPods {
    pub fn new() -> StaticPods {
        StaticPods::default()
    }

    /// Load Pod, Namespace and List objects from YAML or JSON text.
    pub fn load_str(text: &str, source: &str) -> PodsLoad {
        let mut out = PodsLoad::default();
        out.pods
            .add_text(text, source, &mut out.errors, &mut out.warnings);
        out
    }

    /// Load files and directories (*.yaml, *.yml, *.json, not recursive).
    pub fn load_paths(paths: &[PathBuf]) -> PodsLoad {
        let mut out = PodsLoad::default();
        for file in expand_paths(paths, &mut out.errors) {
            match read_file(&file) {
                Ok((name, text)) => {
                    out.pods
                        .add_text(&text, &name, &mut out.errors, &mut out.warnings)
                }
                Err(err) => out.errors.push(err),
            }
        }
        out
    }

    fn add_text(
        &mut self,
        text: &str,
        source: &str,
        errors: &mut Vec<LoadError>,
        warnings: &mut Vec<String>,
    ) {
        let (docs, errs) = parse_documents(text, source);
        errors.extend(errs);
        // A cluster dump holds many other kinds: one line per kind, not per object.
        let mut unread: BTreeMap<String, usize> = BTreeMap::new();
        for obj in objects(&docs) {
            let label = object_label(obj.value, &obj.locator);
            let kind = obj.value.get("kind").and_then(Value::as_str).unwrap_or("");
            let res = match kind {
                "Pod" => parse_pod(obj.value).map(|pod| self.add_pod_object(pod)),
                "Namespace" => parse_namespace(obj.value)
                    .map(|namespace| self.add_namespace(&namespace.name, namespace.labels)),
                "ServiceAccount" => parse_metadata(obj.value)
                    .map(|meta| self.add_service_account(&meta.namespace, &meta.name, meta.labels)),
                "Service" => parse_service(obj.value).map(|service| {
                    let membership = ServiceMembership {
                        service: format!("{}/{}", service.meta.namespace, service.meta.name),
                        ports: service.ports,
                    };
                    for ip in service.cluster_ips {
                        self.cluster_ips.insert(ip, membership.clone());
                    }
                }),
                "Node" => parse_node(obj.value).map(|node| {
                    for ip in node.addresses {
                        self.nodes
                            .insert(ip, (node.meta.name.clone(), node.meta.labels.clone()));
                    }
                }),
                "EndpointSlice" => parse_endpoint_slice(obj.value).map(|slice| {
                    let service = format!("{}/{}", slice.meta.namespace, slice.service);
                    for ip in slice.addresses {
                        let known = self.backends.entry(ip).or_default();
                        match known.iter_mut().find(|m| m.service == service) {
                            // No ports on a slice means every port, as the agent's index has it.
                            Some(m) if m.ports.is_empty() || slice.ports.is_empty() => {
                                m.ports.clear()
                            }
                            Some(m) => {
                                for port in &slice.ports {
                                    if !m.ports.contains(port) {
                                        m.ports.push(*port);
                                    }
                                }
                            }
                            None => known.push(ServiceMembership {
                                service: service.clone(),
                                ports: slice.ports.clone(),
                            }),
                        }
                    }
                }),
                _ => {
                    let kind = if kind.is_empty() { "(no kind)" } else { kind };
                    *unread.entry(kind.to_string()).or_default() += 1;
                    Ok(())
                }
            };
            if let Err(e) = res {
                errors.push(LoadError::Invalid {
                    file: source.to_string(),
                    object: label,
                    field: e.path,
                    message: e.message,
                });
            }
        }
        for (kind, count) in unread {
            warnings.push(format!(
                "{source}: {count} object(s) of kind {kind} not read (endpoints come from {POD_KINDS})"
            ));
        }
    }

    /// Add (or replace) a pod; its namespace labels come from `add_namespace`.
    pub fn add_pod(&mut self, ep: Endpoint) {
        let key = (
            ep.namespace.clone().unwrap_or_default(),
            ep.pod.clone().unwrap_or_default(),
        );
        if !ep.ip.is_unspecified() {
            self.by_ip.entry(ep.ip).or_insert_with(|| key.clone());
        }
        self.pods.insert(key, ep);
    }

    /// A pod as read from its object, reachable at each of its addresses.
    pub fn add_pod_object(&mut self, pod: PodObject) {
        let mut endpoint = Endpoint::pod(
            &pod.meta.namespace,
            &pod.meta.name,
            pod.ips
                .first()
                .copied()
                .unwrap_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED)),
        );
        endpoint.labels = pod.meta.labels;
        endpoint.service_account = Some(pod.service_account);
        endpoint.host = pod.host_network;
        endpoint.named_ports = pod.named_ports;
        self.add_pod(endpoint);
        for ip in pod.ips.iter().skip(1) {
            self.add_pod_ip(&pod.meta.namespace, &pod.meta.name, *ip);
        }
    }

    /// Extra addresses of a dual-stack pod.
    pub fn add_pod_ip(&mut self, namespace: &str, pod: &str, ip: IpAddr) {
        self.by_ip
            .entry(ip)
            .or_insert_with(|| (namespace.to_string(), pod.to_string()));
    }

    pub fn add_namespace(&mut self, name: &str, labels: BTreeMap<String, String>) {
        self.namespaces.insert(name.to_string(), labels);
    }

    /// A service account's labels, for the pods of its namespace that run as it.
    pub fn add_service_account(
        &mut self,
        namespace: &str,
        name: &str,
        labels: BTreeMap<String, String>,
    ) {
        self.service_accounts
            .insert((namespace.to_string(), name.to_string()), labels);
    }

    pub fn get(&self, namespace: &str, pod: &str) -> Option<Endpoint> {
        self.pods
            .get(&(namespace.to_string(), pod.to_string()))
            .map(|ep| self.completed(ep.clone()))
    }

    /// All pods, with namespace labels filled in, sorted by namespace and name.
    pub fn endpoints(&self) -> Vec<Endpoint> {
        self.pods
            .values()
            .map(|ep| self.completed(ep.clone()))
            .collect()
    }

    pub fn len(&self) -> usize {
        self.pods.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pods.is_empty()
    }

    /// The pod with what other objects say about it: namespace and service-account labels.
    fn completed(&self, mut ep: Endpoint) -> Endpoint {
        if let Some(ns) = &ep.namespace {
            if let Some(labels) = self.namespaces.get(ns) {
                ep.namespace_labels = labels.clone();
            }
            if let Some(sa) = &ep.service_account {
                if let Some(labels) = self.service_accounts.get(&(ns.clone(), sa.clone())) {
                    ep.service_account_labels = labels.clone();
                }
            }
        }
        if let Some(services) = self.backends.get(&ep.ip) {
            ep.services = services.clone();
        }
        ep
    }
}

impl EndpointResolver for StaticPods {
    fn resolve(&self, text: &str) -> Result<Endpoint, String> {
        let t = text.trim();
        if let Some((ns, pod)) = t.split_once('/') {
            return self
                .get(ns, pod)
                .ok_or_else(|| format!("unknown pod \"{t}\""));
        }
        let ip = IpAddr::from_str(t)
            .map_err(|_| format!("\"{t}\" is neither NAMESPACE/POD nor an IP address"))?;
        match self.by_ip.get(&ip).and_then(|(ns, p)| self.get(ns, p)) {
            Some(mut ep) => {
                // A dual-stack pod asked for by its other address backs services there.
                ep.ip = ip;
                ep.services = self.backends.get(&ip).cloned().unwrap_or_default();
                Ok(ep)
            }
            None => {
                if let Some((name, labels)) = self.nodes.get(&ip) {
                    return Ok(Endpoint {
                        pod: Some(name.clone()),
                        labels: labels.clone(),
                        host: true,
                        ..Endpoint::external(ip)
                    });
                }
                let mut outside = Endpoint::external(ip);
                if let Some(service) = self.cluster_ips.get(&ip) {
                    outside.services = vec![service.clone()];
                }
                Ok(outside)
            }
        }
    }
}
