//! Tiny blocking echo servers on 127.0.0.1:0 for the integration tests: one that echoes
//! faithfully, one that corrupts a byte, one that hangs up. Each connection gets a thread;
//! the servers live until the test process exits. Used by `echo.rs` and `hold.rs`.

#![allow(dead_code)] // each test file uses only some of the servers

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::thread;

/// How a test server misbehaves, if at all.
#[derive(Clone, Copy)]
pub enum Behaviour {
    /// Echo every byte back unchanged.
    Faithful,
    /// Echo, but flip the bits of the byte at this stream offset.
    CorruptAt(u64),
    /// Echo the first this-many bytes, then close the connection.
    CloseAfter(u64),
    /// Close every connection as soon as it is accepted.
    CloseAtOnce,
}

/// Starts a server with `behaviour` and returns its address.
pub fn spawn_server(behaviour: Behaviour) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    let addr = listener.local_addr().unwrap();
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            thread::spawn(move || serve(stream, behaviour));
        }
    });
    addr
}

fn serve(mut s: TcpStream, behaviour: Behaviour) {
    if let Behaviour::CloseAtOnce = behaviour {
        return;
    }
    let mut buf = [0u8; 8192];
    let mut offset = 0u64;
    loop {
        let n = match s.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let chunk = &mut buf[..n];
        match behaviour {
            Behaviour::CorruptAt(at) if (offset..offset + n as u64).contains(&at) => {
                chunk[(at - offset) as usize] ^= 0xff;
            }
            Behaviour::CloseAfter(limit) if offset + n as u64 > limit => {
                let keep = (limit - offset) as usize;
                let _ = s.write_all(&chunk[..keep]);
                return;
            }
            _ => {}
        }
        if s.write_all(chunk).is_err() {
            return;
        }
        offset += n as u64;
    }
}
