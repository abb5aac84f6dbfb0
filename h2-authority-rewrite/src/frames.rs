//! The client-to-server byte stream of one HTTP/2 connection, rewritten:
//! HEADERS (+ CONTINUATION) blocks are decoded with the client's HPACK state
//! and re-encoded as literals without indexing, so the server's HPACK table
//! is never used and stays consistent; all other frames are copied.
//!
//! Nothing here may grow with what a client sends: frames above the size
//! the server advertises are refused, a header list decodes to at most
//! `MAX_HEADER_LIST` bytes (the server advertises it too), and frames are
//! rewritten one at a time as the server reads them, so a burst of tiny
//! HEADERS frames that each name a large table entry is never expanded
//! ahead of the reader.

use http::uri::Authority;

use super::hpack::{Decoder, HpackError};

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const FRAME_HEADER_LEN: usize = 9;
const TYPE_HEADERS: u8 = 0x1;
const TYPE_CONTINUATION: u8 = 0x9;
const FLAG_END_STREAM: u8 = 0x1;
const FLAG_END_HEADERS: u8 = 0x4;
const FLAG_PADDED: u8 = 0x8;
const FLAG_PRIORITY: u8 = 0x20;
/// SETTINGS_MAX_FRAME_SIZE as the server advertises it (h2's default,
/// which tonic keeps), both ways: a client may send nothing larger.
pub const MAX_FRAME: usize = 16_384;
const MAX_OUT_FRAME: usize = MAX_FRAME;
/// SETTINGS_MAX_HEADER_LIST_SIZE the server advertises (RFC 9113 §6.5.2:
/// names and values plus 32 bytes a field, decoded). Workload API requests
/// carry a few hundred bytes; a header block is held until it is whole, so
/// this is also what one connection can make the relay hold.
pub const MAX_HEADER_LIST: usize = 8_192;
/// A header block (HPACK-encoded) of a request is no larger than its
/// decoded list, give or take the few bytes of table size updates.
const MAX_HEADER_BLOCK: usize = MAX_HEADER_LIST + 64;
/// What a HEADERS frame may carry besides its block: the pad length, the
/// padding (at most 255 bytes) and the priority fields.
const MAX_HEADERS_PADDING: usize = 1 + 255 + 5;
/// Only a block larger than one frame needs a CONTINUATION; a flood of
/// empty ones is refused.
const MAX_CONTINUATIONS: usize = 16;
/// The HPACK table size h2 advertises (the default; tonic keeps it).
const HPACK_TABLE_SIZE: usize = 4096;
const REPLACEMENT_AUTHORITY: &[u8] = b"localhost";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RelayError {
    #[error("HTTP/2 frame of {0} bytes is larger than the relay accepts")]
    FrameTooLarge(usize),
    #[error("HTTP/2 frame of {0} bytes before the first request (only header blocks of at most 8 KiB come first)")]
    FrameTooLargeBeforeRequest(usize),
    #[error("HTTP/2 header block is larger than the relay accepts")]
    HeaderBlockTooLarge,
    #[error("malformed HTTP/2 HEADERS frame")]
    MalformedHeaders,
    #[error("HTTP/2 CONTINUATION frame out of sequence")]
    UnexpectedContinuation,
    #[error("HTTP/2 header block in more than {MAX_CONTINUATIONS} CONTINUATION frames")]
    TooManyContinuations,
    #[error("HPACK header block could not be decoded: {0}")]
    Hpack(#[from] HpackError),
}

struct PendingBlock {
    stream_id: [u8; 4],
    end_stream: bool,
    priority: Option<[u8; 5]>,
    block: Vec<u8>,
    continuations: usize,
}

enum Phase {
    /// Still reading the 24-byte connection preface.
    Preface,
    Frames,
    /// Not HTTP/2 after all: copy everything as it is and let h2 answer.
    Passthrough,
}

pub struct Rewriter {
    decoder: Decoder,
    phase: Phase,
    /// Bytes from the client; those before `input_at` are handled.
    input: Vec<u8>,
    input_at: usize,
    pending: Option<PendingBlock>,
    /// The re-encoded block being written, kept for its capacity.
    encoded: Vec<u8>,
    /// A header block has been handed on: DATA may follow.
    request_seen: bool,
}

impl Default for Rewriter {
    fn default() -> Self {
        Rewriter {
            decoder: Decoder::new(HPACK_TABLE_SIZE).with_max_list_size(MAX_HEADER_LIST),
            phase: Phase::Preface,
            input: Vec::new(),
            input_at: 0,
            pending: None,
            encoded: Vec::new(),
            request_seen: false,
        }
    }
}

impl Rewriter {
    /// Takes bytes read from the client; [`Self::next`] hands them on.
    pub fn feed(&mut self, bytes: &[u8]) {
        if self.input_at == self.input.len() {
            self.input.clear();
            self.input_at = 0;
        }
        // Exactly what a partial frame needs, not double: idle clients
        // holding part of a frame each is what this buffer costs.
        self.input.reserve_exact(bytes.len());
        self.input.extend_from_slice(bytes);
    }

    /// Appends to `out` what the server should read next: the preface, or
    /// one complete frame (rewritten if it ends a header block). `false`
    /// when the input holds nothing complete: read more from the client.
    pub fn next(&mut self, out: &mut Vec<u8>) -> Result<bool, RelayError> {
        let input = self.input.get(self.input_at..).unwrap_or_default();
        if input.is_empty() {
            return Ok(false);
        }
        match self.phase {
            Phase::Passthrough => {
                out.extend_from_slice(input);
                self.input_at = self.input.len();
                Ok(true)
            }
            Phase::Preface => {
                let n = input.len().min(PREFACE.len());
                if input.get(..n) != PREFACE.get(..n) {
                    // Not HTTP/2 after all: copy everything and let h2 answer.
                    self.phase = Phase::Passthrough;
                    return self.next(out);
                }
                if n < PREFACE.len() {
                    return Ok(false);
                }
                out.extend_from_slice(PREFACE);
                self.input_at += PREFACE.len();
                self.phase = Phase::Frames;
                Ok(true)
            }
            Phase::Frames => {
                let Some(len) = frame_len(input)? else {
                    return Ok(false);
                };
                // A header frame that cannot fit the block limit is refused
                // on its 9-byte header, before any of it is held; so is any
                // larger frame before the first request (DATA cannot come
                // before HEADERS), so a connection that never asks for
                // anything holds at most one header block's worth.
                let kind = input.get(3).copied();
                let held = self.pending.as_ref().map_or(0, |p| p.block.len());
                let header_room = MAX_HEADER_BLOCK + MAX_HEADERS_PADDING;
                if matches!(kind, Some(TYPE_HEADERS | TYPE_CONTINUATION))
                    && held + len > header_room
                {
                    return Err(RelayError::HeaderBlockTooLarge);
                }
                if !self.request_seen && len > header_room {
                    return Err(RelayError::FrameTooLargeBeforeRequest(len));
                }
                let end = FRAME_HEADER_LEN + len;
                if input.len() < end {
                    return Ok(false);
                }
                // Taken out so the frame can be handed on without a copy.
                let taken = std::mem::take(&mut self.input);
                let frame = taken
                    .get(self.input_at..self.input_at + end)
                    .unwrap_or_default();
                let result = self.frame(frame, out);
                self.input = taken;
                self.input_at += end;
                result.map(|()| true)
            }
        }
    }

    /// Feeds `bytes` and hands on every complete frame at once (tests and
    /// fuzzing; the relay calls [`Self::next`] as the server reads).
    pub fn push(&mut self, bytes: &[u8], out: &mut Vec<u8>) -> Result<(), RelayError> {
        self.feed(bytes);
        while self.next(out)? {}
        Ok(())
    }

    fn frame(&mut self, frame: &[u8], out: &mut Vec<u8>) -> Result<(), RelayError> {
        let Some((header, payload)) = frame.split_at_checked(FRAME_HEADER_LEN) else {
            return Err(RelayError::MalformedHeaders);
        };
        let Ok(&[_, _, _, kind, flags, s0, s1, s2, s3]) =
            <&[u8; FRAME_HEADER_LEN]>::try_from(header)
        else {
            return Err(RelayError::MalformedHeaders);
        };
        let stream_id = [s0, s1, s2, s3];
        let end_headers = flags & FLAG_END_HEADERS != 0;
        match kind {
            TYPE_HEADERS => {
                if self.pending.is_some() {
                    return Err(RelayError::UnexpectedContinuation);
                }
                let (priority, fragment) = split_headers_payload(flags, payload)?;
                let block = PendingBlock {
                    stream_id,
                    end_stream: flags & FLAG_END_STREAM != 0,
                    priority,
                    block: Vec::new(),
                    continuations: 0,
                };
                if end_headers {
                    // The usual case, a block in one frame: no copy of it.
                    return self.emit(&block, fragment, out);
                }
                self.pending = Some(PendingBlock {
                    block: fragment.to_vec(),
                    ..block
                });
            }
            TYPE_CONTINUATION => match self.pending.as_mut() {
                Some(p) if p.stream_id == stream_id => {
                    if p.block.len() + payload.len() > MAX_HEADER_BLOCK {
                        return Err(RelayError::HeaderBlockTooLarge);
                    }
                    p.continuations += 1;
                    if p.continuations > MAX_CONTINUATIONS {
                        return Err(RelayError::TooManyContinuations);
                    }
                    p.block.extend_from_slice(payload);
                    if end_headers {
                        if let Some(p) = self.pending.take() {
                            self.emit(&p, &p.block, out)?;
                        }
                    }
                }
                _ => return Err(RelayError::UnexpectedContinuation),
            },
            _ => {
                // HTTP/2 allows nothing between HEADERS and its CONTINUATIONs.
                if self.pending.is_some() {
                    return Err(RelayError::UnexpectedContinuation);
                }
                out.extend_from_slice(frame);
            }
        }
        Ok(())
    }

    /// Decodes a complete header block and writes it out re-encoded.
    fn emit(
        &mut self,
        p: &PendingBlock,
        block: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), RelayError> {
        // Taken out for the closure; put back for its capacity.
        let mut encoded = std::mem::take(&mut self.encoded);
        encoded.clear();
        let decoded = self.decoder.decode(block, |name, value| {
            let value = if name == b":authority" && Authority::try_from(value).is_err() {
                REPLACEMENT_AUTHORITY
            } else {
                value
            };
            encode_literal(name, value, &mut encoded);
        });
        if decoded.is_ok() {
            write_block(p, &encoded, out);
            self.request_seen = true;
        }
        self.encoded = encoded;
        Ok(decoded?)
    }
}

/// A HEADERS frame, and CONTINUATIONs if `encoded` does not fit in one.
fn write_block(p: &PendingBlock, encoded: &[u8], out: &mut Vec<u8>) {
    let prefix: &[u8] = match &p.priority {
        Some(prio) => prio,
        None => &[],
    };
    let (first, mut rest) = encoded.split_at(encoded.len().min(MAX_OUT_FRAME - prefix.len()));
    let mut flags = if p.end_stream { FLAG_END_STREAM } else { 0 };
    if p.priority.is_some() {
        flags |= FLAG_PRIORITY;
    }
    if rest.is_empty() {
        flags |= FLAG_END_HEADERS;
    }
    write_frame(out, TYPE_HEADERS, flags, p.stream_id, &[prefix, first]);
    while !rest.is_empty() {
        let (chunk, tail) = rest.split_at(rest.len().min(MAX_OUT_FRAME));
        let flags = if tail.is_empty() { FLAG_END_HEADERS } else { 0 };
        write_frame(out, TYPE_CONTINUATION, flags, p.stream_id, &[chunk]);
        rest = tail;
    }
}

/// The payload length of the frame at the start of `buf`, once its 9-byte
/// header is there.
fn frame_len(buf: &[u8]) -> Result<Option<usize>, RelayError> {
    let Some(&[a, b, c, ..]) = buf.get(..FRAME_HEADER_LEN) else {
        return Ok(None);
    };
    let len = usize::from(a) << 16 | usize::from(b) << 8 | usize::from(c);
    if len > MAX_FRAME {
        return Err(RelayError::FrameTooLarge(len));
    }
    Ok(Some(len))
}

/// Strips padding and priority from a HEADERS payload.
fn split_headers_payload(
    flags: u8,
    payload: &[u8],
) -> Result<(Option<[u8; 5]>, &[u8]), RelayError> {
    let mut rest = payload;
    let mut pad = 0usize;
    if flags & FLAG_PADDED != 0 {
        let (&n, tail) = rest.split_first().ok_or(RelayError::MalformedHeaders)?;
        pad = usize::from(n);
        rest = tail;
    }
    let mut priority = None;
    if flags & FLAG_PRIORITY != 0 {
        let (p, tail) = rest
            .split_at_checked(5)
            .ok_or(RelayError::MalformedHeaders)?;
        priority = Some(p.try_into().map_err(|_| RelayError::MalformedHeaders)?);
        rest = tail;
    }
    let fragment_len = rest
        .len()
        .checked_sub(pad)
        .ok_or(RelayError::MalformedHeaders)?;
    if fragment_len > MAX_HEADER_BLOCK {
        return Err(RelayError::HeaderBlockTooLarge);
    }
    Ok((priority, rest.get(..fragment_len).unwrap_or_default()))
}

/// What the server says to a client it will not serve: its SETTINGS (the
/// connection preface every HTTP/2 server starts with), then GOAWAY with
/// ENHANCE_YOUR_CALM and `why` as debug data, which gRPC clients report.
pub fn refusal(why: &str) -> Vec<u8> {
    const TYPE_SETTINGS: u8 = 0x4;
    const TYPE_GOAWAY: u8 = 0x7;
    const ENHANCE_YOUR_CALM: u32 = 0xb;
    let why = why.as_bytes();
    let why = why
        .get(..why.len().min(MAX_OUT_FRAME - 8))
        .unwrap_or_default();
    let mut out = Vec::with_capacity(2 * FRAME_HEADER_LEN + 8 + why.len());
    write_frame(&mut out, TYPE_SETTINGS, 0, [0; 4], &[]);
    let last_stream = 0u32.to_be_bytes();
    let code = ENHANCE_YOUR_CALM.to_be_bytes();
    write_frame(
        &mut out,
        TYPE_GOAWAY,
        0,
        [0; 4],
        &[&last_stream, &code, why],
    );
    out
}

/// One frame whose payload is the concatenation of `parts`.
fn write_frame(out: &mut Vec<u8>, kind: u8, flags: u8, stream_id: [u8; 4], parts: &[&[u8]]) {
    // The payload is at most MAX_OUT_FRAME < 2^24, so three bytes hold it.
    let len: usize = parts.iter().map(|p| p.len()).sum();
    out.extend_from_slice(&[(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags]);
    out.extend_from_slice(&stream_id);
    for part in parts {
        out.extend_from_slice(part);
    }
}

/// HPACK "literal header field without indexing, new name" (RFC 7541
/// §6.2.2), strings without Huffman coding.
fn encode_literal(name: &[u8], value: &[u8], out: &mut Vec<u8>) {
    out.push(0x00);
    encode_string(name, out);
    encode_string(value, out);
}

fn encode_string(s: &[u8], out: &mut Vec<u8>) {
    encode_integer(s.len(), 7, out);
    out.extend_from_slice(s);
}

/// RFC 7541 §5.1 integer with an N-bit prefix (the prefix's high bits 0).
pub(super) fn encode_integer(mut n: usize, prefix_bits: u8, out: &mut Vec<u8>) {
    let max = (1usize << prefix_bits) - 1;
    if n < max {
        out.push(n as u8);
        return;
    }
    out.push(max as u8);
    n -= max;
    while n >= 128 {
        out.push((n % 128 + 128) as u8);
        n /= 128;
    }
    out.push(n as u8);
}

#[cfg(test)]
mod tests;
