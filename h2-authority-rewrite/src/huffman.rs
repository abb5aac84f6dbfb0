//! HPACK's Huffman code (RFC 7541 §5.2, Appendix B), decoding only.
//!
//! The code tree is built once per process and walked bit by bit, so a
//! decode costs a few nanoseconds a bit and allocates nothing but its
//! output. (loona-hpack rebuilt a hash map of the whole code for every
//! string, which made it most of the relay's CPU time.)

use std::sync::LazyLock;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HuffmanError {
    #[error("Huffman string contains the EOS symbol")]
    Eos,
    #[error("Huffman string padding is longer than 7 bits")]
    PaddingTooLong,
    #[error("Huffman string padding is not a prefix of EOS")]
    BadPadding,
}

/// Appends the decoded form of `input` to `out`.
pub fn decode(input: &[u8], out: &mut Vec<u8>) -> Result<(), HuffmanError> {
    let tree = &*TREE;
    let mut node = ROOT;
    // Bits read since the last symbol, and whether all were 1s: what is
    // left at the end is padding, which must be a short prefix of EOS.
    let mut pending_bits = 0u8;
    let mut all_ones = true;
    for &byte in input {
        for shift in (0..8).rev() {
            let bit = (byte >> shift) & 1;
            match tree.child(node, bit) {
                Child::Node(next) => {
                    node = next;
                    pending_bits += 1;
                    all_ones &= bit == 1;
                }
                Child::Symbol(symbol) => {
                    out.push(symbol);
                    node = ROOT;
                    pending_bits = 0;
                    all_ones = true;
                }
                // The tree is complete, so only EOS gets here.
                Child::Eos => return Err(HuffmanError::Eos),
            }
        }
    }
    if pending_bits > 7 {
        return Err(HuffmanError::PaddingTooLong);
    }
    if !all_ones {
        return Err(HuffmanError::BadPadding);
    }
    Ok(())
}

const ROOT: u16 = 0;
const EOS: usize = 256;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Child {
    Node(u16),
    Symbol(u8),
    /// EOS, or (for an incomplete tree, which `CODES` is not) nothing.
    Eos,
}

struct Tree {
    /// Children (bit 0, bit 1) of each inner node; 0 is the root.
    nodes: Vec<[Child; 2]>,
}

impl Tree {
    fn build() -> Tree {
        let mut tree = Tree {
            nodes: vec![[Child::Eos; 2]],
        };
        for (symbol, &(code, len)) in CODES.iter().enumerate() {
            let leaf = match u8::try_from(symbol) {
                Ok(byte) => Child::Symbol(byte),
                Err(_) => Child::Eos,
            };
            tree.insert(code, len, leaf);
        }
        tree
    }

    fn insert(&mut self, code: u32, len: u8, leaf: Child) {
        let mut node = ROOT;
        for depth in (0..len).rev() {
            let bit = usize::from((code >> depth) & 1 == 1);
            let next_free = u16::try_from(self.nodes.len()).unwrap_or(u16::MAX);
            let Some(slot) = self
                .nodes
                .get_mut(usize::from(node))
                .and_then(|n| n.get_mut(bit))
            else {
                return;
            };
            if depth == 0 {
                *slot = leaf;
                return;
            }
            match *slot {
                Child::Node(next) => node = next,
                // A prefix code never passes through a leaf; EOS doubles as
                // "empty", so an unvisited branch gets a new node here.
                Child::Symbol(_) => return,
                Child::Eos => {
                    *slot = Child::Node(next_free);
                    self.nodes.push([Child::Eos; 2]);
                    node = next_free;
                }
            }
        }
    }

    fn child(&self, node: u16, bit: u8) -> Child {
        self.nodes
            .get(usize::from(node))
            .and_then(|n| n.get(usize::from(bit)))
            .copied()
            .unwrap_or(Child::Eos)
    }
}

static TREE: LazyLock<Tree> = LazyLock::new(Tree::build);

