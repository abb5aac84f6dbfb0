//! An HPACK decoder (RFC 7541) that follows one client's header blocks.
//!
//! It applies the same rules as the h2 decoder that reads the relay's
//! output (a dynamic table size update only at the start of a block and
//! never above the advertised maximum; integers of at most 5 octets), so
//! the relay refuses what the server would have refused. Strings that are
//! not Huffman-coded are handed out without a copy.

use std::borrow::Cow;
use std::collections::VecDeque;

use super::huffman::{self, HuffmanError};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HpackError {
    #[error("header block ends inside a field")]
    Truncated,
    #[error("integer longer than 5 octets")]
    IntegerTooLong,
    #[error("table index {0} is out of range")]
    BadIndex(usize),
    #[error("dynamic table size update after a header field")]
    LateSizeUpdate,
    #[error("dynamic table size {0} is above the allowed {1}")]
    SizeAboveMax(usize, usize),
    #[error("header list decodes to more than {0} bytes")]
    ListTooLarge(usize),
    #[error(transparent)]
    Huffman(#[from] HuffmanError),
}

/// Every table entry costs its name and value plus this (RFC 7541 §4.1).
const ENTRY_OVERHEAD: usize = 32;

pub struct Decoder {
    table: DynamicTable,
    /// The largest table size the client may ask for (our SETTINGS).
    max_allowed: usize,
    /// The largest header list a block may decode to (our SETTINGS),
    /// counted as RFC 9113 §6.5.2 does: name, value and 32 bytes a field.
    max_list: usize,
}

impl Decoder {
    pub fn new(max_allowed: usize) -> Self {
        Decoder {
            table: DynamicTable::new(max_allowed),
            max_allowed,
            max_list: usize::MAX,
        }
    }

    /// Refuses a block whose fields add up to more than `max` bytes, before
    /// handing out the field that goes over: a few bytes of input can name
    /// a large table entry many times.
    pub fn with_max_list_size(mut self, max: usize) -> Self {
        self.max_list = max;
        self
    }

    /// Decodes one complete header block, calling `field(name, value)` for
    /// each header in order.
    pub fn decode(
        &mut self,
        block: &[u8],
        mut field: impl FnMut(&[u8], &[u8]),
    ) -> Result<(), HpackError> {
        let mut rest = block;
        let mut fields_seen = false;
        let mut list = 0usize;
        let max_list = self.max_list;
        let mut count = |name: &[u8], value: &[u8]| {
            list = list.saturating_add(name.len() + value.len() + ENTRY_OVERHEAD);
            if list > max_list {
                Err(HpackError::ListTooLarge(max_list))
            } else {
                Ok(())
            }
        };
        while let Some(&first) = rest.first() {
            if first & 0x80 != 0 {
                let index = read_integer(&mut rest, 7)?;
                let (name, value) = self.entry(index)?;
                count(name, value)?;
                field(name, value);
            } else if first & 0xe0 == 0x20 {
                if fields_seen {
                    return Err(HpackError::LateSizeUpdate);
                }
                let size = read_integer(&mut rest, 5)?;
                if size > self.max_allowed {
                    return Err(HpackError::SizeAboveMax(size, self.max_allowed));
                }
                self.table.resize(size);
                continue;
            } else {
                // 01: with incremental indexing (6-bit index); 0000 and 0001:
                // without indexing and never indexed (4-bit index).
                let indexing = first & 0x40 != 0;
                let index = read_integer(&mut rest, if indexing { 6 } else { 4 })?;
                let name = if index == 0 {
                    read_string(&mut rest)?
                } else {
                    Cow::Borrowed(self.entry(index)?.0)
                };
                let value = read_string(&mut rest)?;
                count(&name, &value)?;
                field(&name, &value);
                if indexing {
                    let entry = (name.into_owned(), value.into_owned());
                    self.table.insert(entry);
                }
            }
            fields_seen = true;
        }
        Ok(())
    }

    fn entry(&self, index: usize) -> Result<(&[u8], &[u8]), HpackError> {
        let found = match index.checked_sub(1) {
            Some(i) if i < STATIC_TABLE.len() => STATIC_TABLE.get(i).copied(),
            Some(i) => self.table.get(i - STATIC_TABLE.len()),
            None => None,
        };
        found.ok_or(HpackError::BadIndex(index))
    }
}

/// RFC 7541 §5.1: an integer in the low `prefix_bits` of the first octet,
/// continued in 7-bit groups when they are all 1s.
fn read_integer(rest: &mut &[u8], prefix_bits: u8) -> Result<usize, HpackError> {
    const MAX_OCTETS: usize = 5;
    let (&first, tail) = rest.split_first().ok_or(HpackError::Truncated)?;
    *rest = tail;
    let max_prefix = (1usize << prefix_bits) - 1;
    let mut value = usize::from(first) & max_prefix;
    if value < max_prefix {
        return Ok(value);
    }
    for shift in (0..MAX_OCTETS - 1).map(|n| 7 * n) {
        let (&byte, tail) = rest.split_first().ok_or(HpackError::Truncated)?;
        *rest = tail;
        value += usize::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err(HpackError::IntegerTooLong)
}

/// RFC 7541 §5.2: a length-prefixed string, Huffman-coded if the length's
/// first bit is set.
fn read_string<'a>(rest: &mut &'a [u8]) -> Result<Cow<'a, [u8]>, HpackError> {
    let huffman = rest.first().is_some_and(|b| b & 0x80 != 0);
    let len = read_integer(rest, 7)?;
    let (raw, tail) = rest.split_at_checked(len).ok_or(HpackError::Truncated)?;
    *rest = tail;
    if !huffman {
        return Ok(Cow::Borrowed(raw));
    }
    // Huffman codes are at least 5 bits a symbol.
    let mut decoded = Vec::with_capacity(len * 8 / 5);
    huffman::decode(raw, &mut decoded)?;
    Ok(Cow::Owned(decoded))
}

