//! The pipeline stage that counts: records pass through unchanged, in the same batch.

use std::sync::Arc;

use super::FlowMetrics;
use crate::{model::FlowRecord, pipeline::Stage};

pub struct Counting {
    pub metrics: Arc<FlowMetrics>,
}

impl Stage for Counting {
    type Input = FlowRecord;
    type Output = FlowRecord;
    const NAME: &'static str = "flow metrics";

    fn process(&mut self, batch: Vec<FlowRecord>) -> Vec<FlowRecord> {
        self.metrics.count(&batch);
        batch
    }
}