/// (code, bit length) of each symbol 0..=255 and EOS (256), from RFC 7541
/// Appendix B.
#[rustfmt::skip]
const CODES: [(u32, u8); EOS + 1] = [
    (0x1ff8, 13), (0x7fffd8, 23), (0xfffffe2, 28), (0xfffffe3, 28),
    (0xfffffe4, 28), (0xfffffe5, 28), (0xfffffe6, 28), (0xfffffe7, 28),
    (0xfffffe8, 28), (0xffffea, 24), (0x3ffffffc, 30), (0xfffffe9, 28),
    (0xfffffea, 28), (0x3ffffffd, 30), (0xfffffeb, 28), (0xfffffec, 28),
    (0xfffffed, 28), (0xfffffee, 28), (0xfffffef, 28), (0xffffff0, 28),
    (0xffffff1, 28), (0xffffff2, 28), (0x3ffffffe, 30), (0xffffff3, 28),
    (0xffffff4, 28), (0xffffff5, 28), (0xffffff6, 28), (0xffffff7, 28),
    (0xffffff8, 28), (0xffffff9, 28), (0xffffffa, 28), (0xffffffb, 28),
    (0x14, 6), (0x3f8, 10), (0x3f9, 10), (0xffa, 12),
    (0x1ff9, 13), (0x15, 6), (0xf8, 8), (0x7fa, 11),
    (0x3fa, 10), (0x3fb, 10), (0xf9, 8), (0x7fb, 11),
    (0xfa, 8), (0x16, 6), (0x17, 6), (0x18, 6),
    (0x0, 5), (0x1, 5), (0x2, 5), (0x19, 6),
    (0x1a, 6), (0x1b, 6), (0x1c, 6), (0x1d, 6),
    (0x1e, 6), (0x1f, 6), (0x5c, 7), (0xfb, 8),
    (0x7ffc, 15), (0x20, 6), (0xffb, 12), (0x3fc, 10),
    (0x1ffa, 13), (0x21, 6), (0x5d, 7), (0x5e, 7),
    (0x5f, 7), (0x60, 7), (0x61, 7), (0x62, 7),
    (0x63, 7), (0x64, 7), (0x65, 7), (0x66, 7),
    (0x67, 7), (0x68, 7), (0x69, 7), (0x6a, 7),
    (0x6b, 7), (0x6c, 7), (0x6d, 7), (0x6e, 7),
    (0x6f, 7), (0x70, 7), (0x71, 7), (0x72, 7),
    (0xfc, 8), (0x73, 7), (0xfd, 8), (0x1ffb, 13),
    (0x7fff0, 19), (0x1ffc, 13), (0x3ffc, 14), (0x22, 6),
    (0x7ffd, 15), (0x3, 5), (0x23, 6), (0x4, 5),
    (0x24, 6), (0x5, 5), (0x25, 6), (0x26, 6),
    (0x27, 6), (0x6, 5), (0x74, 7), (0x75, 7),
    (0x28, 6), (0x29, 6), (0x2a, 6), (0x7, 5),
    (0x2b, 6), (0x76, 7), (0x2c, 6), (0x8, 5),
    (0x9, 5), (0x2d, 6), (0x77, 7), (0x78, 7),
    (0x79, 7), (0x7a, 7), (0x7b, 7), (0x7ffe, 15),
    (0x7fc, 11), (0x3ffd, 14), (0x1ffd, 13), (0xffffffc, 28),
    (0xfffe6, 20), (0x3fffd2, 22), (0xfffe7, 20), (0xfffe8, 20),
    (0x3fffd3, 22), (0x3fffd4, 22), (0x3fffd5, 22), (0x7fffd9, 23),
    (0x3fffd6, 22), (0x7fffda, 23), (0x7fffdb, 23), (0x7fffdc, 23),
    (0x7fffdd, 23), (0x7fffde, 23), (0xffffeb, 24), (0x7fffdf, 23),
    (0xffffec, 24), (0xffffed, 24), (0x3fffd7, 22), (0x7fffe0, 23),
    (0xffffee, 24), (0x7fffe1, 23), (0x7fffe2, 23), (0x7fffe3, 23),
    (0x7fffe4, 23), (0x1fffdc, 21), (0x3fffd8, 22), (0x7fffe5, 23),
    (0x3fffd9, 22), (0x7fffe6, 23), (0x7fffe7, 23), (0xffffef, 24),
    (0x3fffda, 22), (0x1fffdd, 21), (0xfffe9, 20), (0x3fffdb, 22),
    (0x3fffdc, 22), (0x7fffe8, 23), (0x7fffe9, 23), (0x1fffde, 21),
    (0x7fffea, 23), (0x3fffdd, 22), (0x3fffde, 22), (0xfffff0, 24),
    (0x1fffdf, 21), (0x3fffdf, 22), (0x7fffeb, 23), (0x7fffec, 23),
    (0x1fffe0, 21), (0x1fffe1, 21), (0x3fffe0, 22), (0x1fffe2, 21),
    (0x7fffed, 23), (0x3fffe1, 22), (0x7fffee, 23), (0x7fffef, 23),
    (0xfffea, 20), (0x3fffe2, 22), (0x3fffe3, 22), (0x3fffe4, 22),
    (0x7ffff0, 23), (0x3fffe5, 22), (0x3fffe6, 22), (0x7ffff1, 23),
    (0x3ffffe0, 26), (0x3ffffe1, 26), (0xfffeb, 20), (0x7fff1, 19),
    (0x3fffe7, 22), (0x7ffff2, 23), (0x3fffe8, 22), (0x1ffffec, 25),
    (0x3ffffe2, 26), (0x3ffffe3, 26), (0x3ffffe4, 26), (0x7ffffde, 27),
    (0x7ffffdf, 27), (0x3ffffe5, 26), (0xfffff1, 24), (0x1ffffed, 25),
    (0x7fff2, 19), (0x1fffe3, 21), (0x3ffffe6, 26), (0x7ffffe0, 27),
    (0x7ffffe1, 27), (0x3ffffe7, 26), (0x7ffffe2, 27), (0xfffff2, 24),
    (0x1fffe4, 21), (0x1fffe5, 21), (0x3ffffe8, 26), (0x3ffffe9, 26),
    (0xffffffd, 28), (0x7ffffe3, 27), (0x7ffffe4, 27), (0x7ffffe5, 27),
    (0xfffec, 20), (0xfffff3, 24), (0xfffed, 20), (0x1fffe6, 21),
    (0x3fffe9, 22), (0x1fffe7, 21), (0x1fffe8, 21), (0x7ffff3, 23),
    (0x3fffea, 22), (0x3fffeb, 22), (0x1ffffee, 25), (0x1ffffef, 25),
    (0xfffff4, 24), (0xfffff5, 24), (0x3ffffea, 26), (0x7ffff4, 23),
    (0x3ffffeb, 26), (0x7ffffe6, 27), (0x3ffffec, 26), (0x3ffffed, 26),
    (0x7ffffe7, 27), (0x7ffffe8, 27), (0x7ffffe9, 27), (0x7ffffea, 27),
    (0x7ffffeb, 27), (0xffffffe, 28), (0x7ffffec, 27), (0x7ffffed, 27),
    (0x7ffffee, 27), (0x7ffffef, 27), (0x7fffff0, 27), (0x3ffffee, 26),
    (0x3fffffff, 30)   ,
];

