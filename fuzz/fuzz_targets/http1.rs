//! Fuzz the HTTP/1.1 request decoder, feeding the input in two pieces.
#![no_main]
#![forbid(unsafe_code)]
use herd_proto::http1::{Limits, RequestDecoder};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.is_empty() {
        return;
    }
    let cut = data[0] as usize % data.len();
    let mut dec = RequestDecoder::new(Limits::default());
    let mut held: Vec<u8> = Vec::new();
    for piece in [&data[1..cut.max(1)], &data[cut.max(1)..]] {
        held.extend_from_slice(piece);
        loop {
            match dec.decode(&held) {
                Ok((0, None)) => break,
                Ok((used, _)) => {
                    assert!(used <= held.len());
                    held.drain(..used);
                }
                Err(_) => return,
            }
        }
    }
});
