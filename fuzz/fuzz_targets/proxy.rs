//! Fuzz the PROXY protocol decoder: any bytes, any limit, never a panic, never a length past
//! the input or the limit; and a header found in a prefix is the same header in the whole.
#![no_main]
#![forbid(unsafe_code)]
use herd_proto::proxy::{decode, V1_MAX_LEN};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let max = 16 + (data.first().copied().unwrap_or(0) as usize) * 4;
    if let Ok(Some((h, used))) = decode(data, max) {
        assert!(used <= data.len() && used <= max.max(V1_MAX_LEN));
        assert_eq!(decode(&data[..used], max).unwrap().unwrap(), (h, used));
    }
});
