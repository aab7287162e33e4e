//! Just enough of the BPF Type Format to find struct member offsets and enum values in the
//! running kernel's BTF (/sys/kernel/btf/vmlinux).
//!
//! aya-obj parses BTF too but keeps members and enum values crate-private, and the maintained
//! standalone parser (btf-rs) is LGPL; the format subset needed here is small and stable.

use std::{collections::HashMap, path::Path};

#[derive(Debug, thiserror::Error)]
pub enum BtfError {
    #[error("cannot read kernel BTF {path}: {source} (the kernel needs CONFIG_DEBUG_INFO_BTF for drop reasons)")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("kernel BTF is malformed: {0}")]
    Malformed(&'static str),
    #[error("kernel BTF has no {0}")]
    Missing(String),
}

const MAGIC: u16 = 0xeb9f;
const KIND_INT: u32 = 1;
const KIND_PTR: u32 = 2;
const KIND_ARRAY: u32 = 3;
const KIND_STRUCT: u32 = 4;
const KIND_UNION: u32 = 5;
const KIND_ENUM: u32 = 6;
const KIND_FWD: u32 = 7;
const KIND_TYPEDEF: u32 = 8;
const KIND_VOLATILE: u32 = 9;
const KIND_CONST: u32 = 10;
const KIND_RESTRICT: u32 = 11;
const KIND_FUNC: u32 = 12;
const KIND_FUNC_PROTO: u32 = 13;
const KIND_VAR: u32 = 14;
const KIND_DATASEC: u32 = 15;
const KIND_FLOAT: u32 = 16;
const KIND_DECL_TAG: u32 = 17;
const KIND_TYPE_TAG: u32 = 18;
const KIND_ENUM64: u32 = 19;

#[derive(Debug, Clone)]
struct Member {
    name: u32,
    type_id: u32,
    bit_offset: u32,
}

#[derive(Debug, Clone)]
enum Type {
    Composite {
        name: u32,
        members: Vec<Member>,
    },
    Enum {
        name: u32,
        values: Vec<(u32, i64)>,
    },
    /// Typedefs and qualifiers: resolve to the referenced type.
    Alias(u32),
    Other,
}

pub struct KernelBtf {
    types: Vec<Type>,
    strings: Vec<u8>,
    by_name: HashMap<String, Vec<u32>>,
}

fn u32_at(data: &[u8], at: usize) -> Result<u32, BtfError> {
    data.get(at..at + 4)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .ok_or(BtfError::Malformed("truncated type section"))
}

impl KernelBtf {
    pub fn from_sys_fs() -> Result<Self, BtfError> {
        Self::from_file(Path::new("/sys/kernel/btf/vmlinux"))
    }

    pub fn from_file(path: &Path) -> Result<Self, BtfError> {
        let data = std::fs::read(path).map_err(|source| BtfError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&data)
    }

