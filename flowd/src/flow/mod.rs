//! The flow record: what every stage after capture passes along.

mod record;

pub use record::{Direction, FlowRecord, InterfaceRef, ReportReason, TcpFlags};

pub mod assemble;
