//! Who an address is: what enrichment attaches to each side of a record.

use std::{collections::BTreeMap, net::IpAddr, sync::Arc};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EndpointKind {
    Pod,
    Host,
    Node,
    Service,
    WorldPrivate,
    WorldPublic,
    /// An address outside the pod network that a Calico NetworkSet or GlobalNetworkSet names.
    NetworkSet,
}

/// The kind of object that runs a pod, as its owner references name it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum WorkloadKind {
    Deployment,
    ReplicaSet,
    StatefulSet,
    DaemonSet,
    Job,
    CronJob,
    ReplicationController,
    /// Any other controller (an operator's custom resource): its kind as written.
    Other(String),
}

impl WorkloadKind {
    pub fn parse(kind: &str) -> Self {
        match kind {
            "Deployment" => Self::Deployment,
            "ReplicaSet" => Self::ReplicaSet,
            "StatefulSet" => Self::StatefulSet,
            "DaemonSet" => Self::DaemonSet,
            "Job" => Self::Job,
            "CronJob" => Self::CronJob,
            "ReplicationController" => Self::ReplicationController,
            other => Self::Other(other.to_owned()),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            Self::Deployment => "Deployment",
            Self::ReplicaSet => "ReplicaSet",
            Self::StatefulSet => "StatefulSet",
            Self::DaemonSet => "DaemonSet",
            Self::Job => "Job",
            Self::CronJob => "CronJob",
            Self::ReplicationController => "ReplicationController",
            Self::Other(kind) => kind,
        }
    }

    /// Kinds that are made by another workload (a Deployment's ReplicaSet, a CronJob's Job):
    /// enrichment follows them to their owner.
    pub fn is_intermediate(&self) -> bool {
        matches!(self, Self::ReplicaSet | Self::Job)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Workload {
    pub kind: WorkloadKind,
    pub name: String,
}

impl Workload {
    pub fn new(kind: &str, name: &str) -> Self {
        Self {
            kind: WorkloadKind::parse(kind),
            name: name.to_owned(),
        }
    }
}

/// Label sets are shared: a workload's replicas, and every pod of a namespace for its labels,
/// point at one copy (on big clusters this is most of the index's memory).
pub type Labels = Arc<BTreeMap<String, String>>;

/// Everything known about one endpoint. Shared: every flow of a pod points at the same one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EndpointMeta {
    pub kind: EndpointKind,
    pub namespace: String,
    pub name: String,
    pub labels: Labels,
    pub namespace_labels: Labels,
    pub workload: Option<Workload>,
    /// "namespace/name" of the services this endpoint backs (or is).
    pub services: Vec<String>,
    /// The same services with the ports they reach this endpoint on (Calico `services` rules).
    pub service_memberships: Vec<flowd_policy::ServiceMembership>,
    pub node: String,
    pub service_account: String,
    /// The labels of the service account's object.
    pub service_account_labels: Labels,
    /// Container ports by name (name, port, protocol), for named-port policy rules.
    pub named_ports: Vec<flowd_policy::NamedPort>,
}

impl EndpointMeta {
    /// An address no metadata names.
    pub fn world(ip: IpAddr) -> Self {
        Self {
            kind: if is_private(ip) {
                EndpointKind::WorldPrivate
            } else {
                EndpointKind::WorldPublic
            },
            namespace: String::new(),
            name: String::new(),
            labels: Labels::default(),
            namespace_labels: Labels::default(),
            workload: None,
            services: Vec::new(),
            service_memberships: Vec::new(),
            node: String::new(),
            service_account: String::new(),
            service_account_labels: Labels::default(),
            named_ports: Vec::new(),
        }
    }
}

/// Addresses that never route on the public internet: RFC 1918, shared CGNAT space, loopback,
/// link-local, benchmarking (RFC 2544), unique-local IPv6.
pub fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            v4.is_private()
                || v4.is_loopback()
                || v4.is_link_local()
                || (o[0] == 100 && (64..128).contains(&o[1]))
                || (o[0] == 198 && (18..20).contains(&o[1]))
        }
        IpAddr::V6(v6) => {
            let first = v6.segments()[0];
            v6.is_loopback() || (first & 0xfe00) == 0xfc00 || (first & 0xffc0) == 0xfe80
        }
    }
}
