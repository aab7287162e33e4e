//! Kernel side of the agent: load the tc programs, attach them, and turn the kernel's flow map
//! and ring buffer into [`RawFlow`](crate::model::RawFlow) batches.

mod attach;
pub mod btf;
mod drops;
mod error;
mod follow;
mod links;
mod load;
pub mod pins;
mod privileges;
pub mod program_stats;
pub mod sockets;
mod sweep;
mod task;

pub use attach::{AttachMode, Attachment, Attachments, TcAttach};
pub use drops::{
    nearest_symbol, parse_format, DropNames, DropProbe, DropProbeMode, DROP_PROGRAM,
    TRACEPOINT_PROGRAM,
};
pub use error::CaptureError;
pub use links::{link_event_from_bytes, LinkEvent, LinkWatch};
pub use load::{
    load_programs, LoadOptions, LoadedPrograms, MapSizes, EGRESS_PROGRAM, INGRESS_PROGRAM,
};
pub use privileges::check_privileges;
pub use sweep::{SweepTimeouts, Sweeper};
pub use task::{decode_event, run, CaptureTask};
