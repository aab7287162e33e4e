//! Destination ports of an edge: a short sorted list, or a bitmap once a scan makes it long.

use crate::proto::v1 as pb;

/// Beyond this many distinct ports a bitmap (8 KiB) is smaller than the list.
const LIST_LIMIT: usize = 512;

#[derive(Debug, Default)]
pub(super) enum PortSet {
    #[default]
    Empty,
    List(Vec<u16>),
    Bitmap(Box<[u64; 1024]>),
}

impl PortSet {
    pub fn insert(&mut self, port: u16) {
        match self {
            PortSet::Empty => *self = PortSet::List(vec![port]),
            PortSet::List(list) => match list.binary_search(&port) {
                Ok(_) => {}
                Err(at) if list.len() < LIST_LIMIT => list.insert(at, port),
                Err(_) => {
                    let mut bits = Box::new([0u64; 1024]);
                    for p in list.iter().copied().chain([port]) {
                        bits[usize::from(p) / 64] |= 1 << (p % 64);
                    }
                    *self = PortSet::Bitmap(bits);
                }
            },
            PortSet::Bitmap(bits) => bits[usize::from(port) / 64] |= 1 << (port % 64),
        }
    }

    fn sorted(&self) -> Vec<u16> {
        match self {
            PortSet::Empty => Vec::new(),
            PortSet::List(list) => list.clone(),
            PortSet::Bitmap(bits) => (0..=u16::MAX)
                .filter(|p| bits[usize::from(*p) / 64] & (1 << (p % 64)) != 0)
                .collect(),
        }
    }

    /// Consecutive ports folded into ranges, ascending.
    pub fn ranges(&self) -> Vec<pb::PortRange> {
        ranges_of(self.sorted().into_iter().map(u32::from))
    }
}

/// Ascending ports (duplicates allowed) folded into ranges.
pub(super) fn ranges_of(sorted: impl IntoIterator<Item = u32>) -> Vec<pb::PortRange> {
    let mut ranges: Vec<pb::PortRange> = Vec::new();
    for port in sorted {
        match ranges.last_mut() {
            Some(last) if port <= last.last.saturating_add(1) => last.last = last.last.max(port),
            _ => ranges.push(pb::PortRange {
                first: port,
                last: port,
            }),
        }
    }
    ranges
}

/// The union of range lists.
pub(super) fn union(lists: impl IntoIterator<Item = pb::PortRange>) -> Vec<pb::PortRange> {
    let mut all: Vec<pb::PortRange> = lists.into_iter().collect();
    all.sort_by_key(|r| (r.first, r.last));
    let mut merged: Vec<pb::PortRange> = Vec::new();
    for range in all {
        match merged.last_mut() {
            Some(last) if range.first <= last.last.saturating_add(1) => {
                last.last = last.last.max(range.last)
            }
            _ => merged.push(range),
        }
    }
    merged
}
