use loona_hpack::{Decoder, Encoder};

use super::*;

type Headers = Vec<(String, String)>;

fn request(authority: &str) -> Headers {
    [
        (":method", "POST"),
        (":scheme", "http"),
        (":path", "/SpiffeWorkloadAPI/FetchX509SVID"),
        (":authority", authority),
        ("content-type", "application/grpc"),
        ("workload.spiffe.io", "true"),
    ]
    .iter()
    .map(|(n, v)| (n.to_string(), v.to_string()))
    .collect()
}

fn encode(enc: &mut Encoder<'_>, headers: &Headers) -> Vec<u8> {
    enc.encode(headers.iter().map(|(n, v)| (n.as_bytes(), v.as_bytes())))
}

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    write_frame(&mut out, kind, flags, stream.to_be_bytes(), &[payload]);
    out
}

struct Frame {
    kind: u8,
    flags: u8,
    stream: u32,
    payload: Vec<u8>,
}

/// Splits relayed output (after the preface) into frames.
fn parse(mut out: &[u8]) -> Vec<Frame> {
    out = out.strip_prefix(PREFACE).expect("preface first");
    let mut frames = Vec::new();
    while !out.is_empty() {
        let len = usize::from(out[0]) << 16 | usize::from(out[1]) << 8 | usize::from(out[2]);
        frames.push(Frame {
            kind: out[3],
            flags: out[4],
            stream: u32::from_be_bytes([out[5], out[6], out[7], out[8]]),
            payload: out[9..9 + len].to_vec(),
        });
        out = &out[9 + len..];
    }
    frames
}

fn decode(dec: &mut Decoder<'_>, block: &[u8]) -> Headers {
    dec.decode(block)
        .unwrap()
        .into_iter()
        .map(|(n, v)| (String::from_utf8(n).unwrap(), String::from_utf8(v).unwrap()))
        .collect()
}

fn relay_all(input: &[u8]) -> Vec<u8> {
    let mut r = Rewriter::default();
    let mut out = Vec::new();
    r.push(input, &mut out).unwrap();
    out
}

#[test]
fn percent_encoded_authority_becomes_localhost_and_the_rest_is_kept() {
    let mut enc = Encoder::new();
    let settings = frame(0x4, 0, 0, &[]);
    let mut input = PREFACE.to_vec();
    input.extend(&settings);
    input.extend(frame(
        TYPE_HEADERS,
        FLAG_END_HEADERS,
        1,
        &encode(&mut enc, &request("tmp%2Fsigner%2Fapi.sock")),
    ));
    let data = frame(0x0, FLAG_END_STREAM, 1, &[0, 0, 0, 0, 0]);
    input.extend(&data);

    let frames = parse(&relay_all(&input));
    assert_eq!(frames.len(), 3);
    assert_eq!(frames[0].kind, 0x4);
    let headers = decode(&mut Decoder::new(), &frames[1].payload);
    assert_eq!(headers, request("localhost"));
    assert_eq!(
        (frames[1].kind, frames[1].flags, frames[1].stream),
        (TYPE_HEADERS, FLAG_END_HEADERS, 1)
    );
    assert_eq!(
        frame(
            frames[2].kind,
            frames[2].flags,
            frames[2].stream,
            &frames[2].payload
        ),
        data
    );
}

#[test]
fn valid_authority_is_kept() {
    let mut enc = Encoder::new();
    let mut input = PREFACE.to_vec();
    input.extend(frame(
        TYPE_HEADERS,
        FLAG_END_HEADERS | FLAG_END_STREAM,
        3,
        &encode(&mut enc, &request("localhost:50051")),
    ));
    let frames = parse(&relay_all(&input));
    assert_eq!(
        decode(&mut Decoder::new(), &frames[0].payload),
        request("localhost:50051")
    );
    assert_eq!(frames[0].flags, FLAG_END_HEADERS | FLAG_END_STREAM);
}

#[test]
fn client_hpack_table_is_followed_across_requests() {
    // The client's encoder indexes headers, so its second block refers to
    // the first; the relay's output never indexes, so one fresh decoder
    // reads every rewritten block.
    let mut enc = Encoder::new();
    let mut input = PREFACE.to_vec();
    for stream in [1u32, 3, 5] {
        input.extend(frame(
            TYPE_HEADERS,
            FLAG_END_HEADERS,
            stream,
            &encode(&mut enc, &request("tmp%2Fs")),
        ));
    }
    let frames = parse(&relay_all(&input));
    let mut dec = Decoder::new();
    for f in &frames {
        assert_eq!(decode(&mut dec, &f.payload), request("localhost"));
    }
    assert_eq!(
        frames.iter().map(|f| f.stream).collect::<Vec<_>>(),
        vec![1, 3, 5]
    );
}

