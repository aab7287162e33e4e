//! Which edges a large graph keeps, and what colours an edge.

use std::collections::HashSet;

use crate::proto::v1 as pb;

/// Denied if any connection was, else dropped, else not enforced, else forwarded: the colour
/// shows the worst that happened on the edge.
pub(super) fn colour(verdicts: &[pb::VerdictCount]) -> pb::Verdict {
    let has = |v: pb::Verdict| {
        verdicts
            .iter()
            .any(|c| c.verdict == v as i32 && c.connections > 0)
    };
    [
        pb::Verdict::Denied,
        pb::Verdict::Dropped,
        pb::Verdict::NotEnforced,
        pb::Verdict::Forwarded,
    ]
    .into_iter()
    .find(|v| has(*v))
    .unwrap_or(pb::Verdict::Unspecified)
}

fn severity(verdict: i32) -> u8 {
    match pb::Verdict::try_from(verdict) {
        Ok(pb::Verdict::Denied) => 3,
        Ok(pb::Verdict::Dropped) => 2,
        Ok(pb::Verdict::NotEnforced) => 1,
        _ => 0,
    }
}

/// Keeps the `max_edges` edges that matter most (denied, dropped, not enforced, then by
/// connections), and the nodes they join; sorts what stays so equal inputs give equal output.
pub(super) fn keep(graph: &mut pb::GetGraphResponse, max_edges: usize) {
    graph.edges_total = graph.edges.len() as u64;
    if graph.edges.len() > max_edges {
        // Ties broken by the edge's identity, so equal requests keep equal edges whatever
        // order the edges came in (the relay's merge has none).
        graph.edges.sort_by(|a, b| {
            (severity(b.verdict), b.connections, b.bytes)
                .cmp(&(severity(a.verdict), a.connections, a.bytes))
                .then_with(|| {
                    (&a.source, &a.destination, a.protocol).cmp(&(
                        &b.source,
                        &b.destination,
                        b.protocol,
                    ))
                })
        });
        graph.edges.truncate(max_edges);
        let joined: HashSet<&str> = graph
            .edges
            .iter()
            .flat_map(|e| [e.source.as_str(), e.destination.as_str()])
            .collect();
        let joined: HashSet<String> = joined.into_iter().map(str::to_owned).collect();
        graph.nodes.retain(|n| joined.contains(&n.id));
    }
    graph.nodes.sort_by(|a, b| a.id.cmp(&b.id));
    graph.edges.sort_by(|a, b| {
        (&a.source, &a.destination, a.protocol).cmp(&(&b.source, &b.destination, b.protocol))
    });
}
