//! Where the relay finds its nodes: a fixed list, or the EndpointSlices of the agents'
//! headless Service (a kube-rs watcher: relists after 410 Gone, reconnects with backoff). The
//! current set is published on a watch channel; each call adds the nodes that appear and ends
//! (GONE) those that leave.

use std::collections::BTreeMap;

use futures::StreamExt as _;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::{
    runtime::{watcher, WatchStreamExt as _},
    Api, Client, ResourceExt as _,
};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::{peer::PeerTarget, PeerSet};
use crate::api::client::ClientTls;

/// The agents' Service to follow, and how to reach what it lists.
#[derive(Clone, Debug)]
pub struct ServiceDiscovery {
    pub namespace: String,
    pub service: String,
    /// The EndpointSlice port carrying the API (the chart names it `grpc`).
    pub port_name: String,
    pub tls: Option<ClientTls>,
}

/// Follows the Service's EndpointSlices until `stop`; starts with no nodes until the first
/// list arrives.
pub fn follow_service(
    client: Client,
    discovery: ServiceDiscovery,
    stop: CancellationToken,
) -> PeerSet {
    let (sender, receiver) = watch::channel(None);
    tokio::spawn(async move {
        let api: Api<EndpointSlice> = Api::namespaced(client, &discovery.namespace);
        let selector = format!("kubernetes.io/service-name={}", discovery.service);
        let mut events = watcher(api, watcher::Config::default().labels(&selector))
            .default_backoff()
            .boxed();
        let mut slices: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let mut listing: Option<BTreeMap<String, Vec<String>>> = None;
        loop {
            let event = tokio::select! {
                event = events.next() => event,
                () = stop.cancelled() => return,
            };
            let Some(event) = event else { return };
            match event {
                Ok(watcher::Event::Apply(slice)) => {
                    slices.insert(slice.name_any(), addresses(&slice, &discovery.port_name));
                }
                Ok(watcher::Event::Delete(slice)) => {
                    slices.remove(&slice.name_any());
                }
                Ok(watcher::Event::Init) => listing = Some(BTreeMap::new()),
                Ok(watcher::Event::InitApply(slice)) => {
                    if let Some(listing) = listing.as_mut() {
                        listing.insert(slice.name_any(), addresses(&slice, &discovery.port_name));
                    }
                }
                Ok(watcher::Event::InitDone) => {
                    if let Some(listed) = listing.take() {
                        slices = listed;
                    }
                }
                Err(err) => {
                    tracing::warn!(error = %err, service = %discovery.service, "watching the agents' EndpointSlices");
                    continue;
                }
            }
            let mut all: Vec<String> = slices.values().flatten().cloned().collect();
            all.sort();
            all.dedup();
            let peers: Vec<PeerTarget> = all
                .into_iter()
                .map(|address| PeerTarget {
                    address,
                    tls: discovery.tls.clone(),
                })
                .collect();
            if listing.is_some() {
                continue; // mid-relist: publish once it is complete
            }
            sender.send_if_modified(|current| {
                let same = current.as_ref().is_some_and(|current: &Vec<PeerTarget>| {
                    current.len() == peers.len()
                        && current
                            .iter()
                            .zip(&peers)
                            .all(|(a, b)| a.address == b.address)
                });
                if !same {
                    tracing::info!(nodes = peers.len(), "agents from EndpointSlices");
                    *current = Some(peers);
                }
                !same
            });
        }
    });
    PeerSet::followed(receiver)
}

/// `host:port` of every ready endpoint of a slice, on the named port.
fn addresses(slice: &EndpointSlice, port_name: &str) -> Vec<String> {
    let Some(port) = slice
        .ports
        .iter()
        .flatten()
        .find(|p| p.name.as_deref() == Some(port_name))
        .and_then(|p| p.port)
    else {
        return Vec::new();
    };
    slice
        .endpoints
        .iter()
        .filter(|e| e.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true))
        .filter_map(|e| e.addresses.first())
        .map(|ip| {
            if ip.contains(':') {
                format!("[{ip}]:{port}")
            } else {
                format!("{ip}:{port}")
            }
        })
        .collect()
}
