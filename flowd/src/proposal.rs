//! For a denied graph edge: the policy `flowd policy recommend` would propose to allow it, and
//! the what-if check of the loaded policies plus that proposal against the window's history.
//! Two reads of the window: one for the edge's flows, one evaluating every flow twice, so
//! memory is the edge's, not the window's.

use crate::{
    attribution::Attributor,
    graph,
    policy::{self, recommend::stable_labels, Endpoint, PolicyEngine, Protocol, Transport},
    proto::v1 as pb,
    store::{FlowStore, Range, StoreError},
};

#[derive(Debug, thiserror::Error)]
pub enum ProposalError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("rendering the proposal: {0}")]
    Recommend(#[from] policy::RecommendError),
}

/// Newly denied flows listed by example.
const EXAMPLES: usize = 10;

pub struct EdgeQuery<'a> {
    pub source: &'a str,
    pub destination: &'a str,
    pub protocol: i32,
    pub since_ns: u64,
    pub until_ns: u64,
    /// A proposal to check (YAML) instead of making one.
    pub proposal: Option<&'a str>,
}

/// One flow as the evaluator sees it.
struct Evaluable {
    source: Endpoint,
    destination: Endpoint,
    transport: Transport,
    connections: u64,
}

fn evaluable(attributor: &Attributor, flow: &pb::Flow) -> Option<Evaluable> {
    let (source, destination) = (flow.source.as_ref()?, flow.destination.as_ref()?);
    Some(Evaluable {
        source: attributor.record_endpoint(source)?,
        destination: attributor.record_endpoint(destination)?,
        transport: Transport::observed(
            Protocol::from_number(u8::try_from(flow.protocol).unwrap_or(0)),
            u16::try_from(source.port).unwrap_or(0),
            u16::try_from(destination.port).unwrap_or(0),
            u8::try_from(flow.icmp_type).unwrap_or(0),
            u8::try_from(flow.icmp_code).unwrap_or(0),
        ),
        connections: flow.connections.max(1),
    })
}

fn each_flow(
    store: &FlowStore,
    query: &EdgeQuery<'_>,
    visit: impl FnMut(pb::Flow),
) -> Result<(), StoreError> {
    let range = Range::EndTime {
        since_ns: query.since_ns,
        until_ns: query.until_ns,
    };
    store.visit(range, visit)
}

fn on_edge(flow: &pb::Flow, query: &EdgeQuery<'_>) -> bool {
    flow.protocol == query.protocol
        && flow
            .source
            .as_ref()
            .is_some_and(|e| graph::node_id(e, &flow.node) == query.source)
        && flow
            .destination
            .as_ref()
            .is_some_and(|e| graph::node_id(e, &flow.node) == query.destination)
}

/// The side that denied most of the edge's connections, and the kind of policy that did.
fn denying_side(flows: &[pb::Flow]) -> Option<(pb::PolicySide, String)> {
    // (side, kind) -> denied connections: the side and kind that denied most.
    let mut denied: std::collections::BTreeMap<(i32, String), u64> = Default::default();
    for flow in flows {
        for (side, decision) in [
            (pb::PolicySide::Ingress, &flow.ingress),
            (pb::PolicySide::Egress, &flow.egress),
        ] {
            if let Some(policy) = decision
                .as_ref()
                .filter(|d| !d.allowed)
                .and_then(|d| d.policy.as_ref())
            {
                *denied
                    .entry((side as i32, policy.kind.clone()))
                    .or_default() += flow.connections.max(1);
            }
        }
    }
    denied
        .into_iter()
        .max_by_key(|(_, n)| *n)
        .and_then(|((side, kind), _)| Some((pb::PolicySide::try_from(side).ok()?, kind)))
}

fn summary(e: &Evaluable) -> String {
    format!(
        "{} -> {} {}/{}",
        e.source.display_name(),
        e.destination.display_name(),
        e.transport.protocol,
        e.transport.port
    )
}

