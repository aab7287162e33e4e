//! A consumer's place in the cluster's stream: the cursor of the last record delivered from
//! each node, as one opaque token (`Checkpoint.resume_token`, `GetFlowsRequest.resume_token`).

use std::collections::BTreeMap;

use base64::Engine as _;
use prost::Message as _;

/// The token's version prefix: a later encoding gets a new one, and old tokens stay readable.
const PREFIX: &str = "r1.";

#[derive(Clone, PartialEq, prost::Message)]
struct Encoded {
    #[prost(message, repeated, tag = "1")]
    nodes: Vec<EncodedNode>,
    #[prost(uint64, tag = "2")]
    created_ns: u64,
}

#[derive(Clone, PartialEq, prost::Message)]
struct EncodedNode {
    #[prost(string, tag = "1")]
    node: String,
    #[prost(uint64, tag = "2")]
    cursor: u64,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("resume_token is not one this relay hands out ({0}); use the token of a Checkpoint event as it was sent")]
pub struct PositionError(String);

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Position {
    /// Node name -> cursor of the last record delivered (or skipped as a gap).
    pub cursors: BTreeMap<String, u64>,
    /// When the position was taken (ns): a node the token does not name starts there.
    pub created_ns: u64,
}

impl Position {
    pub fn encode(&self) -> String {
        let message = Encoded {
            nodes: self
                .cursors
                .iter()
                .map(|(node, cursor)| EncodedNode {
                    node: node.clone(),
                    cursor: *cursor,
                })
                .collect(),
            created_ns: self.created_ns,
        };
        format!(
            "{PREFIX}{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(message.encode_to_vec())
        )
    }

    pub fn decode(token: &str) -> Result<Self, PositionError> {
        let body = token
            .strip_prefix(PREFIX)
            .ok_or_else(|| PositionError(format!("it does not start with {PREFIX:?}")))?;
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(body)
            .map_err(|err| PositionError(err.to_string()))?;
        let message =
            Encoded::decode(bytes.as_slice()).map_err(|err| PositionError(err.to_string()))?;
        Ok(Self {
            cursors: message
                .nodes
                .into_iter()
                .map(|n| (n.node, n.cursor))
                .collect(),
            created_ns: message.created_ns,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_gives_back_its_position() {
        let position = Position {
            cursors: [("node-a".to_owned(), 41), ("node-b".to_owned(), 7)]
                .into_iter()
                .collect(),
            created_ns: 1_700_000_000_000_000_000,
        };
        let token = position.encode();
        assert!(token.starts_with(PREFIX));
        assert_eq!(Position::decode(&token).unwrap(), position);
    }

    #[test]
    fn nonsense_is_refused_not_guessed() {
        for token in ["", "r1.", "r1.!!!", "x1.AAAA", "r1.//8"] {
            if let Ok(position) = Position::decode(token) {
                // An empty body is a valid empty position; anything else must fail.
                assert!(token == "r1." && position == Position::default(), "{token}");
            }
        }
    }
}
