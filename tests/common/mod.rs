//! Shared pieces of the integration tests: a recording handler driven by its input.
#![allow(dead_code)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use herd::codec::LengthDelimited;
use herd::{CloseReason, Conn, ConnId, Handle, Handler};

/// A lifecycle event seen by [`Probe`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ev {
    Open(ConnId),
    Msg(ConnId, Vec<u8>),
    Close(ConnId, CloseReason),
}

/// What the probe recorded, shared with the test thread.
#[derive(Clone, Default)]
pub struct Log {
    pub events: Arc<Mutex<Vec<Ev>>>,
    pub handles: Arc<Mutex<Vec<Handle>>>,
}

impl Log {
    pub fn events(&self) -> Vec<Ev> {
        self.events.lock().unwrap().clone()
    }
    pub fn closes(&self) -> usize {
        self.events()
            .iter()
            .filter(|e| matches!(e, Ev::Close(..)))
            .count()
    }
    pub fn opens(&self) -> usize {
        self.events()
            .iter()
            .filter(|e| matches!(e, Ev::Open(..)))
            .count()
    }
    pub fn handle(&self, i: usize) -> Handle {
        self.handles.lock().unwrap()[i].clone()
    }
    /// Every connection's events are: one Open, then Msgs, then exactly one Close, nothing after.
    pub fn assert_lifecycles(&self) {
        use std::collections::HashMap;
        let mut st: HashMap<ConnId, u8> = HashMap::new(); // 1 open, 2 closed
        for e in self.events() {
            match e {
                Ev::Open(id) => assert!(st.insert(id, 1).is_none(), "{id} opened twice"),
                Ev::Msg(id, _) => assert_eq!(st.get(&id), Some(&1), "{id}: message outside open"),
                Ev::Close(id, _) => {
                    assert_eq!(
                        st.insert(id, 2),
                        Some(1),
                        "{id}: close without open or twice"
                    )
                }
            }
        }
    }
}

/// Length-delimited handler: records everything; echoes bodies except commands:
/// `close` closes now, `bye` replies `bye` then closes after flush, `panic` panics,
/// `busy` marks the connection busy for graceful stop, `idle` unmarks it.
pub struct Probe {
    pub log: Log,
    pub max_frame: usize,
}

pub struct ProbeState {
    pub busy: bool,
}

impl Probe {
    pub fn new(log: Log) -> Self {
        Probe {
            log,
            max_frame: 64 << 20,
        }
    }
}

impl Handler for Probe {
    type State = ProbeState;
    type Codec = LengthDelimited;

    fn new_codec(&mut self) -> LengthDelimited {
        LengthDelimited::new(self.max_frame)
    }

    fn on_open(&mut self, cx: &mut Conn<'_, Self>) -> Option<ProbeState> {
        self.log.events.lock().unwrap().push(Ev::Open(cx.id()));
        self.log.handles.lock().unwrap().push(cx.handle());
        Some(ProbeState { busy: false })
    }

    fn on_message(&mut self, cx: &mut Conn<'_, Self>, st: &mut ProbeState, msg: &[u8]) {
        self.log
            .events
            .lock()
            .unwrap()
            .push(Ev::Msg(cx.id(), msg.to_vec()));
        match msg {
            b"close" => cx.close(),
            b"bye" => {
                cx.send(&b"bye"[..]);
                cx.close_after_flush();
            }
            b"panic" => panic!("probe asked to panic"),
            b"busy" => st.busy = true,
            b"idle" => st.busy = false,
            _ => cx.send(msg),
        }
    }

    fn on_close(&mut self, cx: &mut Conn<'_, Self>, _st: ProbeState, reason: CloseReason) {
        self.log
            .events
            .lock()
            .unwrap()
            .push(Ev::Close(cx.id(), reason));
        // Sends after close are dropped, never written.
        cx.send(&b"after-close"[..]);
    }

    fn is_busy(&self, st: &ProbeState) -> bool {
        st.busy
    }
}

/// Length-delimited frame bytes.
pub fn frame(body: &[u8]) -> Vec<u8> {
    let mut v = (body.len() as u32).to_be_bytes().to_vec();
    v.extend_from_slice(body);
    v
}

pub const SHORT: Duration = Duration::from_millis(300);

/// Start a [`Probe`] server from a configured builder; returns it with the probe's log.
pub fn serve_probe(builder: herd::Server) -> (herd::ServerHandle, Log) {
    let log = Log::default();
    let l2 = log.clone();
    let server = builder.serve(move || Probe::new(l2.clone())).unwrap();
    (server, log)
}
