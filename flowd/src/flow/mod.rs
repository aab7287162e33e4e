//! The flow record: what every stage after capture passes along.

pub mod aggregate;
pub mod assemble;
mod outcome;
mod record;
pub mod wire;

pub use outcome::outcome;
pub use record::{
    Direction, Endpoint, FlowRecord, InterfaceRef, Outcome, Process, ReportReason, SideCounters,
    TcpFlags, Verdict,
};