#[test]
fn padding_priority_and_continuation_are_handled() {
    let mut enc = Encoder::new();
    let block = encode(&mut enc, &request("tmp%2Fs"));
    let (a, b) = block.split_at(10);
    let mut payload = vec![3u8]; // pad length
    payload.extend([0x80, 0, 0, 1, 15]); // priority: exclusive, depends on 1, weight 15
    payload.extend(a);
    payload.extend([0, 0, 0]);
    let mut input = PREFACE.to_vec();
    input.extend(frame(
        TYPE_HEADERS,
        FLAG_PADDED | FLAG_PRIORITY | FLAG_END_STREAM,
        7,
        &payload,
    ));
    input.extend(frame(TYPE_CONTINUATION, FLAG_END_HEADERS, 7, b));

    let frames = parse(&relay_all(&input));
    assert_eq!(frames.len(), 1);
    let f = &frames[0];
    assert_eq!(f.flags, FLAG_PRIORITY | FLAG_END_STREAM | FLAG_END_HEADERS);
    assert_eq!(&f.payload[..5], &[0x80, 0, 0, 1, 15]);
    assert_eq!(
        decode(&mut Decoder::new(), &f.payload[5..]),
        request("localhost")
    );
}

#[test]
fn a_block_in_continuations_comes_out_whole() {
    let mut enc = Encoder::new();
    let mut headers = request("tmp%2Fs");
    // Near the header list limit, in two frames on the way in.
    headers.push(("x-big".into(), "v".repeat(7_600)));
    let block = encode(&mut enc, &headers);
    let mut input = PREFACE.to_vec();
    let (a, b) = block.split_at(4_000);
    input.extend(frame(TYPE_HEADERS, 0, 1, a));
    input.extend(frame(TYPE_CONTINUATION, FLAG_END_HEADERS, 1, b));

    let frames = parse(&relay_all(&input));
    // A list within the limit re-encodes into one frame.
    assert_eq!(frames.len(), 1);
    assert_eq!(frames[0].kind, TYPE_HEADERS);
    assert_eq!(frames[0].flags & FLAG_END_HEADERS, FLAG_END_HEADERS);
    assert!(frames[0].payload.len() <= MAX_OUT_FRAME);
    let mut want = headers;
    want[3].1 = "localhost".into();
    assert_eq!(decode(&mut Decoder::new(), &frames[0].payload), want);
}

#[test]
fn oversized_output_blocks_are_split_into_continuations() {
    let p = PendingBlock {
        stream_id: 1u32.to_be_bytes(),
        end_stream: true,
        priority: None,
        block: Vec::new(),
        continuations: 0,
    };
    let encoded = vec![7u8; 2 * MAX_OUT_FRAME + 10];
    let mut out = PREFACE.to_vec();
    write_block(&p, &encoded, &mut out);
    let frames = parse(&out);
    assert_eq!(frames.len(), 3);
    assert_eq!(frames[0].kind, TYPE_HEADERS);
    assert_eq!(frames[0].flags, FLAG_END_STREAM);
    assert!(frames[1..].iter().all(|f| f.kind == TYPE_CONTINUATION));
    assert_eq!(frames[2].flags, FLAG_END_HEADERS);
    let joined: Vec<u8> = frames.iter().flat_map(|f| f.payload.clone()).collect();
    assert_eq!(joined, encoded);
}

/// A literal with incremental indexing (new name): `name` = `value`
/// enters the client's table as entry 62.
fn indexed_literal(name: &[u8], value: &[u8]) -> Vec<u8> {
    let mut b = vec![0x40];
    encode_string(name, &mut b);
    encode_string(value, &mut b);
    b
}

