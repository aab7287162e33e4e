use std::{net::IpAddr, sync::Arc, time::SystemTime};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    Ingress,
    Egress,
}

/// Why a record was emitted for a flow at this moment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReportReason {
    ActiveTimeout,
    IdleTimeout,
    ConnectionEnd,
    Shutdown,
    MapFull,
}

/// Union of TCP flags, as the `TCP_*` bits of flowd-common.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct TcpFlags(pub u32);

/// Interface a flow was seen on. Shared: thousands of records point at a handful of interfaces.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InterfaceRef {
    pub name: String,
    pub index: u32,
    pub netns_cookie: u64,
    /// Namespace path the agent attached through; empty for its own namespace.
    pub netns: String,
}

/// One interface, one direction, one 5-tuple, counted over `[start, end]`.
#[derive(Clone, Debug, PartialEq)]
pub struct FlowRecord {
    pub start: SystemTime,
    pub end: SystemTime,
    pub node: Arc<str>,
    pub ip_version: u8,
    pub protocol: u8,
    pub source: IpAddr,
    pub destination: IpAddr,
    pub source_port: u16,
    pub destination_port: u16,
    pub icmp_type: u8,
    pub icmp_code: u8,
    pub packets: u64,
    pub bytes: u64,
    pub tcp_flags: TcpFlags,
    pub interface: Arc<InterfaceRef>,
    pub direction: Direction,
    pub reason: ReportReason,
}
