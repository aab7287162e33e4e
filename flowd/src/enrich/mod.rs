//! Who is talking: Kubernetes pods, workloads, services and nodes behind flow addresses.
//!
//! Sources (metadata files, the Kubernetes API, cgroups) fill one [`MetadataIndex`]; the enrichment stage looks up each
//! record's endpoints in it, as of the time the flow was seen.

pub mod cgroups;
mod index;
pub mod kubernetes;
mod objects;
mod stage;
mod workload;

pub use crate::model::{EndpointKind, EndpointMeta, Workload};
pub use index::{MetadataIndex, PodInfo};
pub use objects::{load_paths, parse_objects, LoadReport, MetadataError};
pub use stage::{load, watch_files, Enrichment, SharedIndex};
