//! Privileged end-to-end tests: a real agent process attached to a veth pair in namespaces the
//! test creates, real TCP/UDP traffic, assertions through the gRPC API and `flowd dump`.
//! One module per feature, one test binary (as aya's integration tests are laid out).

#[path = "../support/mod.rs"]
mod support;

mod common;
mod counting;
mod drops;
mod floods;
mod interfaces;
mod lifecycle;
mod metadata;
mod processes;

use std::{
    net::{IpAddr, SocketAddr},
    time::Duration,
};

use flowd::{
    api::proto::v1 as pb,
    testbed::{self, TwoHosts},
};
use support::{collect_until, privileged, AgentProcess, FlowId, Totals};
