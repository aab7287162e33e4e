//! What the evaluator is asked about: endpoints and flows.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr};

use serde::{Deserialize, Serialize};

/// An IP protocol. Names follow Calico's spelling.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Protocol {
    Tcp,
    Udp,
    Sctp,
    Icmp,
    IcmpV6,
    Other(u8),
}

impl Protocol {
    pub fn number(self) -> u8 {
        match self {
            Protocol::Tcp => 6,
            Protocol::Udp => 17,
            Protocol::Sctp => 132,
            Protocol::Icmp => 1,
            Protocol::IcmpV6 => 58,
            Protocol::Other(n) => n,
        }
    }

    pub fn from_number(n: u8) -> Protocol {
        match n {
            6 => Protocol::Tcp,
            17 => Protocol::Udp,
            132 => Protocol::Sctp,
            1 => Protocol::Icmp,
            58 => Protocol::IcmpV6,
            n => Protocol::Other(n),
        }
    }

    /// Accepts Calico names (any case), "UDPLite", and numbers 0-255.
    pub fn parse(text: &str) -> Option<Protocol> {
        let t = text.trim();
        if let Ok(n) = t.parse::<u8>() {
            return Some(Protocol::from_number(n));
        }
        match t.to_ascii_lowercase().as_str() {
            "tcp" => Some(Protocol::Tcp),
            "udp" => Some(Protocol::Udp),
            "sctp" => Some(Protocol::Sctp),
            "icmp" => Some(Protocol::Icmp),
            "icmpv6" => Some(Protocol::IcmpV6),
            "udplite" => Some(Protocol::Other(136)),
            _ => None,
        }
    }

    /// ICMP or ICMPv6: the protocols whose flows carry an ICMP message type and code.
    pub fn is_icmp(self) -> bool {
        matches!(self, Protocol::Icmp | Protocol::IcmpV6)
    }

    /// Protocols whose packets carry ports, so port matches make sense.
    pub fn has_ports(self) -> bool {
        matches!(
            self,
            Protocol::Tcp | Protocol::Udp | Protocol::Sctp | Protocol::Other(136)
        )
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Protocol::Tcp => write!(f, "TCP"),
            Protocol::Udp => write!(f, "UDP"),
            Protocol::Sctp => write!(f, "SCTP"),
            Protocol::Icmp => write!(f, "ICMP"),
            Protocol::IcmpV6 => write!(f, "ICMPv6"),
            Protocol::Other(136) => write!(f, "UDPLite"),
            Protocol::Other(n) => write!(f, "{n}"),
        }
    }
}

/// A Kubernetes Service the endpoint belongs to: as one of its endpoints (a pod, by the
/// service's EndpointSlices, with the endpoint ports) or as its cluster IP (with the service's
/// ports). Calico's `services` rule matches read it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ServiceMembership {
    /// "namespace/name".
    pub service: String,
    /// (protocol, port) the service reaches this endpoint on; empty when not known.
    pub ports: Vec<(Protocol, u16)>,
}

/// A named container port of a pod.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct NamedPort {
    pub name: String,
    pub port: u16,
    pub protocol: Protocol,
}

/// One side of a flow. `namespace: None` means not a pod (host, node or world
/// address): only ipBlock / nets rules can match those.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    pub ip: IpAddr,
    pub namespace: Option<String>,
    pub pod: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub namespace_labels: BTreeMap<String, String>,
    pub service_account: Option<String>,
    /// The labels of the service account's object (Calico `serviceAccounts.selector` and
    /// `serviceAccountSelector` match them).
    #[serde(default)]
    pub service_account_labels: BTreeMap<String, String>,
    pub named_ports: Vec<NamedPort>,
    /// The services this endpoint backs, or is the address of.
    #[serde(default)]
    pub services: Vec<ServiceMembership>,
    /// Host-networked or a host/node address: never policed as a pod.
    pub host: bool,
}

impl Default for Endpoint {
    fn default() -> Self {
        Endpoint {
            ip: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            namespace: None,
            pod: None,
            labels: BTreeMap::new(),
            namespace_labels: BTreeMap::new(),
            service_account: None,
            service_account_labels: BTreeMap::new(),
            named_ports: Vec::new(),
            services: Vec::new(),
            host: false,
        }
    }
}

impl Endpoint {
    /// A pod endpoint with no labels yet.
    pub fn pod(namespace: &str, name: &str, ip: IpAddr) -> Endpoint {
        Endpoint {
            ip,
            namespace: Some(namespace.to_string()),
            pod: Some(name.to_string()),
            ..Endpoint::default()
        }
    }

    /// An address outside the pod network (world, node, host).
    pub fn external(ip: IpAddr) -> Endpoint {
        Endpoint {
            ip,
            ..Endpoint::default()
        }
    }

    pub fn with_label(mut self, key: &str, value: &str) -> Endpoint {
        self.labels.insert(key.to_string(), value.to_string());
        self
    }

    pub fn with_namespace_label(mut self, key: &str, value: &str) -> Endpoint {
        self.namespace_labels
            .insert(key.to_string(), value.to_string());
        self
    }

    pub fn with_service_account(mut self, sa: &str) -> Endpoint {
        self.service_account = Some(sa.to_string());
        self
    }

    pub fn with_service_account_label(mut self, key: &str, value: &str) -> Endpoint {
        self.service_account_labels
            .insert(key.to_string(), value.to_string());
        self
    }

    pub fn with_named_port(mut self, name: &str, port: u16, protocol: Protocol) -> Endpoint {
        self.named_ports.push(NamedPort {
            name: name.to_string(),
            port,
            protocol,
        });
        self
    }

