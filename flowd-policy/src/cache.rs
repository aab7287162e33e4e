//! The evaluation cache: a 128-bit fingerprint of everything in an endpoint
//! that can change a decision, so repeated flows skip evaluation.
//!
//! Pod names are left out (no decision depends on them, and results never
//! mention them), and an IP is reduced to the set of policy CIDRs containing it,
//! so all pods with the same labels share cache entries.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use ipnet::IpNet;

use crate::endpoint::{Endpoint, Transport};

/// Two independent multiply-xorshift lanes: cheap, and 128 bits make a
/// collision between distinct endpoints practically impossible.
#[derive(Clone, Copy)]
pub(crate) struct Fingerprint {
    a: u64,
    b: u64,
}

impl Default for Fingerprint {
    fn default() -> Self {
        Fingerprint {
            a: 0x243F_6A88_85A3_08D3,
            b: 0x1319_8A2E_0370_7344,
        }
    }
}

impl Fingerprint {
    #[inline]
    fn word(&mut self, w: u64) {
        self.a = (self.a ^ w).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        self.a ^= self.a >> 29;
        self.b = (self.b ^ w.rotate_left(17)).wrapping_mul(0xC2B2_AE3D_27D4_EB4F);
        self.b ^= self.b >> 31;
    }

    fn bytes(&mut self, data: &[u8]) {
        // Length first, so ("ab","c") and ("a","bc") differ.
        self.word(data.len() as u64);
        let mut chunks = data.chunks_exact(8);
        for c in &mut chunks {
            let mut buf = [0u8; 8];
            buf.copy_from_slice(c);
            self.word(u64::from_le_bytes(buf));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut buf = [0u8; 8];
            buf[..rest.len()].copy_from_slice(rest);
            self.word(u64::from_le_bytes(buf));
        }
    }

    fn str(&mut self, s: &str) {
        self.bytes(s.as_bytes());
    }

    fn finish(self) -> u128 {
        (u128::from(mix(self.a)) << 64) | u128::from(mix(self.b))
    }
}

/// The splitmix64 finaliser: spreads every input bit over the whole word.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Distinct CIDRs used by any policy. When there are at most 64, an address is
/// represented by which of them contain it; beyond that, by the address itself.
pub(crate) struct IpClasses {
    nets: Vec<IpNet>,
}

impl IpClasses {
    pub fn new(mut nets: Vec<IpNet>) -> IpClasses {
        nets.sort();
        nets.dedup();
        IpClasses { nets }
    }

    fn add_ip(&self, fp: &mut Fingerprint, ip: &IpAddr) {
        if self.nets.len() > 64 {
            match ip {
                IpAddr::V4(v4) => fp.word(u64::from(u32::from(*v4))),
                IpAddr::V6(v6) => {
                    let n = u128::from(*v6);
                    fp.word((n >> 64) as u64);
                    fp.word(n as u64);
                }
            }
            return;
        }
        let mut bits = 0u64;
        for (i, net) in self.nets.iter().enumerate() {
            if net.contains(ip) {
                bits |= 1 << i;
            }
        }
        // The family matters on its own (ipVersion rules).
        fp.word(if ip.is_ipv4() { 4 } else { 6 });
        fp.word(bits);
    }

    pub fn fingerprint(&self, ep: &Endpoint) -> u128 {
        let mut fp = Fingerprint::default();
        self.add_ip(&mut fp, &ep.ip);
        fp.word(u64::from(ep.host));
        match &ep.namespace {
            Some(ns) => fp.str(ns),
            None => fp.word(u64::MAX),
        }
        fp.word(ep.labels.len() as u64);
        for (k, v) in &ep.labels {
            fp.str(k);
            fp.str(v);
        }
        fp.word(ep.namespace_labels.len() as u64);
        for (k, v) in &ep.namespace_labels {
            fp.str(k);
            fp.str(v);
        }
        match &ep.service_account {
            Some(sa) => fp.str(sa),
            None => fp.word(u64::MAX),
        }
        fp.word(ep.service_account_labels.len() as u64);
        for (k, v) in &ep.service_account_labels {
            fp.str(k);
            fp.str(v);
        }
        fp.word(ep.services.len() as u64);
        for membership in &ep.services {
            fp.str(&membership.service);
            fp.word(membership.ports.len() as u64);
            for (protocol, port) in &membership.ports {
                fp.word(u64::from(*port) | (u64::from(protocol.number()) << 16));
            }
        }
        fp.word(ep.named_ports.len() as u64);
        for np in &ep.named_ports {
            fp.str(&np.name);
            fp.word(u64::from(np.port) | (u64::from(np.protocol.number()) << 16));
        }
        fp.finish()
    }
}

