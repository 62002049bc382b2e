//! `Conn::send_file`: zero-copy file bodies, ordered with the bytes around them.

use std::io::Write;

use herd::codec::LinesCodec;
use herd::{Conn, Handler, Server};
use herd_testkit::*;

/// On a line `N`, replies `begin\n`, then N bytes of the file, then `end\n`.
struct FileServer {
    path: std::path::PathBuf,
}

impl Handler for FileServer {
    type State = ();
    type Codec = LinesCodec;
    fn new_codec(&mut self) -> LinesCodec {
        LinesCodec::new(64)
    }
    fn on_open(&mut self, _: &mut Conn<'_, Self>) -> Option<()> {
        Some(())
    }
    fn on_message(&mut self, cx: &mut Conn<'_, Self>, _: &mut (), line: &[u8]) {
        let n: u64 = std::str::from_utf8(line).unwrap().parse().unwrap();
        cx.send("begin");
        cx.send_file(std::fs::File::open(&self.path).unwrap(), 1, n);
        cx.send("end");
    }
}

#[test]
fn files_are_sent_in_order_with_surrounding_bytes() {
    let dir = std::env::temp_dir().join(format!("herd-sendfile-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("data.bin");
    let data = pattern(9, 8 << 20);
    std::fs::write(&path, &data).unwrap();
    let p2 = path.clone();
    let server = Server::new()
        .bind("127.0.0.1:0")
        .unwrap()
        .loops(1)
        .serve(move || FileServer { path: p2.clone() })
        .unwrap();
    let mut c = connect(server.local_addr());
    // Two pipelined requests: a big file (many sendfile calls) and a small one.
    let big = (8 << 20) - 1;
    c.write_all(format!("{big}\n10\n").as_bytes()).unwrap();
    let mut expect = b"begin\n".to_vec();
    expect.extend_from_slice(&data[1..1 + big]);
    expect.extend_from_slice(b"end\nbegin\n");
    expect.extend_from_slice(&data[1..11]);
    expect.extend_from_slice(b"end\n");
    let got = read_n(&mut c, expect.len());
    assert!(got == expect, "file bytes or order differ");
    // A file shorter than promised closes the connection rather than hanging it.
    c.write_all(format!("{}\n", 9 << 20).as_bytes()).unwrap();
    let rest = read_to_close(&mut c);
    assert!(rest.len() < (9 << 20) + 10);
    std::fs::remove_dir_all(&dir).unwrap();
}
