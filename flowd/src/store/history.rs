use std::{
    collections::VecDeque,
    sync::{Arc, Mutex},
};

use crate::flow::FlowRecord;

/// A record and its position in the node's history.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredFlow {
    pub cursor: u64,
    pub record: FlowRecord,
}

/// Bounded in-memory history: the newest `capacity` records, oldest dropped first.
#[derive(Debug)]
pub struct History {
    capacity: usize,
    inner: Mutex<Inner>,
}

#[derive(Debug)]
struct Inner {
    records: VecDeque<Arc<StoredFlow>>,
    next_cursor: u64,
}

impl History {
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            inner: Mutex::new(Inner {
                records: VecDeque::with_capacity(capacity.min(1 << 16)),
                next_cursor: 1,
            }),
        }
    }

    /// Appends records, giving each the next cursor; returns them as stored.
    pub fn append(&self, records: Vec<FlowRecord>) -> Vec<Arc<StoredFlow>> {
        let Ok(mut inner) = self.inner.lock() else {
            return Vec::new();
        };
        let mut stored = Vec::with_capacity(records.len());
        for record in records {
            let flow = Arc::new(StoredFlow {
                cursor: inner.next_cursor,
                record,
            });
            inner.next_cursor += 1;
            if inner.records.len() == self.capacity {
                inner.records.pop_front();
            }
            inner.records.push_back(flow.clone());
            stored.push(flow);
        }
        stored
    }

    /// The newest `n` records, oldest first.
    pub fn last(&self, n: usize) -> Vec<Arc<StoredFlow>> {
        let Ok(inner) = self.inner.lock() else {
            return Vec::new();
        };
        let skip = inner.records.len().saturating_sub(n);
        inner.records.iter().skip(skip).cloned().collect()
    }

    pub fn len(&self) -> usize {
        self.inner.lock().map(|i| i.records.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// First and last cursor held, or `None` when empty.
    pub fn bounds(&self) -> Option<(u64, u64)> {
        let inner = self.inner.lock().ok()?;
        Some((inner.records.front()?.cursor, inner.records.back()?.cursor))
    }
}
