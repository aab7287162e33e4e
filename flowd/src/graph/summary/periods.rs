//! Open periods: the graph of each recent period of end times, folded as its records are
//! stored, until no more records can arrive for it and it is offered to the history.

use std::collections::BTreeMap;

use prost::Message as _;

use super::convert;
use crate::graph::GraphBuilder;
use crate::proto::v1 as pb;
use crate::store::{time_ns, FlowStore, Period, StoreError};

struct Open {
    builder: GraphBuilder,
    records: u64,
}

/// The periods being folded, by period.
#[derive(Default)]
pub struct Periods {
    open: BTreeMap<Period, Open>,
}

/// A period no longer folded, to be offered to the history.
pub struct ClosedPeriod {
    period: Period,
    records: u64,
    builder: GraphBuilder,
}

impl Periods {
    pub fn add(&mut self, flow: &pb::Flow) {
        let end = flow.end_time.as_ref().map_or(0, time_ns);
        let open = self
            .open
            .entry(Period::minute_of(end))
            .or_insert_with(|| Open {
                builder: GraphBuilder::keeping_all_pods(),
                records: 0,
            });
        // Counted whether or not the graph uses it: the history counts every record.
        open.records += 1;
        open.builder.add(flow);
    }

    /// Periods that ended at or before `before_ns`.
    pub fn take_closed(&mut self, before_ns: u64) -> Vec<ClosedPeriod> {
        // A period has ended by `before_ns` exactly when it precedes the one `before_ns` is in.
        let still_open = self.open.split_off(&Period::minute_of(before_ns));
        std::mem::replace(&mut self.open, still_open)
            .into_iter()
            .map(|(period, open)| ClosedPeriod {
                period,
                records: open.records,
                builder: open.builder,
            })
            .collect()
    }

    /// Every open period (at shutdown).
    pub fn take_all(&mut self) -> Vec<ClosedPeriod> {
        self.take_closed(u64::MAX)
    }

    /// Forgets every open period: some of their records were not seen.
    pub fn clear(&mut self) {
        self.open.clear();
    }

    pub fn len(&self) -> usize {
        self.open.len()
    }

    pub fn is_empty(&self) -> bool {
        self.open.is_empty()
    }
}

impl ClosedPeriod {
    pub fn period(&self) -> Period {
        self.period
    }

    #[cfg(test)]
    pub(super) fn builder_for_tests(&self) -> &GraphBuilder {
        &self.builder
    }

    /// Stores the period's summary; `false` when the history holds other records for it than
    /// were folded (it then stays read record by record).
    pub fn store(&self, store: &FlowStore) -> Result<bool, StoreError> {
        let summary = convert::summarise(&self.builder).encode_to_vec();
        store.put_summary(self.period, self.records, &summary)
    }
}
