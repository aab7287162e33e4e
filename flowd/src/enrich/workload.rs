//! Owner chains to workloads: a pod's controller (a ReplicaSet, a Job) is followed to the
//! Deployment or CronJob that made it when that object is known (watched from the API or read
//! from a file). Unknown owners fall back to the names the controllers give what they make.

use std::collections::{BTreeMap, HashMap};

use crate::model::{Workload, WorkloadKind};

/// ReplicaSets and Jobs by namespace and name, with their own controller (if any).
#[derive(Default)]
pub struct Owners {
    by_object: HashMap<(WorkloadKind, String, String), Option<Workload>>,
}

impl Owners {
    /// Records that `kind` `namespace/name` is controlled by `owner` (None: nothing owns it).
    /// Only intermediate kinds (ReplicaSet, Job) are kept: everything else is a workload in its
    /// own right.
    pub fn add(&mut self, kind: &str, namespace: &str, name: &str, owner: Option<Workload>) {
        let kind = WorkloadKind::parse(kind);
        if !kind.is_intermediate() {
            return;
        }
        self.by_object
            .insert((kind, namespace.to_owned(), name.to_owned()), owner);
    }

    /// The workload behind a pod whose controller is `owner`.
    pub fn resolve(
        &self,
        namespace: &str,
        owner: Option<&Workload>,
        labels: &BTreeMap<String, String>,
    ) -> Option<Workload> {
        let owner = owner?;
        if !owner.kind.is_intermediate() {
            return Some(owner.clone());
        }
        match self
            .by_object
            .get(&(owner.kind.clone(), namespace.to_owned(), owner.name.clone()))
        {
            Some(Some(controller)) => Some(controller.clone()),
            Some(None) => Some(owner.clone()),
            None => Some(by_naming(owner, labels)),
        }
    }
}

/// What the controllers' naming says when the intermediate object is not known: a ReplicaSet is
/// its Deployment's name plus the pod-template-hash; a CronJob's Job is its name plus the
/// scheduled time in minutes.
fn by_naming(owner: &Workload, labels: &BTreeMap<String, String>) -> Workload {
    match owner.kind {
        WorkloadKind::ReplicaSet => labels
            .get("pod-template-hash")
            .and_then(|hash| owner.name.strip_suffix(&format!("-{hash}")))
            .map_or_else(|| owner.clone(), |d| Workload::new("Deployment", d)),
        WorkloadKind::Job => match owner.name.rsplit_once('-') {
            Some((cronjob, suffix))
                if suffix.len() >= 8 && suffix.chars().all(|c| c.is_ascii_digit()) =>
            {
                Workload::new("CronJob", cronjob)
            }
            _ => owner.clone(),
        },
        _ => owner.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn known_intermediates_name_their_controller_and_unknown_ones_fall_back_to_naming() {
        let mut owners = Owners::default();
        owners.add(
            "ReplicaSet",
            "shop",
            "web-x1",
            Some(Workload::new("Deployment", "storefront")),
        );
        owners.add("ReplicaSet", "shop", "bare", None);
        owners.add(
            "Job",
            "shop",
            "report-manual",
            Some(Workload::new("CronJob", "report")),
        );
        let none = labels(&[]);
        let resolve = |ns: &str, kind: &str, name: &str, labels: &BTreeMap<String, String>| {
            owners.resolve(ns, Some(&Workload::new(kind, name)), labels)
        };
        assert_eq!(
            resolve("shop", "ReplicaSet", "web-x1", &none),
            Some(Workload::new("Deployment", "storefront")),
            "the watched owner wins over any naming"
        );
        assert_eq!(
            resolve("shop", "ReplicaSet", "bare", &none),
            Some(Workload::new("ReplicaSet", "bare"))
        );
        assert_eq!(
            resolve("shop", "Job", "report-manual", &none),
            Some(Workload::new("CronJob", "report"))
        );
        assert_eq!(
            resolve(
                "other",
                "ReplicaSet",
                "web-x1",
                &labels(&[("pod-template-hash", "x1")])
            ),
            Some(Workload::new("Deployment", "web")),
            "another namespace's ReplicaSet is not this one: naming decides"
        );
        assert_eq!(
            resolve("shop", "Job", "backup-28950000", &none),
            Some(Workload::new("CronJob", "backup"))
        );
        assert_eq!(
            resolve("shop", "Job", "once", &none),
            Some(Workload::new("Job", "once"))
        );
        assert_eq!(
            resolve("shop", "StatefulSet", "db", &none),
            Some(Workload::new("StatefulSet", "db"))
        );
        assert_eq!(owners.resolve("shop", None, &none), None);
    }
}