    pub fn parse(data: &[u8]) -> Result<Self, BtfError> {
        if data.len() < 24 || u16::from_le_bytes([data[0], data[1]]) != MAGIC {
            return Err(BtfError::Malformed("not little-endian BTF"));
        }
        let hdr_len = u32_at(data, 4)? as usize;
        let type_off = u32_at(data, 8)? as usize;
        let type_len = u32_at(data, 12)? as usize;
        let str_off = u32_at(data, 16)? as usize;
        let str_len = u32_at(data, 20)? as usize;
        let types_start = hdr_len + type_off;
        let type_section = data
            .get(types_start..types_start + type_len)
            .ok_or(BtfError::Malformed("type section out of bounds"))?;
        let strings = data
            .get(hdr_len + str_off..hdr_len + str_off + str_len)
            .ok_or(BtfError::Malformed("string section out of bounds"))?
            .to_vec();

        // Type ids start at 1; index 0 is "void".
        let mut types = vec![Type::Other];
        let mut at = 0;
        while at < type_section.len() {
            let name = u32_at(type_section, at)?;
            let info = u32_at(type_section, at + 4)?;
            let size_or_type = u32_at(type_section, at + 8)?;
            let vlen = (info & 0xffff) as usize;
            let kind = (info >> 24) & 0x1f;
            let kind_flag = info >> 31 == 1;
            at += 12;
            let ty = match kind {
                KIND_STRUCT | KIND_UNION => {
                    let mut members = Vec::with_capacity(vlen);
                    for i in 0..vlen {
                        let base = at + i * 12;
                        let offset = u32_at(type_section, base + 8)?;
                        members.push(Member {
                            name: u32_at(type_section, base)?,
                            type_id: u32_at(type_section, base + 4)?,
                            bit_offset: if kind_flag {
                                offset & 0x00ff_ffff
                            } else {
                                offset
                            },
                        });
                    }
                    at += vlen * 12;
                    Type::Composite { name, members }
                }
                KIND_ENUM => {
                    let mut values = Vec::with_capacity(vlen);
                    for i in 0..vlen {
                        let base = at + i * 8;
                        values.push((
                            u32_at(type_section, base)?,
                            i64::from(u32_at(type_section, base + 4)? as i32),
                        ));
                    }
                    at += vlen * 8;
                    Type::Enum { name, values }
                }
                KIND_ENUM64 => {
                    let mut values = Vec::with_capacity(vlen);
                    for i in 0..vlen {
                        let base = at + i * 12;
                        let lo = u64::from(u32_at(type_section, base + 4)?);
                        let hi = u64::from(u32_at(type_section, base + 8)?);
                        values.push((u32_at(type_section, base)?, ((hi << 32) | lo) as i64));
                    }
                    at += vlen * 12;
                    Type::Enum { name, values }
                }
                KIND_TYPEDEF | KIND_VOLATILE | KIND_CONST | KIND_RESTRICT | KIND_TYPE_TAG => {
                    Type::Alias(size_or_type)
                }
                KIND_INT | KIND_VAR | KIND_DECL_TAG => {
                    at += 4;
                    Type::Other
                }
                KIND_ARRAY => {
                    at += 12;
                    Type::Other
                }
                KIND_FUNC_PROTO => {
                    at += vlen * 8;
                    Type::Other
                }
                KIND_DATASEC => {
                    at += vlen * 12;
                    Type::Other
                }
                KIND_PTR | KIND_FWD | KIND_FUNC | KIND_FLOAT => Type::Other,
                _ => return Err(BtfError::Malformed("unknown type kind")),
            };
            types.push(ty);
        }
        let mut btf = Self {
            types,
            strings,
            by_name: HashMap::new(),
        };
        for (id, ty) in btf.types.iter().enumerate() {
            let name = match ty {
                Type::Composite { name, .. } | Type::Enum { name, .. } => *name,
                _ => continue,
            };
            if name != 0 {
                let text = btf.string(name).to_owned();
                btf.by_name.entry(text).or_default().push(id as u32);
            }
        }
        Ok(btf)
    }

    fn string(&self, offset: u32) -> &str {
        let start = offset as usize;
        let rest = self.strings.get(start..).unwrap_or_default();
        let end = rest.iter().position(|b| *b == 0).unwrap_or(rest.len());
        std::str::from_utf8(&rest[..end]).unwrap_or("")
    }

    fn resolve(&self, mut id: u32) -> Option<&Type> {
        for _ in 0..16 {
            match self.types.get(id as usize)? {
                Type::Alias(next) => id = *next,
                other => return Some(other),
            }
        }
        None
    }

    fn composite(&self, name: &str) -> Option<&[Member]> {
        self.by_name
            .get(name)?
            .iter()
            .find_map(|id| match &self.types[*id as usize] {
                Type::Composite { members, .. } if !members.is_empty() => Some(members.as_slice()),
                _ => None,
            })
    }

    /// Bit offset of `member` inside `members`, looking through anonymous structs and unions.
    fn find(&self, members: &[Member], member: &str, depth: u32) -> Option<u32> {
        for m in members {
            if m.name != 0 && self.string(m.name) == member {
                return Some(m.bit_offset);
            }
        }
        if depth > 8 {
            return None;
        }
        for m in members.iter().filter(|m| m.name == 0) {
            if let Some(Type::Composite { members: inner, .. }) = self.resolve(m.type_id) {
                if let Some(offset) = self.find(inner, member, depth + 1) {
                    return Some(m.bit_offset + offset);
                }
            }
        }
        None
    }

    /// Byte offset of `structure.member` (members of anonymous unions/structs included).
    pub fn member_offset(&self, structure: &str, member: &str) -> Result<u32, BtfError> {
        let members = self
            .composite(structure)
            .ok_or_else(|| BtfError::Missing(format!("struct {structure}")))?;
        let bits = self
            .find(members, member, 0)
            .ok_or_else(|| BtfError::Missing(format!("member {structure}.{member}")))?;
        if bits % 8 != 0 {
            return Err(BtfError::Missing(format!(
                "byte-aligned member {structure}.{member}"
            )));
        }
        Ok(bits / 8)
    }

