//! The Workload API's HTTP/2 header relay fed the client side of a
//! connection in arbitrary chunks: never panics, and what it has not
//! refused comes out as whole frames after the preface.
#![no_main]

use libfuzzer_sys::fuzz_target;
use h2_authority_rewrite::Rewriter;

fuzz_target!(|data: &[u8]| {
    // The first byte of each chunk is its length, so the fuzzer also
    // explores how frames are split across reads.
    let mut rewriter = Rewriter::default();
    let mut out = Vec::new();
    let mut rest = data;
    while let Some((&len, tail)) = rest.split_first() {
        let (chunk, tail) = tail.split_at(usize::from(len).min(tail.len()));
        rest = tail;
        if rewriter.push(chunk, &mut out).is_err() {
            return;
        }
    }
});