pub fn propose(
    store: &FlowStore,
    attributor: &Attributor,
    query: &EdgeQuery<'_>,
) -> Result<pb::RecommendPolicyResponse, ProposalError> {
    let mut edge = Vec::new();
    each_flow(store, query, |flow| {
        if on_edge(&flow, query) {
            edge.push(flow);
        }
    })?;
    let mut response = pb::RecommendPolicyResponse::default();
    if let Some(given) = query.proposal {
        response.side = denying_side(&edge).map_or(0, |(side, _)| side as i32);
        response.yaml = given.to_owned();
        return check(store, attributor, query, response);
    }
    let Some((side, kind)) = denying_side(&edge) else {
        response.notes.push(format!(
            "no connection from {} to {} was denied by a policy in the window: nothing to allow",
            query.source, query.destination
        ));
        return Ok(response);
    };
    response.side = side as i32;
    let evaluated: Vec<Evaluable> = edge
        .iter()
        .filter_map(|f| evaluable(attributor, f))
        .collect();
    // The workload the denying policy selected: the destination for ingress, the source for
    // egress.
    let Some(target) = evaluated
        .iter()
        .map(|e| match side {
            pb::PolicySide::Egress => &e.source,
            _ => &e.destination,
        })
        .find(|e| e.is_pod())
    else {
        response
            .notes
            .push("the denied side is not a pod: no policy selects it".to_owned());
        return Ok(response);
    };
    let labels = stable_labels(&target.labels);
    if labels.is_empty() {
        // A selector without labels would select the whole namespace.
        response.notes.push(format!(
            "{} carries no stable labels to select it by: no policy is proposed",
            target.display_name()
        ));
        return Ok(response);
    }
    let scope = policy::RecommendScope::Workload {
        namespace: target.pod_namespace().unwrap_or_default().to_owned(),
        labels,
    };
    let options = policy::RecommendOptions {
        ingress: side == pb::PolicySide::Ingress,
        egress: side == pb::PolicySide::Egress,
        ..policy::RecommendOptions::default()
    };
    let observed: Vec<policy::ObservedFlow> = evaluated
        .iter()
        .map(|e| policy::ObservedFlow {
            source: e.source.clone(),
            destination: e.destination.clone(),
            protocol: e.transport.protocol,
            port: e.transport.port,
        })
        .collect();
    let recommendations = policy::recommend(&observed, &scope, &options)?;
    // Calico's own kinds in Calico's dialect; a Kubernetes NetworkPolicy for Kubernetes ones.
    let calico = !matches!(
        kind.as_str(),
        "NetworkPolicy" | "StagedKubernetesNetworkPolicy"
    );
    response.yaml = policy::recommend::to_yaml_stream(&recommendations, calico);
    response.notes = recommendations
        .iter()
        .flat_map(|r| r.notes.clone())
        .collect();
    check(store, attributor, query, response)
}

/// The what-if of `response.yaml` over the window: every flow with the loaded policies, and with
/// them plus the proposal.
fn check(
    store: &FlowStore,
    attributor: &Attributor,
    query: &EdgeQuery<'_>,
    mut response: pb::RecommendPolicyResponse,
) -> Result<pb::RecommendPolicyResponse, ProposalError> {
    let proposed = policy::load_str(&response.yaml, "the proposal");
    response.notes.extend(
        proposed
            .errors
            .iter()
            .map(|e| format!("the proposal does not load: {e}")),
    );

    let current = attributor.policy_set();
    let mut with_proposal = (*current).clone();
    with_proposal.extend(proposed.policies);
    let (now, then) = (
        PolicyEngine::new(&current),
        PolicyEngine::new(&with_proposal),
    );
    let mut what_if = pb::WhatIf::default();
    each_flow(store, query, |flow| {
        let Some(e) = evaluable(attributor, &flow) else {
            return;
        };
        what_if.flows_checked += 1;
        let before = now
            .evaluate_endpoints(&e.source, &e.destination, e.transport)
            .allowed;
        let after = then
            .evaluate_endpoints(&e.source, &e.destination, e.transport)
            .allowed;
        match (on_edge(&flow, query), before, after) {
            (true, false, true) => what_if.edge_allowed += e.connections,
            (true, false, false) => what_if.edge_still_denied += e.connections,
            (false, true, false) => {
                what_if.newly_denied += e.connections;
                if what_if.newly_denied_examples.len() < EXAMPLES {
                    what_if.newly_denied_examples.push(summary(&e));
                }
            }
            (false, false, true) => what_if.newly_allowed_elsewhere += e.connections,
            _ => {}
        }
    })?;
    response.what_if = Some(what_if);
    Ok(response)
}
