//! Endpoint lookups in the metadata index and its memory.

use super::*;

/// Metadata lookups per flow endpoint and the index's memory, against a bare address map.
pub(crate) fn enrichment() -> anyhow::Result<Vec<Row>> {
    use flowd::enrich::MetadataIndex;
    let mut rows = Vec::new();
    for pods in [10_000u32, 100_000] {
        let address = |i: u32| IpAddr::from([10, (i >> 16) as u8, (i >> 8) as u8, i as u8]);
        let (index, index_bytes) = counting_heap(|| {
            let mut index = MetadataIndex::default();
            for ns in 0..100 {
                let name = format!("ns-{ns}");
                index.add_namespace(
                    &name,
                    [
                        ("kubernetes.io/metadata.name".to_owned(), name.clone()),
                        ("team".to_owned(), format!("team-{}", ns % 10)),
                    ]
                    .into_iter()
                    .collect(),
                );
            }
            for i in 0..pods {
                // Deployments of 20 replicas (10,000 pods: 500 of them): replicas share labels.
                let app = i % (pods / 20);
                index.add_pod(flowd::enrich::PodInfo {
                    named_ports: vec![flowd::policy::NamedPort {
                        name: "http".to_owned(),
                        port: 8080,
                        protocol: flowd::policy::Protocol::Tcp,
                    }],
                    uid: format!("3f0c2a1e-8d5b-4c6f-9a7e-{i:012}"),
                    namespace: format!("ns-{}", app % 100),
                    name: format!("app-{app}-7d9f8c6b5-{i:05}"),
                    labels: [
                        ("app".to_owned(), format!("app-{app}")),
                        ("tier".to_owned(), "web".to_owned()),
                        ("version".to_owned(), format!("v{}", app % 3)),
                        ("pod-template-hash".to_owned(), "7d9f8c6b5".to_owned()),
                    ]
                    .into_iter()
                    .collect(),
                    owner: Some(flowd::enrich::Workload::new(
                        "ReplicaSet",
                        &format!("app-{app}-7d9f8c6b5"),
                    )),
                    node: format!("node-{}", i % 50),
                    service_account: "default".into(),
                    host_ip: None,
                    ips: vec![address(i)],
                    since: None,
                });
            }
            index.finish();
            index
        });
        let now = SystemTime::now();
        let lookups = 5_000_000u32;
        let query = |n: u32| (address(n.wrapping_mul(2_654_435_761) % pods), now);
        let started = Instant::now();
        let mut named = 0usize;
        for n in 0..lookups {
            // One at a time, as a caller without a batch would.
            let meta = index.lookup(query(n).0, now);
            named += usize::from(!std::hint::black_box(&meta).name.is_empty());
        }
        let single_rate = f64::from(lookups) / started.elapsed().as_secs_f64();
        // What the enrichment stage does: a batch's endpoints at once (two per record).
        let batch = 512u32;
        let started = Instant::now();
        for first in (0..lookups).step_by(batch as usize) {
            let queries: Vec<_> = (first..first + batch).map(query).collect();
            let metas = index.lookup_many(&queries);
            named += std::hint::black_box(&metas)
                .iter()
                .filter(|meta| !meta.name.is_empty())
                .count();
        }
        let rate = f64::from(lookups) / started.elapsed().as_secs_f64();
        let plain: std::collections::HashMap<IpAddr, u32> =
            (0..pods).map(|i| (address(i), i)).collect();
        let started = Instant::now();
        let mut found = 0u64;
        for n in 0..lookups {
            found += u64::from(
                *plain
                    .get(&address(n.wrapping_mul(2_654_435_761) % pods))
                    .unwrap_or(&0),
            );
        }
        let plain_rate = f64::from(lookups) / started.elapsed().as_secs_f64();
        anyhow::ensure!(named > 0 && found > 0);
        rows.push(row(
            &format!("endpoint lookups, {pods} pods indexed, batches of {batch} as the enrichment stage does (lookups/s)"),
            format!("{rate:.0}"),
            format!("{plain_rate:.0} (bare address map)"),
            rate / plain_rate,
            ">= 5000000",
        ));
        rows.push(row(
            &format!("endpoint lookups, {pods} pods indexed, one at a time (lookups/s)"),
            format!("{single_rate:.0}"),
            format!("{plain_rate:.0} (bare address map)"),
            single_rate / plain_rate,
            "-",
        ));
        rows.push(row(
            &format!("metadata index memory, {pods} pods (MiB of heap)"),
            format!("{:.1}", index_bytes as f64 / (1024.0 * 1024.0)),
            "-".into(),
            1.0,
            "< 100 at 100k",
        ));
    }
    Ok(rows)
}
