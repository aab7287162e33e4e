//! Keeping the attachments in line with the interfaces there are: one link event at a time, or
//! all at once from a fresh list when notifications were lost.

use std::collections::HashSet;

use aya::{
    maps::{HashMap, MapData},
    Ebpf,
};

use super::{Attachments, LinkEvent};
use crate::{
    model::SharedInterfaces,
    telemetry::{AttachedInterface, Telemetry},
};

/// What link events change, borrowed from the capture task for one event.
pub struct Following<'a> {
    pub ebpf: &'a mut Ebpf,
    pub attachments: &'a mut Attachments,
    pub peer_netns: &'a mut HashMap<MapData, u32, u32>,
    /// Interface names to follow; empty follows every non-loopback interface.
    pub names: &'a [String],
    pub interfaces: &'a SharedInterfaces,
    pub telemetry: &'a Telemetry,
}

impl Following<'_> {
    /// A link appeared or changed.
    pub fn added(&mut self, name: &str, index: u32, loopback: bool, peer: Option<u32>) {
        let wanted = if self.names.is_empty() {
            !loopback
        } else {
            self.names.iter().any(|n| n == name)
        };
        if wanted && !self.attachments.is_attached(index) {
            match self.attachments.add(self.ebpf, name, index) {
                Ok(_) => publish_interfaces(self.attachments, self.interfaces, self.telemetry),
                // Often the link vanished again (moved into a pod's namespace).
                Err(err) => tracing::debug!(interface = %name, error = %err, "not attached"),
            }
        }
        // A veth's peer moves into a pod's namespace after the link appears.
        if self.attachments.is_attached(index) {
            note_peer(self.peer_netns, index, peer);
        }
    }

    pub fn removed(&mut self, index: u32) {
        note_peer(self.peer_netns, index, None);
        if let Some(gone) = self.attachments.remove(index) {
            tracing::info!(interface = %gone.name, ifindex = index, "interface removed");
            publish_interfaces(self.attachments, self.interfaces, self.telemetry);
        }
    }

    /// Attaches to every wanted link in `current` (a complete dump of the links) and forgets
    /// every attachment whose link is not in it.
    pub fn resync(&mut self, current: Vec<LinkEvent>) {
        let mut present = HashSet::new();
        for event in current {
            if let LinkEvent::Added {
                name,
                index,
                loopback,
                peer_netns,
            } = event
            {
                present.insert(index);
                self.added(&name, index, loopback, peer_netns);
            }
        }
        let gone: Vec<u32> = self
            .attachments
            .attached
            .iter()
            .map(|a| a.interface.index)
            .filter(|index| !present.contains(index))
            .collect();
        for index in gone {
            self.removed(index);
        }
    }
}

/// Publishes the current attachments to the flow stage and to status.
pub(super) fn publish_interfaces(
    attachments: &Attachments,
    interfaces: &SharedInterfaces,
    telemetry: &Telemetry,
) {
    if let Ok(mut index) = interfaces.write() {
        if let Some(first) = attachments.attached.first() {
            index.netns_cookie = first.interface.netns_cookie;
        }
        index.by_index = attachments
            .attached
            .iter()
            .map(|a| (a.interface.index, a.interface.clone()))
            .collect();
    }
    telemetry.set_interfaces(
        attachments
            .attached
            .iter()
            .map(|a| AttachedInterface {
                name: a.interface.name.clone(),
                index: a.interface.index,
                netns_cookie: a.interface.netns_cookie,
                netns: a.interface.netns.clone(),
                mode: a.mode.as_str(),
            })
            .collect(),
    );
}

/// Tells the tc programs in which namespace the far end of interface `index` is, or forgets it.
fn note_peer(map: &mut HashMap<MapData, u32, u32>, index: u32, peer: Option<u32>) {
    let result = match peer {
        Some(netns) => map.insert(index, netns, 0),
        None => match map.remove(&index) {
            Err(aya::maps::MapError::KeyNotFound) => Ok(()),
            other => other,
        },
    };
    if let Err(err) = result {
        // The far end's process is then not named; nothing else depends on it.
        tracing::debug!(ifindex = index, error = %err, "updating the peer namespace map");
    }
}
