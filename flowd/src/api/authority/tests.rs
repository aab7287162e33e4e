use super::*;

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let mut out = BytesMut::new();
    put_frame_header(&mut out, payload.len(), kind, flags, stream.to_be_bytes());
    out.put_slice(payload);
    out.to_vec()
}

fn request(authority: &str, path: &str) -> Vec<(Vec<u8>, Vec<u8>)> {
    [
        (":method", "POST"),
        (":scheme", "http"),
        (":path", path),
        (":authority", authority),
        ("content-type", "application/grpc"),
        ("te", "trailers"),
    ]
    .iter()
    .map(|(n, v)| (n.as_bytes().to_vec(), v.as_bytes().to_vec()))
    .collect()
}

fn encode(encoder: &mut loona_hpack::Encoder<'static>, fields: &[(Vec<u8>, Vec<u8>)]) -> Vec<u8> {
    encoder.encode(fields.iter().map(|(n, v)| (n.as_slice(), v.as_slice())))
}

/// Feeds `input` in pieces of `chunk` bytes, the way reads split it.
fn rewrite(input: &[u8], chunk: usize) -> Result<Vec<u8>, AuthorityError> {
    let mut rewriter = AuthorityRewriter::default();
    let mut out = BytesMut::new();
    for piece in input.chunks(chunk) {
        rewriter.feed(piece, &mut out)?;
    }
    Ok(out.to_vec())
}

struct Frame {
    kind: u8,
    flags: u8,
    stream: u32,
    payload: Vec<u8>,
}

fn frames(mut bytes: &[u8]) -> Vec<Frame> {
    assert_eq!(&bytes[..PREFACE.len()], PREFACE);
    bytes = &bytes[PREFACE.len()..];
    let mut frames = Vec::new();
    while !bytes.is_empty() {
        let len = usize::from(bytes[0]) << 16 | usize::from(bytes[1]) << 8 | usize::from(bytes[2]);
        let stream = u32::from_be_bytes([bytes[5], bytes[6], bytes[7], bytes[8]]);
        frames.push(Frame {
            kind: bytes[3],
            flags: bytes[4],
            stream,
            payload: bytes[9..9 + len].to_vec(),
        });
        bytes = &bytes[9 + len..];
    }
    frames
}

/// Header lists of the rewritten stream as the server's decoder sees them, with each HEADERS
/// frame's CONTINUATIONs joined.
fn server_view(frames: &[Frame]) -> Vec<Vec<(Vec<u8>, Vec<u8>)>> {
    let mut decoder = loona_hpack::Decoder::new();
    let mut lists = Vec::new();
    let mut block = Vec::new();
    for f in frames {
        match f.kind {
            FRAME_HEADERS => {
                assert_eq!(f.flags & FLAG_PADDED, 0, "padding is stripped");
                let skip = if f.flags & FLAG_PRIORITY != 0 {
                    PRIORITY_LEN
                } else {
                    0
                };
                block = f.payload[skip..].to_vec();
            }
            FRAME_CONTINUATION => block.extend_from_slice(&f.payload),
            _ => continue,
        }
        assert!(f.payload.len() <= MAX_FRAME_PAYLOAD);
        if f.flags & FLAG_END_HEADERS != 0 {
            lists.push(
                decoder
                    .decode(&block)
                    .expect("server decodes the rewritten block"),
            );
        }
    }
    lists
}

#[test]
fn socket_path_authority_becomes_localhost_and_other_fields_stay() {
    let mut client = loona_hpack::Encoder::new();
    let settings = frame(0x4, 0, 0, &[0, 3, 0, 0, 0, 100]);
    let data = frame(0x0, FLAG_END_STREAM, 1, b"\0\0\0\0\x02ab");
    let headers = frame(
        FRAME_HEADERS,
        FLAG_END_HEADERS,
        1,
        &encode(
            &mut client,
            &request("/run/flowd/flowd.sock", "/flowd.v1.FlowService/GetStatus"),
        ),
    );
    let input = [PREFACE, &settings, &headers, &data].concat();
    for chunk in [1, 2, 7, 4096] {
        let out = frames(&rewrite(&input, chunk).unwrap());
        assert_eq!(out.len(), 3);
        assert_eq!(
            (out[0].kind, &out[0].payload),
            (0x4, &settings[9..].to_vec())
        );
        assert_eq!(
            (out[2].kind, out[2].flags, &out[2].payload),
            (0x0, FLAG_END_STREAM, &data[9..].to_vec())
        );
        let lists = server_view(&out);
        assert_eq!(
            lists,
            vec![request("localhost", "/flowd.v1.FlowService/GetStatus")]
        );
        assert_eq!(out[1].stream, 1);
    }
}

#[test]
fn valid_authorities_are_kept_and_percent_encoded_paths_replaced() {
    let mut client = loona_hpack::Encoder::new();
    let mut input = PREFACE.to_vec();
    for (stream, authority) in [
        (1, "localhost:50051"),
        (3, "%2Frun%2Fflowd.sock"),
        (5, "flowd.example"),
    ] {
        input.extend(frame(
            FRAME_HEADERS,
            FLAG_END_HEADERS,
            stream,
            &encode(&mut client, &request(authority, "/x")),
        ));
    }
    let lists = server_view(&frames(&rewrite(&input, 3).unwrap()));
    let authorities: Vec<_> = lists
        .iter()
        .map(|l| String::from_utf8(l[3].1.clone()).unwrap())
        .collect();
    assert_eq!(
        authorities,
        ["localhost:50051", "localhost", "flowd.example"]
    );
}