    pub fn with_service(mut self, service: &str, ports: &[(Protocol, u16)]) -> Endpoint {
        self.services.push(ServiceMembership {
            service: service.to_string(),
            ports: ports.to_vec(),
        });
        self
    }

    /// Whether something names this address beyond itself: a pod, a node, a service's address.
    pub fn is_named(&self) -> bool {
        self.namespace.is_some() || self.host || !self.services.is_empty()
    }

    /// Pods are the only endpoints policies select and selectors match.
    pub fn is_pod(&self) -> bool {
        self.namespace.is_some() && !self.host
    }

    /// The namespace, only when this is a policed pod.
    pub fn pod_namespace(&self) -> Option<&str> {
        if self.host {
            None
        } else {
            self.namespace.as_deref()
        }
    }

    /// "ns/pod", the pod name alone, or the IP.
    pub fn display_name(&self) -> String {
        match (&self.namespace, &self.pod) {
            (Some(ns), Some(p)) => format!("{ns}/{p}"),
            (None, Some(p)) => p.clone(),
            _ => self.ip.to_string(),
        }
    }

    /// Resolve a named port on this endpoint.
    pub fn named_port(&self, name: &str, protocol: Protocol) -> Option<u16> {
        self.named_ports
            .iter()
            .find(|np| np.name == name && np.protocol == protocol)
            .map(|np| np.port)
    }
}

/// A Calico NetworkSet (namespaced) or GlobalNetworkSet (`namespace: None`): labels for CIDRs,
/// so that rule selectors reach addresses outside the pod network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkSet {
    pub namespace: Option<String>,
    pub name: String,
    pub labels: std::collections::BTreeMap<String, String>,
    pub nets: Vec<ipnet::IpNet>,
}

impl NetworkSet {
    /// "NS/NAME", or "NAME" for a global set.
    pub fn qualified_name(&self) -> String {
        match &self.namespace {
            Some(ns) => format!("{ns}/{}", self.name),
            None => self.name.clone(),
        }
    }

    /// The longest prefix of this set containing `ip`.
    pub fn longest_match(&self, ip: &std::net::IpAddr) -> Option<u8> {
        self.nets
            .iter()
            .filter(|n| n.contains(ip))
            .map(ipnet::IpNet::prefix_len)
            .max()
    }
}

/// An ICMP message's type and code (ICMPv6 numbering for ICMPv6 flows). A flow record's is the
/// request's: an echo connection is type 8 (ICMPv6: 128) whichever side answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Icmp {
    #[serde(rename = "type")]
    pub kind: u8,
    pub code: u8,
}

/// A flow to judge: `port` is the destination port (0 for port-less protocols). `source_port`
/// and `icmp` are optional facts: a rule that needs one that is absent cannot match positively
/// (`ports` on the source side, `icmp`) and is assumed outside a negative match (`notPorts`,
/// `notICMP`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowQuery {
    pub source: Endpoint,
    pub destination: Endpoint,
    pub protocol: Protocol,
    pub port: u16,
    #[serde(default)]
    pub source_port: Option<u16>,
    #[serde(default)]
    pub icmp: Option<Icmp>,
}

/// A borrowed flow, so callers holding endpoints elsewhere need not clone them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlowRef<'a> {
    pub source: &'a Endpoint,
    pub destination: &'a Endpoint,
    pub protocol: Protocol,
    pub port: u16,
    pub source_port: Option<u16>,
    pub icmp: Option<Icmp>,
    /// The network sets selectors may reach; the engine fills it with its own.
    pub network_sets: &'a [NetworkSet],
}

/// What a flow carries besides its endpoints: protocol and ports, and the ICMP message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Transport {
    pub protocol: Protocol,
    /// The destination port (0 for port-less protocols).
    pub port: u16,
    pub source_port: Option<u16>,
    pub icmp: Option<Icmp>,
}

impl Transport {
    /// Protocol and destination port, no source port or ICMP message known.
    pub fn new(protocol: Protocol, port: u16) -> Transport {
        Transport {
            protocol,
            port,
            source_port: None,
            icmp: None,
        }
    }

    /// Everything a flow record knows: both ports for protocols with ports, the (request's)
    /// ICMP message for ICMP and ICMPv6.
    pub fn observed(
        protocol: Protocol,
        source_port: u16,
        port: u16,
        icmp_type: u8,
        icmp_code: u8,
    ) -> Transport {
        let has_ports = protocol.has_ports();
        Transport {
            protocol,
            port: if has_ports { port } else { 0 },
            source_port: has_ports.then_some(source_port),
            icmp: protocol.is_icmp().then_some(Icmp {
                kind: icmp_type,
                code: icmp_code,
            }),
        }
    }
}

impl FlowQuery {
    pub fn view(&self) -> FlowRef<'_> {
        FlowRef::new(&self.source, &self.destination, self.transport())
    }

    pub fn transport(&self) -> Transport {
        Transport {
            protocol: self.protocol,
            port: self.port,
            source_port: self.source_port,
            icmp: self.icmp,
        }
    }
}

impl<'a> FlowRef<'a> {
    pub fn new(source: &'a Endpoint, destination: &'a Endpoint, transport: Transport) -> Self {
        FlowRef {
            source,
            destination,
            protocol: transport.protocol,
            port: transport.port,
            source_port: transport.source_port,
            icmp: transport.icmp,
            network_sets: &[],
        }
    }

    pub fn transport(&self) -> Transport {
        Transport {
            protocol: self.protocol,
            port: self.port,
            source_port: self.source_port,
            icmp: self.icmp,
        }
    }
}