    /// The values of enum `name`, by value.
    pub fn enum_values(&self, name: &str) -> Result<Vec<(String, i64)>, BtfError> {
        let ids = self
            .by_name
            .get(name)
            .ok_or_else(|| BtfError::Missing(format!("enum {name}")))?;
        for id in ids {
            if let Type::Enum { values, .. } = &self.types[*id as usize] {
                return Ok(values
                    .iter()
                    .map(|(n, v)| (self.string(*n).to_owned(), *v))
                    .collect());
            }
        }
        Err(BtfError::Missing(format!("enum {name}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds a BTF blob: struct outer { int a; union { long b; struct { int c; int d; }; }; }
    /// and enum colour { RED = 1, BLUE = 7 }.
    fn sample() -> Vec<u8> {
        let strings = b"\0outer\0a\0b\0c\0d\0int\0colour\0RED\0BLUE\0".to_vec();
        let s = |name: &str| -> u32 {
            let needle = format!("\0{name}\0");
            strings
                .windows(needle.len())
                .position(|w| w == needle.as_bytes())
                .unwrap() as u32
                + 1
        };
        let mut types = Vec::new();
        let mut push = |words: &[u32]| {
            for w in words {
                types.extend_from_slice(&w.to_le_bytes());
            }
        };
        let info = |kind: u32, vlen: u32| (kind << 24) | vlen;
        // 1: int
        push(&[s("int"), info(KIND_INT, 0), 4, 32]);
        // 2: anonymous struct { c at 0, d at 32 bits }
        push(&[0, info(KIND_STRUCT, 2), 8, s("c"), 1, 0, s("d"), 1, 32]);
        // 3: anonymous union { b at 0, struct at 0 }
        push(&[0, info(KIND_UNION, 2), 8, s("b"), 1, 0, 0, 2, 0]);
        // 4: struct outer { a at 0, union at 64 bits }
        push(&[s("outer"), info(KIND_STRUCT, 2), 16, s("a"), 1, 0, 0, 3, 64]);
        // 5: enum colour
        push(&[
            s("colour"),
            info(KIND_ENUM, 2),
            4,
            s("RED"),
            1,
            s("BLUE"),
            7,
        ]);
        let mut blob = Vec::new();
        blob.extend_from_slice(&MAGIC.to_le_bytes());
        blob.extend_from_slice(&[1, 0]);
        for word in [
            24u32,
            0,
            types.len() as u32,
            types.len() as u32,
            strings.len() as u32,
        ] {
            blob.extend_from_slice(&word.to_le_bytes());
        }
        blob.extend(types);
        blob.extend(strings);
        blob
    }

    #[test]
    fn members_inside_anonymous_unions_and_structs() {
        let btf = KernelBtf::parse(&sample()).unwrap();
        assert_eq!(btf.member_offset("outer", "a").unwrap(), 0);
        assert_eq!(btf.member_offset("outer", "b").unwrap(), 8);
        assert_eq!(btf.member_offset("outer", "d").unwrap(), 12);
        assert!(btf.member_offset("outer", "zz").is_err());
        assert!(btf.member_offset("inner", "a").is_err());
    }

    #[test]
    fn enum_values_by_name() {
        let btf = KernelBtf::parse(&sample()).unwrap();
        assert_eq!(
            btf.enum_values("colour").unwrap(),
            vec![("RED".to_owned(), 1), ("BLUE".to_owned(), 7)]
        );
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(KernelBtf::parse(b"nope").is_err());
        let mut blob = sample();
        blob.truncate(40);
        assert!(KernelBtf::parse(&blob).is_err());
    }
}

#[cfg(test)]
mod running_kernel {
    use super::*;

    /// The running kernel's BTF, when it has one: every offset the drop program needs resolves.
    #[test]
    fn drop_program_offsets_resolve_on_this_kernel() {
        let Ok(btf) = KernelBtf::from_sys_fs() else {
            eprintln!("SKIPPED: no /sys/kernel/btf/vmlinux");
            return;
        };
        for (structure, member) in [
            ("sk_buff", "head"),
            ("sk_buff", "network_header"),
            ("sk_buff", "protocol"),
            ("sk_buff", "dev"),
            ("net_device", "ifindex"),
            ("net_device", "nd_net"),
            ("net", "net_cookie"),
        ] {
            let offset = btf.member_offset(structure, member).unwrap();
            eprintln!("{structure}.{member} = {offset}");
        }
        let reasons = btf.enum_values("skb_drop_reason").unwrap();
        assert!(reasons
            .iter()
            .any(|(n, _)| n == "SKB_DROP_REASON_NETFILTER_DROP"));
        assert!(reasons.iter().any(|(n, _)| n == "SKB_CONSUMED"));
    }
}