#[test]
fn dynamic_table_stays_in_step_across_many_requests() {
    // The client's encoder indexes every new field, so later blocks refer to earlier ones.
    let mut client = loona_hpack::Encoder::new();
    let mut input = PREFACE.to_vec();
    let mut expected = Vec::new();
    for i in 0..200u32 {
        let mut fields = request("/run/flowd/flowd.sock", &format!("/path/{}", i % 7));
        fields.push((b"x-request".to_vec(), format!("value-{i}").into_bytes()));
        input.extend(frame(
            FRAME_HEADERS,
            FLAG_END_HEADERS,
            2 * i + 1,
            &encode(&mut client, &fields),
        ));
        fields[3].1 = b"localhost".to_vec();
        expected.push(fields);
    }
    assert_eq!(
        server_view(&frames(&rewrite(&input, 11).unwrap())),
        expected
    );
}

#[test]
fn padding_priority_and_continuation_are_handled() {
    let mut client = loona_hpack::Encoder::new();
    let block = encode(&mut client, &request("/sock", "/y"));
    let (a, b) = block.split_at(block.len() / 2);
    let priority = [0x80, 0, 0, 3, 15];
    let mut payload = vec![4u8];
    payload.extend_from_slice(&priority);
    payload.extend_from_slice(a);
    payload.extend_from_slice(&[0; 4]);
    let input = [
        PREFACE,
        &frame(
            FRAME_HEADERS,
            FLAG_PADDED | FLAG_PRIORITY | FLAG_END_STREAM,
            7,
            &payload,
        ),
        &frame(FRAME_CONTINUATION, FLAG_END_HEADERS, 7, b),
    ]
    .concat();
    let out = frames(&rewrite(&input, 5).unwrap());
    assert_eq!(out.len(), 1);
    assert_eq!(
        out[0].flags,
        FLAG_PRIORITY | FLAG_END_STREAM | FLAG_END_HEADERS
    );
    assert_eq!(&out[0].payload[..PRIORITY_LEN], &priority);
    assert_eq!(server_view(&out), vec![request("localhost", "/y")]);
}

#[test]
fn a_block_larger_than_a_frame_is_split_into_continuations() {
    let mut client = loona_hpack::Encoder::new();
    let mut fields = request("/sock", "/z");
    fields.push((b"x-big".to_vec(), vec![b'a'; 40_000]));
    let block = encode(&mut client, &fields);
    let mut input = PREFACE.to_vec();
    for (i, chunk) in block.chunks(MAX_FRAME_PAYLOAD).enumerate() {
        let kind = if i == 0 {
            FRAME_HEADERS
        } else {
            FRAME_CONTINUATION
        };
        let last = (i + 1) * MAX_FRAME_PAYLOAD >= block.len();
        input.extend(frame(
            kind,
            if last { FLAG_END_HEADERS } else { 0 },
            9,
            chunk,
        ));
    }
    let out = frames(&rewrite(&input, 1000).unwrap());
    assert!(out.len() >= 3);
    assert!(out[1..]
        .iter()
        .all(|f| f.kind == FRAME_CONTINUATION && f.stream == 9));
    fields[3].1 = b"localhost".to_vec();
    assert_eq!(server_view(&out), vec![fields]);
}

#[test]
fn malformed_streams_are_refused_with_the_reason() {
    let mut client = loona_hpack::Encoder::new();
    let block = encode(&mut client, &request("/sock", "/y"));
    let interrupted = [
        PREFACE,
        &frame(FRAME_HEADERS, 0, 1, &block),
        &frame(0x0, 0, 1, b"x"),
    ]
    .concat();
    assert_eq!(
        rewrite(&interrupted, 64),
        Err(AuthorityError::InterruptedHeaderBlock(0))
    );
    let short = [
        PREFACE,
        &frame(FRAME_HEADERS, FLAG_PRIORITY | FLAG_END_HEADERS, 1, &[1, 2]),
    ]
    .concat();
    assert_eq!(rewrite(&short, 64), Err(AuthorityError::MalformedHeaders));
    let garbage = [
        PREFACE,
        &frame(
            FRAME_HEADERS,
            FLAG_END_HEADERS,
            1,
            &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
        ),
    ]
    .concat();
    assert!(matches!(
        rewrite(&garbage, 64),
        Err(AuthorityError::Hpack(_))
    ));
    let mut huge = PREFACE.to_vec();
    huge.extend(frame(FRAME_HEADERS, 0, 1, &vec![0; MAX_FRAME_PAYLOAD]));
    for _ in 0..MAX_HEADER_BLOCK / MAX_FRAME_PAYLOAD {
        huge.extend(frame(FRAME_CONTINUATION, 0, 1, &vec![0; MAX_FRAME_PAYLOAD]));
    }
    assert_eq!(
        rewrite(&huge, 65536),
        Err(AuthorityError::HeaderBlockTooLarge)
    );
}
