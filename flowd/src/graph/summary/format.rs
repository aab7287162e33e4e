//! How a period's graph is stored: the history's private format, never served. Strings and
//! policies are listed once per period and edges refer to them by index, so reading a summary
//! allocates per node and per new edge, not per counter.

use crate::proto::v1 as pb;

#[derive(Clone, PartialEq, prost::Message)]
pub struct Summary {
    /// Every pod name of each node is listed (pod_count is their number).
    #[prost(message, repeated, tag = "1")]
    pub nodes: Vec<pb::GraphNode>,
    /// Drop reasons, actions and recording nodes, by index.
    #[prost(string, repeated, tag = "2")]
    pub strings: Vec<String>,
    #[prost(message, repeated, tag = "3")]
    pub policies: Vec<pb::PolicyRef>,
    #[prost(message, repeated, tag = "4")]
    pub edges: Vec<SummaryEdge>,
    /// Records folded.
    #[prost(uint64, tag = "5")]
    pub flows: u64,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct SummaryEdge {
    /// Indices into `Summary.nodes`.
    #[prost(uint32, tag = "1")]
    pub source: u32,
    #[prost(uint32, tag = "2")]
    pub destination: u32,
    #[prost(int32, tag = "3")]
    pub protocol: i32,
    /// Destination port ranges as (first, last) pairs.
    #[prost(uint32, repeated, tag = "4")]
    pub ports: Vec<u32>,
    #[prost(uint64, tag = "5")]
    pub connections: u64,
    #[prost(uint64, tag = "6")]
    pub flows: u64,
    #[prost(uint64, tag = "7")]
    pub bytes: u64,
    #[prost(uint64, tag = "8")]
    pub packets: u64,
    /// Connections by outcome, then by verdict, indexed by their enum values.
    #[prost(uint64, repeated, tag = "9")]
    pub counts: Vec<u64>,
    /// (reason's index in `strings`, connections) pairs.
    #[prost(uint64, repeated, tag = "10")]
    pub drop_reasons: Vec<u64>,
    #[prost(message, repeated, tag = "11")]
    pub decisions: Vec<SummaryDecision>,
    #[prost(uint64, tag = "12")]
    pub first_ns: u64,
    #[prost(uint64, tag = "13")]
    pub last_ns: u64,
    /// Indices into `strings`.
    #[prost(uint32, repeated, tag = "14")]
    pub recorded_by: Vec<u32>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct SummaryDecision {
    #[prost(int32, tag = "1")]
    pub side: i32,
    /// Index into `Summary.policies` plus one; 0 when no policy decided.
    #[prost(uint32, tag = "2")]
    pub policy: u32,
    /// Index into `strings`.
    #[prost(uint32, tag = "3")]
    pub action: u32,
    #[prost(bool, tag = "4")]
    pub allowed: bool,
    #[prost(uint64, tag = "5")]
    pub connections: u64,
}