#[test]
fn an_hpack_bomb_is_refused_before_it_expands() {
    // One 4 KB table entry, then 250 thousand one-byte references to it:
    // a 254 KB block that decodes to about a gigabyte.
    let mut block = indexed_literal(b"x-bomb", &[b'a'; 4000]);
    block.extend(std::iter::repeat_n(0x80 | 62, 250_000));
    let mut input = PREFACE.to_vec();
    let mut chunks = block.chunks(MAX_FRAME);
    let first = chunks.next().unwrap();
    input.extend(frame(TYPE_HEADERS, 0, 1, first));
    for c in chunks {
        input.extend(frame(TYPE_CONTINUATION, 0, 1, c));
    }
    let mut out = Vec::new();
    let err = Rewriter::default().push(&input, &mut out).unwrap_err();
    assert!(
        matches!(
            err,
            RelayError::HeaderBlockTooLarge | RelayError::TooManyContinuations
        ),
        "{err:?}"
    );
    assert!(out.len() <= PREFACE.len(), "nothing of the block came out");

    // Within the block limit, the list limit stops it at the first reference.
    let mut small = indexed_literal(b"x-bomb", &[b'a'; 4000]);
    small.extend(std::iter::repeat_n(0x80 | 62, 3_000));
    let mut input = PREFACE.to_vec();
    input.extend(frame(TYPE_HEADERS, FLAG_END_HEADERS, 1, &small));
    let mut out = Vec::new();
    assert_eq!(
        Rewriter::default().push(&input, &mut out),
        Err(RelayError::Hpack(HpackError::ListTooLarge(MAX_HEADER_LIST)))
    );
    assert!(out.len() <= PREFACE.len());
}

#[test]
fn tiny_frames_naming_a_large_entry_are_rewritten_only_as_they_are_read() {
    // Each HEADERS frame is 10 bytes and decodes to 4 KB: rewritten all at
    // once, 16 KB of input would become 6 MB.
    let mut input = PREFACE.to_vec();
    input.extend(frame(
        TYPE_HEADERS,
        FLAG_END_HEADERS,
        1,
        &indexed_literal(b"x-big", &[b'a'; 4000]),
    ));
    for i in 0..1600u32 {
        input.extend(frame(
            TYPE_HEADERS,
            FLAG_END_HEADERS,
            3 + 2 * i,
            &[0x80 | 62],
        ));
    }
    let mut r = Rewriter::default();
    r.feed(&input);
    let mut out = Vec::new();
    assert!(r.next(&mut out).unwrap(), "the preface");
    assert!(r.next(&mut out).unwrap(), "the first HEADERS");
    out.clear();
    assert!(r.next(&mut out).unwrap());
    assert!(out.len() < 4_100, "one frame's worth: {}", out.len());
}

#[test]
fn frames_above_the_advertised_size_are_refused() {
    let request = frame(
        TYPE_HEADERS,
        FLAG_END_HEADERS,
        1,
        &encode(&mut Encoder::new(), &request("x")),
    );
    let mut input = PREFACE.to_vec();
    input.extend(&request);
    input.extend(frame(0x0, 0, 1, &vec![0u8; MAX_FRAME + 1]));
    assert_eq!(
        Rewriter::default().push(&input, &mut Vec::new()),
        Err(RelayError::FrameTooLarge(MAX_FRAME + 1))
    );
    let mut input = PREFACE.to_vec();
    input.extend(&request);
    input.extend(frame(0x0, 0, 1, &vec![0u8; MAX_FRAME]));
    assert!(Rewriter::default().push(&input, &mut Vec::new()).is_ok());
}

#[test]
fn before_the_first_request_only_frames_of_a_header_blocks_size_are_taken() {
    // The header of a 16 KiB DATA frame, ahead of any HEADERS.
    let mut input = PREFACE.to_vec();
    input.extend(&frame(0x0, 0, 1, &vec![0u8; MAX_FRAME])[..9]);
    let mut r = Rewriter::default();
    r.feed(&input);
    let mut out = Vec::new();
    assert!(r.next(&mut out).unwrap(), "the preface");
    assert_eq!(
        r.next(&mut out),
        Err(RelayError::FrameTooLargeBeforeRequest(MAX_FRAME))
    );
}

#[test]
fn a_header_frame_too_large_for_the_block_limit_is_refused_on_its_header() {
    // Only the 9-byte header of a 16 KiB HEADERS frame has arrived.
    let mut input = PREFACE.to_vec();
    input.extend(&frame(TYPE_HEADERS, 0, 1, &vec![0u8; MAX_FRAME])[..9]);
    let mut r = Rewriter::default();
    r.feed(&input);
    let mut out = Vec::new();
    assert!(r.next(&mut out).unwrap(), "the preface");
    assert_eq!(r.next(&mut out), Err(RelayError::HeaderBlockTooLarge));
}

