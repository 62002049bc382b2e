//! Fuzz the frame decoder: any bytes, any split, never a panic, never over-consumption.
#![no_main]
#![forbid(unsafe_code)]
use herd_proto::frame::FrameDecoder;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut dec = FrameDecoder::new(1 << 16);
    let mut rest = data;
    while let Ok((used, Some(_frame))) = dec.decode(rest) {
        assert!(used > 0 && used <= rest.len());
        rest = &rest[used..];
    }
});
