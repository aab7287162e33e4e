//! Resolving "NS/POD" or "IP" text to endpoints, from Pod and Namespace objects
//! (as `kubectl get pods,namespaces -A -o yaml` prints them).

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::path::PathBuf;
use std::str::FromStr;

use serde_json::Value;

use crate::endpoint::{Endpoint, NamedPort, Protocol};
use crate::error::{FieldError, LoadError};
use crate::load::{expand_paths, object_label, objects, parse_documents, read_file};
use crate::value::{with_field, with_list, Node, Path};

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
}

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
        for obj in objects(&docs) {
            let label = object_label(obj.value, &obj.locator);
            let kind = obj.value.get("kind").and_then(Value::as_str).unwrap_or("");
            let res = match kind {
                "Pod" => parse_pod(obj.value).map(|ep| self.add_pod(ep)),
                "Namespace" => parse_namespace(obj.value)
                    .map(|(name, labels)| self.add_namespace(&name, labels)),
                _ => {
                    warnings.push(format!("{source}: skipped {label}: not a Pod or Namespace"));
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

    /// Extra addresses of a dual-stack pod.
    pub fn add_pod_ip(&mut self, namespace: &str, pod: &str, ip: IpAddr) {
        self.by_ip
            .entry(ip)
            .or_insert_with(|| (namespace.to_string(), pod.to_string()));
    }

    pub fn add_namespace(&mut self, name: &str, labels: BTreeMap<String, String>) {
        self.namespaces.insert(name.to_string(), labels);
    }

    pub fn get(&self, namespace: &str, pod: &str) -> Option<Endpoint> {
        self.pods
            .get(&(namespace.to_string(), pod.to_string()))
            .map(|ep| self.with_namespace_labels(ep.clone()))
    }

    /// All pods, with namespace labels filled in, sorted by namespace and name.
    pub fn endpoints(&self) -> Vec<Endpoint> {
        self.pods
            .values()
            .map(|ep| self.with_namespace_labels(ep.clone()))
            .collect()
    }

    pub fn len(&self) -> usize {
        self.pods.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pods.is_empty()
    }

    fn with_namespace_labels(&self, mut ep: Endpoint) -> Endpoint {
        if let Some(ns) = &ep.namespace {
            if let Some(labels) = self.namespaces.get(ns) {
                ep.namespace_labels = labels.clone();
            }
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
                ep.ip = ip;
                Ok(ep)
            }
            None => Ok(Endpoint::external(ip)),
        }
    }
}

fn parse_namespace(v: &Value) -> Result<(String, BTreeMap<String, String>), FieldError> {
    let root_path = Path::root();
    let root = Node::new(v, &root_path);
    with_field(root, "metadata", |m| {
        let m = m.ok_or_else(|| FieldError::new("metadata", "metadata is missing"))?;
        let name = m
            .opt_str("name")?
            .ok_or_else(|| FieldError::new("metadata.name", "name is missing"))?;
        Ok((
            name.to_string(),
            m.opt_string_map("labels")?.unwrap_or_default(),
        ))
    })
}

fn parse_pod(v: &Value) -> Result<Endpoint, FieldError> {
    let root_path = Path::root();
    let root = Node::new(v, &root_path);
    let (name, namespace, labels) = with_field(root, "metadata", |m| {
        let m = m.ok_or_else(|| FieldError::new("metadata", "metadata is missing"))?;
        let name = m
            .opt_str("name")?
            .ok_or_else(|| FieldError::new("metadata.name", "name is missing"))?;
        Ok((
            name.to_string(),
            m.opt_str("namespace")?.unwrap_or("default").to_string(),
            m.opt_string_map("labels")?.unwrap_or_default(),
        ))
    })?;
    let (service_account, host, named_ports) = with_field(root, "spec", |spec| {
        let Some(spec) = spec else {
            return Ok((Some("default".to_string()), false, Vec::new()));
        };
        let sa = spec
            .opt_str("serviceAccountName")?
            .or(spec.opt_str("serviceAccount")?)
            .unwrap_or("default")
            .to_string();
        let host = matches!(spec.raw("hostNetwork")?, Some(Value::Bool(true)));
        let ports = with_list(spec, "containers", |_, c| {
            with_list(c, "ports", |_, p| parse_container_port(p)).map(|o| o.unwrap_or_default())
        })?
        .unwrap_or_default()
        .into_iter()
        .flatten()
        .flatten()
        .collect();
        Ok((Some(sa), host, ports))
    })?;
    let ip = with_field(root, "status", |status| {
        let Some(status) = status else {
            return Ok(None);
        };
        if let Some(ip) = status.opt_str("podIP")? {
            return parse_ip(ip, &format!("{}.podIP", status.path())).map(Some);
        }
        let ips = with_list(status, "podIPs", |_, p| match p.opt_str("ip")? {
            Some(ip) => parse_ip(ip, p.path()).map(Some),
            None => Ok(None),
        })?;
        Ok(ips.and_then(|v| v.into_iter().flatten().next()))
    })?;
    let mut ep = Endpoint::pod(
        &namespace,
        &name,
        ip.unwrap_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED)),
    );
    ep.labels = labels;
    ep.service_account = service_account;
    ep.host = host;
    ep.named_ports = named_ports;
    Ok(ep)
}

fn parse_ip(s: &str, path: &str) -> Result<IpAddr, FieldError> {
    IpAddr::from_str(s.trim())
        .map_err(|_| FieldError::new(path, format!("\"{s}\" is not an IP address")))
}

/// Only named ports matter to policy; unnamed ones are skipped.
fn parse_container_port(p: Node<'_>) -> Result<Option<NamedPort>, FieldError> {
    let Some(name) = p.opt_str("name")? else {
        return Ok(None);
    };
    let port = match p.raw("containerPort")? {
        Some(Value::Number(n)) => n
            .as_u64()
            .and_then(|v| u16::try_from(v).ok())
            .filter(|v| *v > 0)
            .ok_or_else(|| {
                FieldError::new(
                    format!("{}.containerPort", p.path()),
                    format!("port {n} is outside 1-65535"),
                )
            })?,
        _ => {
            return Err(FieldError::new(
                format!("{}.containerPort", p.path()),
                "containerPort must be a number",
            ))
        }
    };
    let protocol = match p.opt_str("protocol")? {
        None => Protocol::Tcp,
        Some(s) => Protocol::parse(s).ok_or_else(|| {
            FieldError::new(
                format!("{}.protocol", p.path()),
                format!("unknown protocol \"{s}\""),
            )
        })?,
    };
    Ok(Some(NamedPort {
        name: name.to_string(),
        port,
        protocol,
    }))
}
