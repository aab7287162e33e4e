//! Pod, Namespace, Service, EndpointSlice and Node objects as `kubectl get -o yaml|json` prints them (and as the API's watch
//! events carry them), read once for everything flowd does with them: the agent's metadata
//! index and the policy evaluator's endpoints. Defaults are the API server's: a pod without a
//! namespace is in `default` and runs as service account `default`.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::str::FromStr;

use serde_json::Value;

use crate::endpoint::{NamedPort, Protocol};
use crate::error::FieldError;
use crate::value::{with_field, with_list, Node, Path};

/// What flowd reads of any object's metadata.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ObjectMeta {
    pub name: String,
    /// `default` when absent, as the API server fills it in; meaningless for cluster-scoped
    /// kinds.
    pub namespace: String,
    pub uid: String,
    pub labels: BTreeMap<String, String>,
    /// The owner that manages the object: the reference marked controller, else the first.
    pub controller: Option<OwnerRef>,
    /// `metadata.creationTimestamp` as written (RFC 3339).
    pub created: Option<String>,
}

/// What flowd reads of a Pod.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PodObject {
    pub meta: ObjectMeta,
    pub node: String,
    pub service_account: String,
    pub host_network: bool,
    /// Only named container ports: those are what policies can refer to.
    pub named_ports: Vec<NamedPort>,
    /// `status.podIP` first, then the other `status.podIPs`.
    pub ips: Vec<IpAddr>,
    pub host_ip: Option<IpAddr>,
    /// `status.startTime` as written (RFC 3339).
    pub started: Option<String>,
}

/// An owner reference: the kind and name of the object that manages another.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnerRef {
    pub kind: String,
    pub name: String,
}

/// What flowd reads of a Namespace.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct NamespaceObject {
    pub name: String,
    pub labels: BTreeMap<String, String>,
}

/// `metadata.name`, which every object must have.
fn required_name<'a>(metadata: &Node<'a>) -> Result<&'a str, FieldError> {
    metadata
        .opt_str("name")?
        .ok_or_else(|| FieldError::new("metadata.name", "name is missing"))
}

/// The metadata of any object; `metadata.name` is required.
pub fn parse_metadata(value: &Value) -> Result<ObjectMeta, FieldError> {
    let root_path = Path::root();
    let root = Node::new(value, &root_path);
    with_field(root, "metadata", |m| {
        let m = m.ok_or_else(|| FieldError::new("metadata", "metadata is missing"))?;
        Ok(ObjectMeta {
            name: required_name(&m)?.to_string(),
            namespace: m.opt_str("namespace")?.unwrap_or("default").to_string(),
            uid: m.opt_str("uid")?.unwrap_or_default().to_string(),
            labels: m.opt_string_map("labels")?.unwrap_or_default(),
            controller: controller(&m)?,
            created: m.opt_str("creationTimestamp")?.map(str::to_string),
        })
    })
}

pub fn parse_namespace(value: &Value) -> Result<NamespaceObject, FieldError> {
    let meta = parse_metadata(value)?;
    Ok(NamespaceObject {
        name: meta.name,
        labels: meta.labels,
    })
}

pub fn parse_pod(value: &Value) -> Result<PodObject, FieldError> {
    let mut pod = PodObject {
        meta: parse_metadata(value)?,
        ..PodObject::default()
    };
    let root_path = Path::root();
    let root = Node::new(value, &root_path);
    with_field(root, "spec", |spec| {
        let Some(spec) = spec else {
            pod.service_account = "default".to_string();
            return Ok(());
        };
        pod.service_account = spec
            .opt_str("serviceAccountName")?
            .or(spec.opt_str("serviceAccount")?)
            .unwrap_or("default")
            .to_string();
        pod.node = spec.opt_str("nodeName")?.unwrap_or_default().to_string();
        pod.host_network = matches!(spec.raw("hostNetwork")?, Some(Value::Bool(true)));
        pod.named_ports = with_list(spec, "containers", |_, c| {
            with_list(c, "ports", |_, p| parse_container_port(p)).map(|o| o.unwrap_or_default())
        })?
        .unwrap_or_default()
        .into_iter()
        .flatten()
        .flatten()
        .collect();
        Ok(())
    })?;
    with_field(root, "status", |status| {
        let Some(status) = status else {
            return Ok(());
        };
        if let Some(ip) = status.opt_str("podIP")? {
            pod.ips
                .push(parse_ip(ip, &format!("{}.podIP", status.path()))?);
        }
        let listed = with_list(status, "podIPs", |_, p| match p.opt_str("ip")? {
            Some(ip) => parse_ip(ip, p.path()).map(Some),
            None => Ok(None),
        })?;
        for ip in listed.unwrap_or_default().into_iter().flatten() {
            if !pod.ips.contains(&ip) {
                pod.ips.push(ip);
            }
        }
        if let Some(ip) = status.opt_str("hostIP")? {
            pod.host_ip = Some(parse_ip(ip, &format!("{}.hostIP", status.path()))?);
        }
        pod.started = status.opt_str("startTime")?.map(str::to_string);
        Ok(())
    })?;
    Ok(pod)
}

