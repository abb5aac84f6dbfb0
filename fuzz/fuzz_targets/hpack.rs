//! The relay's HPACK decoder against loona-hpack, block by block on one
//! connection's table: where both accept a block they must give the same
//! fields, and either may refuse only what the two are known to treat
//! differently (ours follows h2: no size update after a field, integers of
//! at most 5 octets; loona-hpack refuses a block that ends in a size
//! update).
#![no_main]

use libfuzzer_sys::fuzz_target;
use h2_authority_rewrite::fuzzing::HpackDecoder;

const TABLE: usize = 4096;

fuzz_target!(|data: &[u8]| {
    let mut ours = HpackDecoder::new(TABLE);
    let mut theirs = loona_hpack::Decoder::new();
    theirs.set_max_allowed_table_size(TABLE);
    // The first byte of each block is its length.
    let mut rest = data;
    while let Some((&len, tail)) = rest.split_first() {
        let (block, tail) = tail.split_at(usize::from(len).min(tail.len()));
        rest = tail;
        let mut got = Vec::new();
        let result = ours.decode(block, |n, v| got.push((n.to_vec(), v.to_vec())));
        match (result, theirs.decode(block)) {
            (Ok(()), Ok(want)) => assert_eq!(got, want, "block {block:02x?}"),
            (Err(e), Ok(_)) => {
                let e = e.to_string();
                assert!(
                    e.contains("after a header field") || e.contains("longer than 5 octets"),
                    "we refused what loona-hpack accepts ({e}): {block:02x?}"
                );
                return;
            }
            (Ok(()), Err(e)) => {
                assert!(
                    matches!(e, loona_hpack::decoder::DecoderError::SizeUpdateAtEnd),
                    "loona-hpack refused ({e:?}) what we accept: {block:02x?}"
                );
                return;
            }
            // A refused block ends the connection.
            (Err(_), Err(_)) => return,
        }
    }
});
