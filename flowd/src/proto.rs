//! Code generated from proto/flowd/v1 (prost messages, tonic service, proto3 JSON mapping).
#![allow(clippy::all, missing_docs, unreachable_pub)]

pub mod v1 {
    tonic::include_proto!("flowd.v1");
    include!(concat!(env!("OUT_DIR"), "/flowd.v1.serde.rs"));
}

/// Encoded descriptors of every API file, for server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/flowd_descriptor.bin"));

/// An IP protocol by its proto name (`TCP`, `ICMPV6`, `GRE`), or its number when the proto
/// names none: how exporters and metrics label it.
pub fn protocol_name(protocol: i32) -> String {
    protocol_word(protocol).into_owned()
}

/// `protocol_name` without an allocation for the protocols the proto names.
pub fn protocol_word(protocol: i32) -> std::borrow::Cow<'static, str> {
    v1::Protocol::try_from(protocol).map_or_else(
        |_| protocol.to_string().into(),
        |p| p.as_str_name().trim_start_matches("PROTOCOL_").into(),
    )
}

/// An endpoint as `IP:PORT`, an IPv6 address in brackets (`[fd00::1]:80`) so its colons do not
/// run into the port's.
pub fn endpoint_text(ip: &str, port: u32) -> String {
    EndpointText { ip, port }.to_string()
}

/// `endpoint_text`, written where it is needed (no string of its own).
pub struct EndpointText<'a> {
    pub ip: &'a str,
    pub port: u32,
}

impl std::fmt::Display for EndpointText<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.ip.contains(':') {
            write!(f, "[{}]:{}", self.ip, self.port)
        } else {
            write!(f, "{}:{}", self.ip, self.port)
        }
    }
}

/// The proto3 JSON mapping names enum values and has none for an IP protocol the proto does not
/// list: such a protocol goes out as PROTOCOL_UNSPECIFIED in JSON (gRPC and the history keep the
/// number), so one exotic packet cannot fail an answer, a dump or an export line.
pub fn json_protocol(protocol: i32) -> i32 {
    if v1::Protocol::try_from(protocol).is_ok() {
        protocol
    } else {
        v1::Protocol::Unspecified as i32
    }
}

/// A flow in the proto3 JSON mapping, its protocol as `json_protocol` says.
pub fn flow_json(flow: &v1::Flow) -> serde_json::Result<String> {
    if json_protocol(flow.protocol) == flow.protocol {
        return serde_json::to_string(flow);
    }
    serde_json::to_string(&v1::Flow {
        protocol: json_protocol(flow.protocol),
        ..flow.clone()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_protocol_the_proto_does_not_name_still_writes_json() {
        let flow = v1::Flow {
            protocol: 253,
            ..Default::default()
        };
        assert!(
            serde_json::to_string(&flow).is_err(),
            "the mapping itself refuses"
        );
        // Written as UNSPECIFIED, which the mapping leaves out as the default.
        let line = flow_json(&flow).expect("written");
        let value: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert!(value.get("protocol").is_none(), "{line}");
        let gre = v1::Flow {
            protocol: 47,
            ..Default::default()
        };
        assert!(flow_json(&gre).unwrap().contains("PROTOCOL_GRE"));
    }
}