fn controller(metadata: &Node<'_>) -> Result<Option<OwnerRef>, FieldError> {
    let owners = with_list(*metadata, "ownerReferences", |_, owner| {
        let field = |key: &str| -> Result<String, FieldError> {
            owner
                .opt_str(key)?
                .map(str::to_string)
                .ok_or_else(|| owner.err(format!("{key} is missing")))
        };
        let is_controller = matches!(owner.raw("controller")?, Some(Value::Bool(true)));
        Ok((
            is_controller,
            OwnerRef {
                kind: field("kind")?,
                name: field("name")?,
            },
        ))
    })?
    .unwrap_or_default();
    let chosen = owners
        .iter()
        .position(|(is_controller, _)| *is_controller)
        .unwrap_or(0);
    Ok(owners.into_iter().nth(chosen).map(|(_, owner)| owner))
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

/// What flowd reads of a Service: its cluster IPs and its own ports.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ServiceObject {
    pub meta: ObjectMeta,
    /// `spec.clusterIPs`, then `spec.clusterIP` when not among them.
    pub cluster_ips: Vec<IpAddr>,
    pub ports: Vec<(Protocol, u16)>,
}

/// What flowd reads of an EndpointSlice: the service it belongs to, its addresses and ports.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct EndpointSliceObject {
    pub meta: ObjectMeta,
    /// The `kubernetes.io/service-name` label.
    pub service: String,
    pub addresses: Vec<IpAddr>,
    /// Empty when the slice lists none (every port).
    pub ports: Vec<(Protocol, u16)>,
}

/// What flowd reads of a Node: its internal and external addresses.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct NodeObject {
    pub meta: ObjectMeta,
    pub addresses: Vec<IpAddr>,
}

#[derive(Debug, Default, serde::Deserialize)]
struct ServiceSpec {
    #[serde(default, rename = "clusterIP")]
    cluster_ip: Option<String>,
    #[serde(default, rename = "clusterIPs")]
    cluster_ips: Vec<String>,
    #[serde(default)]
    ports: Vec<PortSpec>,
}

/// A Service's or an EndpointSlice's port: the number and protocol (TCP when absent).
#[derive(Debug, serde::Deserialize)]
struct PortSpec {
    #[serde(default)]
    port: Option<u16>,
    #[serde(default)]
    protocol: Option<String>,
}

#[derive(Debug, serde::Deserialize)]
struct SliceEndpoint {
    #[serde(default)]
    addresses: Vec<String>,
}

#[derive(Debug, Default, serde::Deserialize)]
struct NodeStatus {
    #[serde(default)]
    addresses: Vec<NodeAddress>,
}

#[derive(Debug, serde::Deserialize)]
struct NodeAddress {
    #[serde(rename = "type")]
    kind: String,
    address: String,
}

/// Section `key` typed as `T`; absent or null reads as the type's default.
fn section<T: serde::de::DeserializeOwned + Default>(
    value: &Value,
    key: &str,
) -> Result<T, FieldError> {
    match value.get(key) {
        None | Some(Value::Null) => Ok(T::default()),
        Some(section) => serde_json::from_value(section.clone())
            .map_err(|err| FieldError::new(key, err.to_string())),
    }
}

fn port_pairs(ports: &[PortSpec]) -> Vec<(Protocol, u16)> {
    ports
        .iter()
        .filter_map(|p| {
            let protocol = match p.protocol.as_deref() {
                None => Protocol::Tcp,
                Some(name) => Protocol::parse(name)?,
            };
            Some((protocol, p.port?))
        })
        .collect()
}

fn addresses<'a>(texts: impl IntoIterator<Item = &'a String>) -> Vec<IpAddr> {
    texts.into_iter().filter_map(|t| t.parse().ok()).collect()
}

pub fn parse_service(value: &Value) -> Result<ServiceObject, FieldError> {
    let meta = parse_metadata(value)?;
    let spec: ServiceSpec = section(value, "spec")?;
    let mut cluster_ips = addresses(&spec.cluster_ips);
    if let Some(ip) = spec.cluster_ip.as_deref().and_then(|t| t.parse().ok()) {
        if !cluster_ips.contains(&ip) {
            cluster_ips.push(ip);
        }
    }
    Ok(ServiceObject {
        meta,
        cluster_ips,
        ports: port_pairs(&spec.ports),
    })
}

pub fn parse_endpoint_slice(value: &Value) -> Result<EndpointSliceObject, FieldError> {
    let meta = parse_metadata(value)?;
    let Some(service) = meta.labels.get("kubernetes.io/service-name").cloned() else {
        return Err(FieldError::new(
            "metadata.labels",
            "kubernetes.io/service-name is missing",
        ));
    };
    let endpoints: Vec<SliceEndpoint> = section(value, "endpoints")?;
    let ports: Vec<PortSpec> = section(value, "ports")?;
    Ok(EndpointSliceObject {
        meta,
        service,
        addresses: addresses(endpoints.iter().flat_map(|e| &e.addresses)),
        ports: port_pairs(&ports),
    })
}

pub fn parse_node(value: &Value) -> Result<NodeObject, FieldError> {
    let meta = parse_metadata(value)?;
    let status: NodeStatus = section(value, "status")?;
    let addresses = addresses(
        status
            .addresses
            .iter()
            .filter(|a| a.kind == "InternalIP" || a.kind == "ExternalIP")
            .map(|a| &a.address),
    );
    Ok(NodeObject { meta, addresses })
}
