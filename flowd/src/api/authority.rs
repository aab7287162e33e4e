//! Makes the HTTP/2 `:authority` of unix-socket clients acceptable to the server.
//!
//! gRPC clients connecting over a unix socket send what they were given as the authority:
//! grpcurl before 1.9, grpc-java and several Python versions send the socket path
//! (`/run/flowd/flowd.sock`) or its percent-encoding. hyper's h2 refuses such a request with
//! RST_STREAM(PROTOCOL_ERROR) before any service sees it, and has no setting to relax that
//! (hyperium/h2#487 is open). The authority means nothing on a local socket, so the unix
//! listener rewrites an authority that is not a valid URI authority to `localhost` on the way
//! in, and leaves every other byte as the client sent it.
//!
//! HPACK compresses header blocks against a table both ends keep, so the rewriter cannot edit
//! one block and forward the next untouched: it decodes every header block of the connection
//! with the client's table and encodes it again with its own, which the server's decoder
//! mirrors. The server's header table size is h2's default (4096 bytes, the encoder's too) and
//! its largest frame is the protocol's default 16 KiB; flowd changes neither.

use bytes::{BufMut, BytesMut};

const PREFACE_LEN: usize = 24;
const FRAME_HEADER_LEN: usize = 9;
const FRAME_HEADERS: u8 = 0x1;
const FRAME_CONTINUATION: u8 = 0x9;
const FLAG_END_STREAM: u8 = 0x1;
const FLAG_END_HEADERS: u8 = 0x4;
const FLAG_PADDED: u8 = 0x8;
const FLAG_PRIORITY: u8 = 0x20;
const PRIORITY_LEN: usize = 5;
/// SETTINGS_MAX_FRAME_SIZE's initial value, which the server keeps.
const MAX_FRAME_PAYLOAD: usize = 16_384;
/// A header block larger than this ends the connection; h2 refuses far smaller header lists.
pub const MAX_HEADER_BLOCK: usize = 1 << 20;
/// What a unix-socket client's unusable authority becomes.
const LOCAL_AUTHORITY: &[u8] = b"localhost";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthorityError {
    #[error("HTTP/2 header block larger than {MAX_HEADER_BLOCK} bytes")]
    HeaderBlockTooLarge,
    #[error("HTTP/2 frame of type {0:#x} inside a header block (only CONTINUATION may follow)")]
    InterruptedHeaderBlock(u8),
    #[error("HTTP/2 HEADERS frame shorter than its padding and priority fields")]
    MalformedHeaders,
    #[error("HTTP/2 header block does not decode: {0}")]
    Hpack(String),
}

enum State {
    /// The 24-byte client preface, passed through.
    Preface { remaining: usize },
    /// Collecting a 9-byte frame header.
    FrameHeader,
    /// Passing a non-header frame's payload through.
    Passthrough { remaining: usize },
    /// Collecting a HEADERS or CONTINUATION payload.
    HeaderPayload {
        kind: u8,
        flags: u8,
        remaining: usize,
    },
}

/// A header block being collected across HEADERS and CONTINUATION frames.
struct OpenBlock {
    stream_id: [u8; 4],
    end_stream: bool,
    priority: Option<[u8; PRIORITY_LEN]>,
    fragments: Vec<u8>,
}

/// The client-to-server byte stream of one connection, rewritten incrementally: feed it what the
/// client sent, read what the server should see.
pub struct AuthorityRewriter {
    state: State,
    header: [u8; FRAME_HEADER_LEN],
    header_len: usize,
    payload: Vec<u8>,
    open: Option<OpenBlock>,
    decoder: loona_hpack::Decoder<'static>,
    encoder: loona_hpack::Encoder<'static>,
}

impl Default for AuthorityRewriter {
    fn default() -> Self {
        Self {
            state: State::Preface {
                remaining: PREFACE_LEN,
            },
            header: [0; FRAME_HEADER_LEN],
            header_len: 0,
            payload: Vec::new(),
            open: None,
            decoder: loona_hpack::Decoder::new(),
            encoder: loona_hpack::Encoder::new(),
        }
    }
}

impl AuthorityRewriter {
    /// Consumes all of `input`, appending to `out` what can already be forwarded.
    pub fn feed(&mut self, mut input: &[u8], out: &mut BytesMut) -> Result<(), AuthorityError> {
        while !input.is_empty() {
            match self.state {
                State::Preface { remaining } | State::Passthrough { remaining } => {
                    let take = remaining.min(input.len());
                    out.put_slice(&input[..take]);
                    input = &input[take..];
                    self.state = match (&self.state, remaining - take) {
                        (_, 0) => State::FrameHeader,
                        (State::Preface { .. }, left) => State::Preface { remaining: left },
                        (_, left) => State::Passthrough { remaining: left },
                    };
                }
                State::FrameHeader => {
                    let take = (FRAME_HEADER_LEN - self.header_len).min(input.len());
                    self.header[self.header_len..self.header_len + take]
                        .copy_from_slice(&input[..take]);
                    self.header_len += take;
                    input = &input[take..];
                    if self.header_len == FRAME_HEADER_LEN {
                        self.header_len = 0;
                        self.start_frame(out)?;
                    }
                }
                State::HeaderPayload {
                    kind,
                    flags,
                    remaining,
                } => {
                    let take = remaining.min(input.len());
                    self.payload.extend_from_slice(&input[..take]);
                    input = &input[take..];
                    if remaining == take {
                        self.state = State::FrameHeader;
                        self.header_fragment(kind, flags, out)?;
                    } else {
                        self.state = State::HeaderPayload {
                            kind,
                            flags,
                            remaining: remaining - take,
                        };
                    }
                }
            }
        }
        Ok(())
    }

