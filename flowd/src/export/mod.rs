//! Sinks that copy flow records out of the node for log shippers.

mod file;

pub use file::{run as run_file_sink, FileSink, FileSinkError};
