//! Fuzz the WebSocket decoder (server role): any bytes never panic or over-consume.
#![no_main]
#![forbid(unsafe_code)]
use herd_proto::ws::{Decoder, Role};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut dec = Decoder::new(Role::Server);
    let mut buf = data.to_vec();
    let mut pos = 0;
    loop {
        let len = buf.len();
        match dec.decode(&mut buf[pos..]) {
            Ok((0, None)) | Err(_) => break,
            Ok((used, _)) => {
                assert!(pos + used <= len);
                pos += used;
            }
        }
    }
});
