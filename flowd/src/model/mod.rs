//! The types that cross stage boundaries, in one leaf module every stage may import (the way
//! netobserv's agent keeps `pkg/model`): it imports no stage.

mod clock;
mod endpoint;
mod raw;
mod record;
mod verdict;

pub use clock::{kernel_clock_ns, KernelClock};
pub use endpoint::{is_private, EndpointKind, EndpointMeta, Labels, Workload, WorkloadKind};
pub use raw::{answered, initiator_side, InterfaceIndex, RawFlow, SharedInterfaces};
pub use record::{
    EndpointAddr, FlowRecord, InterfaceRef, Outcome, Process, ReportReason, SideCounters, TcpFlags,
    TrafficDirection, Verdict,
};
pub use verdict::{PolicyVerdict, SideVerdict};
