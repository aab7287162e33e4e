//! The flow record: what every stage after capture passes along.

pub mod aggregate;
pub mod assemble;
mod outcome;
pub mod wire;

pub use crate::model::{
    EndpointAddr, FlowRecord, InterfaceRef, Outcome, Process, ReportReason, SideCounters, TcpFlags,
    TrafficDirection, Verdict,
};
pub use outcome::outcome;
