//! Record decoding where the broker decompresses: the keyless-record check of compacted topics (run on
//! produce, so on network bytes) and the cleaner's decompress + parse + re-compress of a batch payload.
//!
//! The first input byte picks the codec (0-4, others are refused) and a small decompression cap, so bombs and
//! the cap's edge are explored. Invariants: no panic; decompression never yields more than the cap; records
//! parsed from a payload re-encode, re-compress and decompress to the same records.
#![no_main]

use brook::log::records::{Codec, check_compacted_keys, compress, decompress, parse_records};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    // The produce-path check takes whole (possibly invalid) batches: it must refuse, never panic.
    let _ = check_compacted_keys(rest);

    let codec_id = mode & 0x7;
    let cap = if mode & 0x8 != 0 { 1 << 10 } else { 1 << 20 };
    let Ok((codec, records)) = decompress(codec_id, rest, cap) else {
        return;
    };
    assert!(records.len() <= cap, "decompression stays under its cap");
    let count = i32::from(mode >> 4);
    let Ok(parsed) = parse_records(&records, count) else {
        return;
    };
    assert_eq!(parsed.len(), count as usize);
    if codec == Codec::None {
        return;
    }
    // What the cleaner writes back must read back the same.
    let Ok(again) = compress(codec, &records) else {
        return;
    };
    let (_, round) = decompress(codec.id(), &again, records.len().max(1) * 2 + 64)
        .expect("brook's own compressed output decompresses");
    assert_eq!(round, records, "compress/decompress round trip");
});