/// The encoder, for tests that play an HTTP/2 client (h2 and grpcio
/// Huffman-code most strings; loona-hpack's encoder never does).
#[cfg(test)]
pub fn encode(input: &[u8], out: &mut Vec<u8>) {
    let mut acc = 0u64;
    let mut bits = 0u32;
    for &byte in input {
        let (code, len) = CODES[usize::from(byte)];
        acc = (acc << len) | u64::from(code);
        bits += u32::from(len);
        while bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    if bits > 0 {
        // Padded with the most significant bits of EOS (all 1s).
        out.push(((acc << (8 - bits)) as u8) | (0xff >> bits));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decoded(input: &[u8]) -> Result<Vec<u8>, HuffmanError> {
        let mut out = Vec::new();
        decode(input, &mut out).map(|()| out)
    }

    #[test]
    fn the_tree_is_complete() {
        // A complete binary tree with 257 leaves has 256 inner nodes, each
        // with two children; only EOS's leaf is Child::Eos.
        let tree = &*TREE;
        assert_eq!(tree.nodes.len(), 256);
        let eos_leaves = tree
            .nodes
            .iter()
            .flatten()
            .filter(|c| **c == Child::Eos)
            .count();
        assert_eq!(eos_leaves, 1);
    }

    #[test]
    fn rfc_7541_examples_decode() {
        // C.4.1-C.4.3 and C.6.1.
        let cases: [(&str, &str); 5] = [
            ("f1e3c2e5f23a6ba0ab90f4ff", "www.example.com"),
            ("a8eb10649cbf", "no-cache"),
            ("25a849e95ba97d7f", "custom-key"),
            ("25a849e95bb8e8b4bf", "custom-value"),
            (
                "d07abe941054d444a8200595040b8166e082a62d1bff",
                "Mon, 21 Oct 2013 20:13:21 GMT",
            ),
        ];
        for (hex, text) in cases {
            let bytes = hex::decode(hex).unwrap();
            assert_eq!(decoded(&bytes).unwrap(), text.as_bytes(), "{hex}");
        }
    }

    #[test]
    fn agrees_with_loona_hpack_on_every_byte_and_random_strings() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(11);
        let mut inputs: Vec<Vec<u8>> = vec![(0..=255).collect()];
        for _ in 0..500 {
            let len = rng.gen_range(0..40);
            inputs.push((0..len).map(|_| rng.gen()).collect());
        }
        for input in inputs {
            let mut encoded = Vec::new();
            encode(&input, &mut encoded);
            let theirs = loona_hpack::huffman::HuffmanDecoder::new()
                .decode(&encoded)
                .unwrap();
            assert_eq!(theirs, input);
            assert_eq!(decoded(&encoded).unwrap(), input);
        }
    }

    #[test]
    fn bad_padding_and_eos_are_refused() {
        assert_eq!(decoded(&[]).unwrap(), b"");
        // '0' is 00000 (5 bits); a zero-bit padding is not a prefix of EOS.
        assert_eq!(decoded(&[0b0000_0000]), Err(HuffmanError::BadPadding));
        assert_eq!(decoded(&[0b0000_0111]).unwrap(), b"0");
        // Eight 1 bits of padding: too long.
        assert_eq!(decoded(&[0xff]), Err(HuffmanError::PaddingTooLong));
        // EOS itself: thirty 1 bits.
        assert_eq!(decoded(&[0xff, 0xff, 0xff, 0xfc]), Err(HuffmanError::Eos));
    }
}