#[test]
fn a_flood_of_empty_continuations_is_refused() {
    let mut input = PREFACE.to_vec();
    input.extend(frame(TYPE_HEADERS, 0, 1, &[0x82]));
    for _ in 0..=MAX_CONTINUATIONS {
        input.extend(frame(TYPE_CONTINUATION, 0, 1, &[]));
    }
    assert_eq!(
        Rewriter::default().push(&input, &mut Vec::new()),
        Err(RelayError::TooManyContinuations)
    );
}

#[test]
fn bytes_arriving_one_at_a_time_give_the_same_output() {
    let mut enc = Encoder::new();
    let mut input = PREFACE.to_vec();
    input.extend(frame(0x4, 0, 0, &[0, 3, 0, 0, 0, 100]));
    input.extend(frame(
        TYPE_HEADERS,
        FLAG_END_HEADERS,
        1,
        &encode(&mut enc, &request("tmp%2Fs")),
    ));
    let whole = relay_all(&input);
    let mut r = Rewriter::default();
    let mut out = Vec::new();
    for b in &input {
        r.push(std::slice::from_ref(b), &mut out).unwrap();
    }
    assert_eq!(out, whole);
}

#[test]
fn protocol_violations_end_the_connection() {
    let push = |input: Vec<u8>| {
        let mut all = PREFACE.to_vec();
        all.extend(input);
        Rewriter::default().push(&all, &mut Vec::new())
    };
    assert_eq!(
        push(frame(TYPE_CONTINUATION, FLAG_END_HEADERS, 1, b"x")),
        Err(RelayError::UnexpectedContinuation)
    );
    let mut interleaved = frame(TYPE_HEADERS, 0, 1, b"");
    interleaved.extend(frame(0x0, 0, 1, b"data"));
    assert_eq!(push(interleaved), Err(RelayError::UnexpectedContinuation));
    assert_eq!(
        push(vec![0x7f, 0xff, 0xff, 0, 0, 0, 0, 0, 1]),
        Err(RelayError::FrameTooLarge(0x7f_ffff))
    );
    assert_eq!(
        push(frame(
            TYPE_HEADERS,
            FLAG_PADDED | FLAG_END_HEADERS,
            1,
            &[9, 1]
        )),
        Err(RelayError::MalformedHeaders)
    );
    assert_eq!(
        push(frame(
            TYPE_HEADERS,
            FLAG_PRIORITY | FLAG_END_HEADERS,
            1,
            &[1, 2]
        )),
        Err(RelayError::MalformedHeaders)
    );
    assert!(matches!(
        push(frame(
            TYPE_HEADERS,
            FLAG_END_HEADERS,
            1,
            &[0xff, 0xff, 0xff]
        )),
        Err(RelayError::Hpack(_))
    ));
}

#[test]
fn input_that_is_not_http2_passes_through() {
    let input = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    assert_eq!(relay_all(input), input.to_vec());
}

#[test]
fn hpack_integers_follow_rfc_7541() {
    // RFC 7541 C.1.1-C.1.2: 10 with a 5-bit prefix, 1337 with a 5-bit prefix.
    let mut out = Vec::new();
    encode_integer(10, 5, &mut out);
    assert_eq!(out, [10]);
    out.clear();
    encode_integer(1337, 5, &mut out);
    assert_eq!(out, [31, 154, 10]);
}

#[test]
fn random_input_never_panics() {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let mut enc = Encoder::new();
    let valid = frame(
        TYPE_HEADERS,
        FLAG_END_HEADERS,
        1,
        &encode(&mut enc, &request("tmp%2Fs")),
    );
    for _ in 0..5000 {
        let mut input = PREFACE.to_vec();
        if rng.gen_bool(0.5) {
            // A real frame with a few bytes flipped: reaches the HPACK decoder.
            let mut f = valid.clone();
            for _ in 0..rng.gen_range(1..4) {
                let i = rng.gen_range(0..f.len());
                f[i] = rng.gen();
            }
            input.extend(f);
        } else {
            let len = rng.gen_range(0..64);
            input.extend((0..len).map(|_| rng.gen::<u8>()));
        }
        let mut r = Rewriter::default();
        let mut out = Vec::new();
        for chunk in input.chunks(rng.gen_range(1..32)) {
            if r.push(chunk, &mut out).is_err() {
                break;
            }
        }
    }
}
