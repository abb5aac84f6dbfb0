use rand::{Rng, SeedableRng};

use super::super::frames::encode_integer;
use super::*;

type Fields = Vec<(String, String)>;

fn decode(decoder: &mut Decoder, block: &[u8]) -> Result<Fields, HpackError> {
    let mut fields = Vec::new();
    decoder.decode(block, |n, v| {
        fields.push((
            String::from_utf8_lossy(n).into_owned(),
            String::from_utf8_lossy(v).into_owned(),
        ))
    })?;
    Ok(fields)
}

fn fields(list: &[(&str, &str)]) -> Fields {
    list.iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect()
}

fn table(decoder: &Decoder) -> Fields {
    decoder
        .table
        .entries
        .iter()
        .map(|(n, v)| {
            (
                String::from_utf8_lossy(n).into_owned(),
                String::from_utf8_lossy(v).into_owned(),
            )
        })
        .collect()
}

#[test]
fn rfc_7541_huffman_requests_share_one_table() {
    // C.4.1-C.4.3.
    let mut d = Decoder::new(4096);
    let block = hex::decode("828684418cf1e3c2e5f23a6ba0ab90f4ff").unwrap();
    let first = [
        (":method", "GET"),
        (":scheme", "http"),
        (":path", "/"),
        (":authority", "www.example.com"),
    ];
    assert_eq!(decode(&mut d, &block).unwrap(), fields(&first));
    let block = hex::decode("828684be5886a8eb10649cbf").unwrap();
    let mut second = first.to_vec();
    second.push(("cache-control", "no-cache"));
    assert_eq!(decode(&mut d, &block).unwrap(), fields(&second));
    let block = hex::decode("828785bf408825a849e95ba97d7f8925a849e95bb8e8b4bf").unwrap();
    assert_eq!(
        decode(&mut d, &block).unwrap(),
        fields(&[
            (":method", "GET"),
            (":scheme", "https"),
            (":path", "/index.html"),
            (":authority", "www.example.com"),
            ("custom-key", "custom-value"),
        ])
    );
    assert_eq!(
        table(&d),
        fields(&[
            ("custom-key", "custom-value"),
            ("cache-control", "no-cache"),
            (":authority", "www.example.com"),
        ])
    );
    assert_eq!(d.table.size, 164);
}

#[test]
fn rfc_7541_huffman_responses_evict_the_oldest_entries() {
    // C.6.1-C.6.3, with a 256-octet table.
    let mut d = Decoder::new(256);
    let blocks = [
        "488264025885aec3771a4b6196d07abe941054d444a8200595040b8166e082a62d1bff6e919d29ad171863c78f0b97c8e9ae82ae43d3",
        "4883640effc1c0bf",
        "88c16196d07abe941054d444a8200595040b8166e084a62d1bffc05a839bd9ab77ad94e7821dd7f2e6c7b335dfdfcd5b3960d5af27087f3672c1ab270fb5291f9587316065c003ed4ee5b1063d5007",
    ];
    let mut got = Vec::new();
    for block in blocks {
        got.push(decode(&mut d, &hex::decode(block).unwrap()).unwrap());
    }
    let cookie = "foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1";
    assert_eq!(
        got[1],
        fields(&[
            (":status", "307"),
            ("cache-control", "private"),
            ("date", "Mon, 21 Oct 2013 20:13:21 GMT"),
            ("location", "https://www.example.com"),
        ])
    );
    assert_eq!(
        got[2],
        fields(&[
            (":status", "200"),
            ("cache-control", "private"),
            ("date", "Mon, 21 Oct 2013 20:13:22 GMT"),
            ("location", "https://www.example.com"),
            ("content-encoding", "gzip"),
            ("set-cookie", cookie),
        ])
    );
    assert_eq!(
        table(&d),
        fields(&[
            ("set-cookie", cookie),
            ("content-encoding", "gzip"),
            ("date", "Mon, 21 Oct 2013 20:13:22 GMT"),
        ])
    );
    assert_eq!(d.table.size, 215);
}

#[test]
fn static_table_matches_loona_hpack() {
    for index in 1..=61u8 {
        let block = [0x80 | index];
        let theirs = loona_hpack::Decoder::new().decode(&block).unwrap();
        let mut ours = Vec::new();
        Decoder::new(4096)
            .decode(&block, |n, v| ours.push((n.to_vec(), v.to_vec())))
            .unwrap();
        assert_eq!(ours, theirs, "index {index}");
    }
}

