//! Which graph node an endpoint belongs to, read from the record without copying it.

use std::hash::{BuildHasher as _, Hash as _, Hasher as _};

use crate::proto::v1 as pb;

/// A graph node's identity, borrowed from a record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Identity<'a> {
    Workload {
        namespace: &'a str,
        kind: &'a str,
        name: &'a str,
        pod: &'a str,
    },
    Host(&'a str),
    Service {
        namespace: &'a str,
        name: &'a str,
    },
    World {
        ip: &'a str,
        public: bool,
    },
}

impl<'a> Identity<'a> {
    /// `recorded_on` names the host when a host endpoint does not.
    pub fn of(endpoint: &'a pb::Endpoint, recorded_on: &'a str) -> Self {
        use pb::EndpointKind as Kind;
        let first = |values: [&'a str; 3]| values.into_iter().find(|v| !v.is_empty()).unwrap_or("");
        match endpoint.kind() {
            Kind::Pod => match &endpoint.workload {
                Some(w) if !w.name.is_empty() => Identity::Workload {
                    namespace: &endpoint.namespace,
                    kind: if w.kind.is_empty() { "Pod" } else { &w.kind },
                    name: &w.name,
                    pod: &endpoint.name,
                },
                _ => Identity::Workload {
                    namespace: &endpoint.namespace,
                    kind: "Pod",
                    name: &endpoint.name,
                    pod: &endpoint.name,
                },
            },
            Kind::Host | Kind::Node => {
                Identity::Host(first([&endpoint.node, &endpoint.name, recorded_on]))
            }
            Kind::Service => Identity::Service {
                namespace: &endpoint.namespace,
                name: &endpoint.name,
            },
            Kind::WorldPublic => Identity::World {
                ip: &endpoint.ip,
                public: true,
            },
            // The graph keeps outside addresses one by one; the set is on the records.
            Kind::WorldPrivate | Kind::NetworkSet | Kind::Unspecified => Identity::World {
                ip: &endpoint.ip,
                public: false,
            },
        }
    }

    /// The identity of a node a graph already holds (its pods are not part of it).
    pub fn of_node(node: &'a pb::GraphNode) -> Self {
        use pb::GraphNodeKind as K;
        match node.kind() {
            K::Workload => Identity::Workload {
                namespace: &node.namespace,
                kind: &node.workload_kind,
                name: &node.name,
                pod: "",
            },
            K::Host => Identity::Host(&node.name),
            K::Service => Identity::Service {
                namespace: &node.namespace,
                name: &node.name,
            },
            K::World | K::Unspecified => Identity::World {
                ip: &node.name,
                public: node.public,
            },
        }
    }

    pub fn hash(&self, state: &foldhash::fast::FixedState) -> u64 {
        let mut h = state.build_hasher();
        match self {
            Identity::Workload {
                namespace,
                kind,
                name,
                ..
            } => (0u8, namespace, kind, name).hash(&mut h),
            Identity::Host(name) => (1u8, name).hash(&mut h),
            Identity::Service { namespace, name } => (2u8, namespace, name).hash(&mut h),
            Identity::World { ip, .. } => (3u8, ip).hash(&mut h),
        }
        h.finish()
    }

    /// Whether `node` is this identity (pods of one workload are one node).
    pub fn is(&self, node: &pb::GraphNode) -> bool {
        use pb::GraphNodeKind as K;
        match (self, node.kind()) {
            (
                Identity::Workload {
                    namespace,
                    kind,
                    name,
                    ..
                },
                K::Workload,
            ) => node.namespace == *namespace && node.workload_kind == *kind && node.name == *name,
            (Identity::Host(name), K::Host) => node.name == *name,
            (Identity::Service { namespace, name }, K::Service) => {
                node.namespace == *namespace && node.name == *name
            }
            (Identity::World { ip, .. }, K::World) => node.name == *ip,
            _ => false,
        }
    }

    /// A new graph node for this identity (its pod, if any, is added by the caller).
    pub fn node(&self) -> pb::GraphNode {
        let (kind, id, namespace, name, workload_kind, public) = match *self {
            Identity::Workload {
                namespace,
                kind,
                name,
                ..
            } => (
                pb::GraphNodeKind::Workload,
                format!("workload:{namespace}/{kind}/{name}"),
                namespace,
                name,
                kind,
                false,
            ),
            Identity::Host(name) => (
                pb::GraphNodeKind::Host,
                format!("host:{name}"),
                "",
                name,
                "",
                false,
            ),
            Identity::Service { namespace, name } => (
                pb::GraphNodeKind::Service,
                format!("service:{namespace}/{name}"),
                namespace,
                name,
                "",
                false,
            ),
            Identity::World { ip, public } => (
                pb::GraphNodeKind::World,
                format!("world:{ip}"),
                "",
                ip,
                "",
                public,
            ),
        };
        pb::GraphNode {
            id,
            kind: kind as i32,
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            workload_kind: workload_kind.to_owned(),
            pods: Vec::new(),
            pod_count: 0,
            public,
        }
    }

    pub fn pod(&self) -> Option<&'a str> {
        match self {
            Identity::Workload { pod, .. } if !pod.is_empty() => Some(pod),
            _ => None,
        }
    }
}