    fn start_frame(&mut self, out: &mut BytesMut) -> Result<(), AuthorityError> {
        let header = self.header;
        let len =
            usize::from(header[0]) << 16 | usize::from(header[1]) << 8 | usize::from(header[2]);
        let kind = header[3];
        let flags = header[4];
        let is_header_frame = kind == FRAME_HEADERS || kind == FRAME_CONTINUATION;
        if self.open.is_some() && kind != FRAME_CONTINUATION {
            return Err(AuthorityError::InterruptedHeaderBlock(kind));
        }
        if !is_header_frame || (kind == FRAME_CONTINUATION && self.open.is_none()) {
            // Not ours to rewrite (a stray CONTINUATION is h2's protocol error to report).
            out.put_slice(&header);
            self.state = if len == 0 {
                State::FrameHeader
            } else {
                State::Passthrough { remaining: len }
            };
            return Ok(());
        }
        let collected = self.open.as_ref().map_or(0, |b| b.fragments.len());
        if collected + len > MAX_HEADER_BLOCK {
            return Err(AuthorityError::HeaderBlockTooLarge);
        }
        self.payload.clear();
        if len == 0 {
            self.state = State::FrameHeader;
            return self.header_fragment(kind, flags, out);
        }
        self.state = State::HeaderPayload {
            kind,
            flags,
            remaining: len,
        };
        Ok(())
    }

    /// A complete HEADERS or CONTINUATION payload is in `self.payload`.
    fn header_fragment(
        &mut self,
        kind: u8,
        flags: u8,
        out: &mut BytesMut,
    ) -> Result<(), AuthorityError> {
        let payload = std::mem::take(&mut self.payload);
        if kind == FRAME_HEADERS {
            let mut body = payload.as_slice();
            let mut padding = 0;
            if flags & FLAG_PADDED != 0 {
                let (&pad, rest) = body.split_first().ok_or(AuthorityError::MalformedHeaders)?;
                padding = usize::from(pad);
                body = rest;
            }
            let priority = if flags & FLAG_PRIORITY != 0 {
                let (fields, rest) = body
                    .split_at_checked(PRIORITY_LEN)
                    .ok_or(AuthorityError::MalformedHeaders)?;
                body = rest;
                let mut priority = [0; PRIORITY_LEN];
                priority.copy_from_slice(fields);
                Some(priority)
            } else {
                None
            };
            let fragment_len = body
                .len()
                .checked_sub(padding)
                .ok_or(AuthorityError::MalformedHeaders)?;
            let mut stream_id = [0; 4];
            stream_id.copy_from_slice(&self.header[5..9]);
            self.open = Some(OpenBlock {
                stream_id,
                end_stream: flags & FLAG_END_STREAM != 0,
                priority,
                fragments: body[..fragment_len].to_vec(),
            });
        } else if let Some(block) = self.open.as_mut() {
            block.fragments.extend_from_slice(&payload);
        }
        self.payload = payload;
        if flags & FLAG_END_HEADERS != 0 {
            if let Some(block) = self.open.take() {
                self.emit(block, out)?;
            }
        }
        Ok(())
    }

    fn emit(&mut self, block: OpenBlock, out: &mut BytesMut) -> Result<(), AuthorityError> {
        let mut fields: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        self.decoder
            .decode_with_cb(&block.fragments, |name, value| {
                fields.push((name.into_owned(), value.into_owned()))
            })
            .map_err(|err| AuthorityError::Hpack(format!("{err:?}")))?;
        for (name, value) in &mut fields {
            if name.as_slice() == b":authority" && !is_valid_authority(value) {
                *value = LOCAL_AUTHORITY.to_vec();
            }
        }
        let encoded = self
            .encoder
            .encode(fields.iter().map(|(n, v)| (n.as_slice(), v.as_slice())));
        let priority_len = block.priority.map_or(0, |_| PRIORITY_LEN);
        let first_room = MAX_FRAME_PAYLOAD - priority_len;
        let (first, mut rest) = encoded.split_at(first_room.min(encoded.len()));
        let mut flags = 0;
        if block.end_stream {
            flags |= FLAG_END_STREAM;
        }
        if block.priority.is_some() {
            flags |= FLAG_PRIORITY;
        }
        if rest.is_empty() {
            flags |= FLAG_END_HEADERS;
        }
        put_frame_header(
            out,
            first.len() + priority_len,
            FRAME_HEADERS,
            flags,
            block.stream_id,
        );
        if let Some(priority) = block.priority {
            out.put_slice(&priority);
        }
        out.put_slice(first);
        while !rest.is_empty() {
            let (chunk, tail) = rest.split_at(MAX_FRAME_PAYLOAD.min(rest.len()));
            rest = tail;
            let flags = if rest.is_empty() { FLAG_END_HEADERS } else { 0 };
            put_frame_header(out, chunk.len(), FRAME_CONTINUATION, flags, block.stream_id);
            out.put_slice(chunk);
        }
        Ok(())
    }
}

/// The test h2 applies before refusing a request.
fn is_valid_authority(value: &[u8]) -> bool {
    http::uri::Authority::try_from(value).is_ok()
}

fn put_frame_header(out: &mut BytesMut, len: usize, kind: u8, flags: u8, stream_id: [u8; 4]) {
    let len = len as u32; // at most MAX_FRAME_PAYLOAD
    out.put_slice(&len.to_be_bytes()[1..]);
    out.put_u8(kind);
    out.put_u8(flags);
    out.put_slice(&stream_id);
}

#[cfg(test)]
#[path = "authority/tests.rs"]
mod tests;