/// The client's dynamic table: newest entry first, evicted oldest first.
struct DynamicTable {
    entries: VecDeque<(Vec<u8>, Vec<u8>)>,
    size: usize,
    max_size: usize,
}

impl DynamicTable {
    fn new(max_size: usize) -> Self {
        DynamicTable {
            entries: VecDeque::new(),
            size: 0,
            max_size,
        }
    }

    fn get(&self, i: usize) -> Option<(&[u8], &[u8])> {
        self.entries
            .get(i)
            .map(|(n, v)| (n.as_slice(), v.as_slice()))
    }

    /// RFC 7541 §4.4: an entry larger than the table empties it and is not
    /// added.
    fn insert(&mut self, entry: (Vec<u8>, Vec<u8>)) {
        let size = entry.0.len() + entry.1.len() + ENTRY_OVERHEAD;
        self.evict_to(self.max_size.saturating_sub(size));
        if size <= self.max_size {
            self.size += size;
            self.entries.push_front(entry);
        }
    }

    fn resize(&mut self, max_size: usize) {
        self.max_size = max_size;
        self.evict_to(max_size);
    }

    fn evict_to(&mut self, target: usize) {
        while self.size > target {
            let Some((n, v)) = self.entries.pop_back() else {
                self.size = 0;
                return;
            };
            self.size -= n.len() + v.len() + ENTRY_OVERHEAD;
        }
    }
}

/// RFC 7541 Appendix A.
const STATIC_TABLE: [(&[u8], &[u8]); 61] = [
    (b":authority", b""),
    (b":method", b"GET"),
    (b":method", b"POST"),
    (b":path", b"/"),
    (b":path", b"/index.html"),
    (b":scheme", b"http"),
    (b":scheme", b"https"),
    (b":status", b"200"),
    (b":status", b"204"),
    (b":status", b"206"),
    (b":status", b"304"),
    (b":status", b"400"),
    (b":status", b"404"),
    (b":status", b"500"),
    (b"accept-charset", b""),
    (b"accept-encoding", b"gzip, deflate"),
    (b"accept-language", b""),
    (b"accept-ranges", b""),
    (b"accept", b""),
    (b"access-control-allow-origin", b""),
    (b"age", b""),
    (b"allow", b""),
    (b"authorization", b""),
    (b"cache-control", b""),
    (b"content-disposition", b""),
    (b"content-encoding", b""),
    (b"content-language", b""),
    (b"content-length", b""),
    (b"content-location", b""),
    (b"content-range", b""),
    (b"content-type", b""),
    (b"cookie", b""),
    (b"date", b""),
    (b"etag", b""),
    (b"expect", b""),
    (b"expires", b""),
    (b"from", b""),
    (b"host", b""),
    (b"if-match", b""),
    (b"if-modified-since", b""),
    (b"if-none-match", b""),
    (b"if-range", b""),
    (b"if-unmodified-since", b""),
    (b"last-modified", b""),
    (b"link", b""),
    (b"location", b""),
    (b"max-forwards", b""),
    (b"proxy-authenticate", b""),
    (b"proxy-authorization", b""),
    (b"range", b""),
    (b"referer", b""),
    (b"refresh", b""),
    (b"retry-after", b""),
    (b"server", b""),
    (b"set-cookie", b""),
    (b"strict-transport-security", b""),
    (b"transfer-encoding", b""),
    (b"user-agent", b""),
    (b"vary", b""),
    (b"via", b""),
    (b"www-authenticate", b""),
];

#[cfg(test)]
mod tests;
