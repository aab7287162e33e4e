//! Network policy evaluation for flowd: load Kubernetes, Calico and admin network policies,
//! decide which named policy and rule allows or denies a flow, explain it, and
//! recommend least-privilege policies from observed flows.
//!
//! Its own crate so the compiler keeps it self-contained: it knows nothing of capture, records
//! or the API. The agent's policy stage adapts flow records to [`FlowQuery`] and back.

pub mod admin;
mod admin_parse;
/// The synthetic-cluster benchmark, for `cargo xtask bench` (not shipped: feature `bench`).
#[cfg(feature = "bench")]
pub mod bench;
mod cache;
pub mod calico;
mod calico_parse;
mod decision;
pub mod endpoint;
pub mod error;
pub mod eval;
pub mod explain;
mod index;
pub mod jsonl;
pub mod k8s;
mod k8s_parse;
pub mod labels;
pub mod load;
pub mod model;
pub mod objects;
pub mod pods;
pub mod recommend;
mod recommend_yaml;
mod rule;
pub mod selector;
mod value;
mod walk;

pub use cache::CacheStats;
pub use endpoint::{
    Endpoint, FlowQuery, FlowRef, Icmp, NamedPort, NetworkSet, Protocol, ServiceMembership,
    Transport,
};
pub use error::{FieldError, LoadError, RecommendError, SelectorError};
pub use eval::{
    EndpointKey, EngineOptions, Evaluation, PendingDecision, PolicyEngine, Ruling, SideDecision,
    TraceStep,
};
pub use load::{load_paths, load_str, load_values, LoadResult};
pub use model::{
    Direction, Policy, PolicyKind, PolicyRef, PolicySet, RuleAction, StagedAction, Tier,
    TierDefaultAction,
};
pub use pods::{EndpointResolver, StaticPods};
pub use recommend::{recommend, ObservedFlow, RecommendOptions, RecommendScope, Recommendation};
pub use selector::Selector;

#[cfg(test)]
mod tests;