/// A random client: every representation, Huffman or not, indexes into
/// both tables (sometimes past their end) and table size updates. Both
/// decoders must agree on every block, fields and refusals alike.
#[test]
fn agrees_with_loona_hpack_on_random_blocks() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(3);
    let names: [&[u8]; 4] = [b":authority", b"content-type", b"x-a", b"x-long-name"];
    // Mostly the static table; now and then a dynamic entry that may not
    // exist.
    let index = |rng: &mut rand::rngs::StdRng| {
        if rng.gen_bool(0.9) {
            rng.gen_range(1..=61)
        } else {
            rng.gen_range(62..66)
        }
    };
    let string = |rng: &mut rand::rngs::StdRng, s: &[u8], out: &mut Vec<u8>| {
        if rng.gen_bool(0.5) {
            let mut coded = Vec::new();
            huffman::encode(s, &mut coded);
            let at = out.len();
            encode_integer(coded.len(), 7, out);
            out[at] |= 0x80;
            out.extend(coded);
        } else {
            encode_integer(s.len(), 7, out);
            out.extend_from_slice(s);
        }
    };
    for _ in 0..100 {
        let mut theirs = loona_hpack::Decoder::new();
        let mut ours = Decoder::new(4096);
        for _ in 0..20 {
            let mut block = Vec::new();
            // (loona-hpack refuses a block that is only a size update.)
            let count = rng.gen_range(0..8);
            if count > 0 && rng.gen_bool(0.1) {
                encode_integer(rng.gen_range(0..=4096), 5, &mut block);
                block[0] |= 0x20;
            }
            for _ in 0..count {
                let at = block.len();
                match rng.gen_range(0..4) {
                    0 => {
                        encode_integer(index(&mut rng), 7, &mut block);
                        block[at] |= 0x80;
                    }
                    kind => {
                        // 1: incremental indexing, 2: without, 3: never.
                        let (prefix, flag) = [(6, 0x40), (4, 0x00), (4, 0x10)][kind - 1];
                        let name_index = if rng.gen_bool(0.5) {
                            0
                        } else {
                            index(&mut rng)
                        };
                        encode_integer(name_index, prefix, &mut block);
                        block[at] |= flag;
                        if name_index == 0 {
                            let name = names[rng.gen_range(0..names.len())];
                            string(&mut rng, name, &mut block);
                        }
                        let value: Vec<u8> = (0..rng.gen_range(0..1500))
                            .map(|_| rng.gen_range(b' '..=b'~'))
                            .collect();
                        string(&mut rng, &value, &mut block);
                    }
                }
            }
            let want = theirs.decode(&block);
            let mut got = Vec::new();
            let result = ours.decode(&block, |n, v| got.push((n.to_vec(), v.to_vec())));
            match want {
                Ok(want) => {
                    assert_eq!(result, Ok(()));
                    assert_eq!(got, want);
                }
                Err(e) => {
                    assert!(result.is_err(), "loona refused ({e:?}), we did not");
                    // A refused block ends the connection: start over.
                    break;
                }
            }
        }
    }
}

#[test]
fn malformed_blocks_are_refused_with_their_reason() {
    let refused = |block: &[u8]| Decoder::new(4096).decode(block, |_, _| {}).unwrap_err();
    assert_eq!(refused(&[0x80]), HpackError::BadIndex(0));
    assert_eq!(refused(&[0xbe]), HpackError::BadIndex(62));
    // A literal whose value is cut short.
    assert_eq!(refused(&[0x04, 0x05, b'a']), HpackError::Truncated);
    // An integer that keeps going past 5 octets.
    assert_eq!(
        refused(&[0xff, 0xff, 0xff, 0xff, 0xff, 0x01]),
        HpackError::IntegerTooLong
    );
    assert_eq!(
        refused(&[0x3f, 0xe2, 0x1f]),
        HpackError::SizeAboveMax(4097, 4096)
    );
    assert_eq!(refused(&[0x82, 0x20]), HpackError::LateSizeUpdate);
    // ':path' with a Huffman value of all-zero bits: bad padding.
    assert_eq!(
        refused(&[0x04, 0x81, 0x00]),
        HpackError::Huffman(HuffmanError::BadPadding)
    );
}

#[test]
fn a_size_update_at_the_start_shrinks_the_table() {
    let mut d = Decoder::new(4096);
    // Literal with incremental indexing, new name "x-a", value "b".
    decode(&mut d, &[0x40, 0x03, b'x', b'-', b'a', 0x01, b'b']).unwrap();
    assert_eq!(d.table.size, 36);
    decode(&mut d, &[0x20, 0xbe]).unwrap_err();
    assert_eq!(decode(&mut d, &[0x20]).unwrap(), Fields::new());
    assert_eq!(d.table.size, 0);
    assert_eq!(
        Decoder::new(4096).decode(&[0xbe], |_, _| {}),
        Err(HpackError::BadIndex(62))
    );
}

#[test]
fn an_entry_larger_than_the_table_empties_it() {
    let mut t = DynamicTable::new(40);
    t.insert((b"a".to_vec(), b"b".to_vec()));
    assert_eq!(t.size, 34);
    t.insert((b"long".to_vec(), b"value".to_vec()));
    assert_eq!((t.size, t.entries.len()), (0, 0));
}