/// (source fingerprint, destination fingerprint, port, protocol number, `extra_key`).
pub(crate) type CacheKey = (u128, u128, u16, u8, u64);

/// The source port (when the policies read source ports) and the ICMP message, each with a
/// presence bit, so "unknown" and "0" stay apart.
pub(crate) fn extra_key(transport: &Transport, with_source_port: bool) -> u64 {
    let source_port = match transport.source_port {
        Some(port) if with_source_port => (1 << 16) | u64::from(port),
        _ => 0,
    };
    let icmp = match transport.icmp {
        Some(icmp) => (1 << 16) | (u64::from(icmp.kind) << 8) | u64::from(icmp.code),
        None => 0,
    };
    source_port | (icmp << 17)
}

/// Folds the already well-mixed key words and avalanches at the end, so the
/// low bits hashbrown uses for buckets depend on every field.
#[derive(Default)]
pub(crate) struct KeyHasher(u64);

impl KeyHasher {
    #[inline]
    fn add(&mut self, w: u64) {
        self.0 = (self.0.rotate_left(23) ^ w).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

impl Hasher for KeyHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.add(u64::from(b));
        }
    }
    fn write_u128(&mut self, n: u128) {
        self.add(n as u64);
        self.add((n >> 64) as u64);
    }
    fn write_u16(&mut self, n: u16) {
        self.add(u64::from(n));
    }
    fn write_u64(&mut self, n: u64) {
        self.add(n);
    }
    fn write_u8(&mut self, n: u8) {
        self.add(u64::from(n));
    }
    fn finish(&self) -> u64 {
        mix(self.0)
    }
}

/// Hit/miss counters and size, for status output and the benchmark.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    pub hits: u64,
    pub misses: u64,
    pub entries: usize,
    pub capacity: usize,
}

pub(crate) struct EvalCache<T> {
    map: HashMap<CacheKey, Arc<T>, BuildHasherDefault<KeyHasher>>,
    capacity: usize,
    hits: u64,
    misses: u64,
}

impl<T> EvalCache<T> {
    pub fn new(capacity: usize) -> Self {
        EvalCache {
            map: HashMap::default(),
            capacity,
            hits: 0,
            misses: 0,
        }
    }

    pub fn get(&mut self, key: &CacheKey) -> Option<Arc<T>> {
        let hit = self.map.get(key).cloned();
        if hit.is_some() {
            self.hits += 1;
        } else {
            self.misses += 1;
        }
        hit
    }

    pub fn insert(&mut self, key: CacheKey, value: Arc<T>) {
        if self.capacity == 0 {
            return;
        }
        // Dropping everything is crude but keeps memory bounded without LRU
        // bookkeeping on the hot path; working sets refill quickly.
        if self.map.len() >= self.capacity {
            self.map.clear();
        }
        self.map.insert(key, value);
    }

    pub fn clear(&mut self) {
        self.map.clear();
    }

    pub fn stats(&self) -> CacheStats {
        CacheStats {
            hits: self.hits,
            misses: self.misses,
            entries: self.map.len(),
            capacity: self.capacity,
        }
    }
}

/// A poisoned lock only means another thread panicked mid-insert; the map is
/// still usable, so take it rather than propagate the panic.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    }
}
