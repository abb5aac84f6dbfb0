//! The hash chain: `hash_n = SHA-256(hash_{n-1} ‖ canonical(record_n))`,
//! `hash_0` all zeros, one chain per trust domain. [`Verifier`] walks stored
//! records in order and names the first that does not belong where it is;
//! checkpoints held outside the datastore catch what a consistent rewrite
//! of every hash, or a cut tail, would hide.

use ring::digest::{Context, SHA256};

/// The hash before the first record.
pub const GENESIS: [u8; 32] = [0; 32];

/// `SHA-256(prev ‖ canonical)`.
pub fn link(prev: &[u8; 32], canonical: &str) -> [u8; 32] {
    let mut ctx = Context::new(&SHA256);
    ctx.update(prev);
    ctx.update(canonical.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

pub fn to_hex(hash: &[u8; 32]) -> String {
    hex::encode(hash)
}

pub fn from_hex(s: &str) -> Option<[u8; 32]> {
    let bytes = hex::decode(s).ok()?;
    bytes.try_into().ok()
}

/// A record as the datastore holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRecord {
    pub seq: u64,
    pub record: String,
    /// Lowercase hex.
    pub hash: String,
}

/// `records` chained after `head` (none: the chain is empty), numbered on.
/// A head whose stored hash does not parse (tampered with) is chained from
/// zeros: appends go on, and `audit verify` names the damaged record.
pub fn extend(head: Option<&StoredRecord>, records: Vec<String>) -> Vec<StoredRecord> {
    let (mut seq, mut prev) = head.map_or((0, GENESIS), |h| {
        (h.seq, from_hex(&h.hash).unwrap_or(GENESIS))
    });
    records
        .into_iter()
        .map(|record| {
            seq += 1;
            prev = link(&prev, &record);
            StoredRecord {
                seq,
                record,
                hash: to_hex(&prev),
            }
        })
        .collect()
}

/// The first thing wrong with the chain.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Break {
    #[error("record {seq} was altered (its hash does not match its content and the record before it), or records before it were reordered")]
    Altered { seq: u64 },
    #[error("record {seq} is missing (removed): the chain goes from {before} to {after}")]
    Removed { seq: u64, before: u64, after: u64 },
    #[error("record {seq} is out of order or inserted (after record {after})")]
    Inserted { seq: u64, after: u64 },
    #[error("records after {last} are missing (the tail was cut): checkpoint {checkpoint} names record {checkpoint_seq}")]
    Truncated {
        last: u64,
        checkpoint: String,
        checkpoint_seq: u64,
    },
    #[error("record {seq} does not match checkpoint {checkpoint} (the datastore was rewritten up to it)")]
    Rewritten { seq: u64, checkpoint: String },
}

/// Walks records in the order the datastore returns them.
pub struct Verifier {
    start: u64,
    prev_seq: u64,
    prev_hash: [u8; 32],
    /// Hashes at the sequence numbers checkpoints name, as recomputed.
    wanted: std::collections::BTreeMap<u64, Option<[u8; 32]>>,
    pub checked: u64,
}

impl Verifier {
    /// Starts after record `seq` whose hash is `hash` (0 and [`GENESIS`] for
    /// the whole chain); `checkpoint_seqs` are the records whose recomputed
    /// hash the checkpoints will be compared with.
    pub fn new(seq: u64, hash: [u8; 32], checkpoint_seqs: impl IntoIterator<Item = u64>) -> Self {
        Self {
            start: seq,
            prev_seq: seq,
            prev_hash: hash,
            wanted: checkpoint_seqs.into_iter().map(|s| (s, None)).collect(),
            checked: 0,
        }
    }

    pub fn feed(&mut self, r: &StoredRecord) -> Result<(), Break> {
        let expected = self.prev_seq + 1;
        if r.seq > expected {
            return Err(Break::Removed {
                seq: expected,
                before: self.prev_seq,
                after: r.seq,
            });
        }
        if r.seq < expected {
            return Err(Break::Inserted {
                seq: r.seq,
                after: self.prev_seq,
            });
        }
        let hash = link(&self.prev_hash, &r.record);
        if from_hex(&r.hash) != Some(hash) {
            return Err(Break::Altered { seq: r.seq });
        }
        if let Some(slot) = self.wanted.get_mut(&r.seq) {
            *slot = Some(hash);
        }
        self.prev_seq = r.seq;
        self.prev_hash = hash;
        self.checked += 1;
        Ok(())
    }

    /// The last record seen and its hash.
    pub fn head(&self) -> (u64, [u8; 32]) {
        (self.prev_seq, self.prev_hash)
    }

    /// Compares the recomputed chain with checkpoints `(name, seq, hash)`.
    pub fn against<'a>(
        &self,
        checkpoints: impl IntoIterator<Item = (&'a str, u64, [u8; 32])>,
    ) -> Result<(), Break> {
        for (name, seq, hash) in checkpoints {
            match self.wanted.get(&seq) {
                Some(Some(h)) if *h == hash => {}
                Some(Some(_)) => {
                    return Err(Break::Rewritten {
                        seq,
                        checkpoint: name.to_owned(),
                    })
                }
                // Before where this walk started: not this walk's to judge.
                _ if seq <= self.start => {}
                _ => {
                    return Err(Break::Truncated {
                        last: self.prev_seq,
                        checkpoint: name.to_owned(),
                        checkpoint_seq: seq,
                    })
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(records: &[&str]) -> Vec<StoredRecord> {
        let mut prev = GENESIS;
        records
            .iter()
            .enumerate()
            .map(|(i, r)| {
                prev = link(&prev, r);
                StoredRecord {
                    seq: i as u64 + 1,
                    record: (*r).to_owned(),
                    hash: to_hex(&prev),
                }
            })
            .collect()
    }

    fn walk(rows: &[StoredRecord]) -> Result<Verifier, Break> {
        let mut v = Verifier::new(0, GENESIS, [3]);
        for r in rows {
            v.feed(r)?;
        }
        Ok(v)
    }

    #[test]
    fn an_intact_chain_verifies() {
        let rows = chain(&["a", "b", "c", "d"]);
        let v = walk(&rows).unwrap();
        assert_eq!(v.checked, 4);
        let h3 = from_hex(&rows[2].hash).unwrap();
        v.against([("cp", 3, h3)]).unwrap();
    }

    #[test]
    fn each_kind_of_tampering_names_the_first_bad_record() {
        let rows = chain(&["a", "b", "c", "d"]);

        let mut edited = rows.clone();
        edited[1].record = "B".into();
        assert_eq!(walk(&edited).err(), Some(Break::Altered { seq: 2 }));

        let mut removed = rows.clone();
        removed.remove(2);
        assert_eq!(
            walk(&removed).err(),
            Some(Break::Removed {
                seq: 3,
                before: 2,
                after: 4
            })
        );

        // Two rows' contents swapped, numbers kept.
        let mut swapped = rows.clone();
        let (r1, h1) = (swapped[1].record.clone(), swapped[1].hash.clone());
        swapped[1].record = swapped[2].record.clone();
        swapped[1].hash = swapped[2].hash.clone();
        swapped[2].record = r1;
        swapped[2].hash = h1;
        assert_eq!(walk(&swapped).err(), Some(Break::Altered { seq: 2 }));

        // Renumbered after a removal: the link breaks where the gap was.
        let mut renumbered = removed.clone();
        renumbered[2].seq = 3;
        assert_eq!(walk(&renumbered).err(), Some(Break::Altered { seq: 3 }));

        let mut inserted = rows.clone();
        inserted.insert(2, rows[0].clone());
        assert_eq!(
            walk(&inserted).err(),
            Some(Break::Inserted { seq: 1, after: 2 })
        );
    }

    #[test]
    fn a_consistent_rewrite_or_a_cut_tail_is_caught_by_a_checkpoint() {
        let rows = chain(&["a", "b", "c", "d"]);
        let h3 = from_hex(&rows[2].hash).unwrap();
        // Every hash recomputed after changing record 2: internally sound.
        let rewritten = chain(&["a", "B", "c", "d"]);
        let v = walk(&rewritten).unwrap();
        assert_eq!(
            v.against([("cp", 3, h3)]),
            Err(Break::Rewritten {
                seq: 3,
                checkpoint: "cp".into()
            })
        );
        let v = walk(&rows[..2]).unwrap();
        assert_eq!(
            v.against([("cp", 3, h3)]),
            Err(Break::Truncated {
                last: 2,
                checkpoint: "cp".into(),
                checkpoint_seq: 3
            })
        );
    }
}
