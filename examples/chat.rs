//! Chat over herd frames and protobuf: log in, join rooms, talk (messages are pushed to every
//! member of the room, whichever loop serves them), and read a room's history through a
//! blocking query on the worker pool.
//!
//! `cargo run --release --example chat -- --port 9100 --loops 2`
//! Options: `--max-frame BYTES` (default 65536), `--heartbeat SECS` (default 60, 0 = off),
//! `--pool-threads N` (default 2), `--max-conns-per-ip N` (default 0 = no limit).
//!
//! The messages are in `examples/proto/chat.proto` (ids and rules there too). They are
//! mirrored below with hand-written prost derives rather than generated at build time: the
//! schema is small and stable, building herd needs no `protoc`, and the Python interop check
//! (`.ci/interop-frame.sh`) generates its classes from the same .proto, so any drift between
//! the two shows up as a failed check.
//!
//! Rooms live in one registry behind a mutex, touched on join, leave, say and close (fine for
//! an example; a real service would shard it). A chat message is encoded once into `Bytes`
//! and the same buffer is queued to every member through its `FrameHandle`.

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use herd::args::ServeArgs;
use herd::frame::prost;
use herd::frame::{encode_msg, FrameConn, FrameHandle, FrameService, HandlerError, Router};
use herd::pool::WorkerPool;
use herd::proto::frame::Flags;
use herd::{ConnId, Server};

const LOGIN: u16 = 1;
const JOIN: u16 = 2;
const LEAVE: u16 = 3;
const SAY: u16 = 4;
const HISTORY: u16 = 5;
const ECHO: u16 = 6;
const CHAT: u16 = 100;

const MAX_NAME: usize = 32;
const MAX_ROOM: usize = 64;
const MAX_TEXT: usize = 4096;
const MAX_ROOMS_PER_USER: usize = 16;
const HISTORY_KEPT: usize = 100;

#[derive(Clone, PartialEq, prost::Message)]
#[prost(prost_path = "::herd::frame::prost")]
struct LoginReq {
    #[prost(string, tag = "1")]
    name: String,
}

#[derive(Clone, PartialEq, prost::Message)]
#[prost(prost_path = "::herd::frame::prost")]
struct LoginResp {
    #[prost(string, tag = "1")]
    name: String,
    #[prost(uint32, tag = "2")]
    online: u32,
}

#[derive(Clone, PartialEq, prost::Message)]
#[prost(prost_path = "::herd::frame::prost")]
struct JoinReq {
    #[prost(string, tag = "1")]
    room: String,
}

#[derive(Clone, PartialEq, prost::Message)]
#[prost(prost_path = "::herd::frame::prost")]
struct JoinResp {
    #[prost(string, tag = "1")]
    room: String,
    #[prost(string, repeated, tag = "2")]
    members: Vec<String>,
}

#[derive(Clone, PartialEq, prost::Message)]
#[prost(prost_path = "::herd::frame::prost")]
struct LeaveReq {
    #[prost(string, tag = "1")]
    room: String,
}

#[derive(Clone, PartialEq, prost::Message)]
#[prost(prost_path = "::herd::frame::prost")]
struct LeaveResp {
    #[prost(string, tag = "1")]
    room: String,
}

#[derive(Clone, PartialEq, prost::Message)]
#[prost(prost_path = "::herd::frame::prost")]
struct SayReq {
    #[prost(string, tag = "1")]
    room: String,
    #[prost(string, tag = "2")]
    text: String,
}

#[derive(Clone, PartialEq, prost::Message)]
#[prost(prost_path = "::herd::frame::prost")]
struct SayResp {
    #[prost(uint32, tag = "1")]
    delivered: u32,
    #[prost(uint64, tag = "2")]
    seq: u64,
}

#[derive(Clone, PartialEq, prost::Message)]
#[prost(prost_path = "::herd::frame::prost")]
struct ChatMsg {
    #[prost(string, tag = "1")]
    room: String,
    #[prost(string, tag = "2")]
    from: String,
    #[prost(string, tag = "3")]
    text: String,
    #[prost(uint64, tag = "4")]
    seq: u64,
}

#[derive(Clone, PartialEq, prost::Message)]
#[prost(prost_path = "::herd::frame::prost")]
struct HistoryReq {
    #[prost(string, tag = "1")]
    room: String,
    #[prost(uint32, tag = "2")]
    limit: u32,
}

#[derive(Clone, PartialEq, prost::Message)]
#[prost(prost_path = "::herd::frame::prost")]
struct HistoryResp {
    #[prost(message, repeated, tag = "1")]
    messages: Vec<ChatMsg>,
}

/// A connection's user data.
#[derive(Default)]
struct Session {
    name: Option<String>,
    rooms: BTreeSet<String>,
}

#[derive(Default)]
struct Room {
    members: HashMap<ConnId, (String, FrameHandle)>,
    history: VecDeque<ChatMsg>,
    next_seq: u64,
}

/// Everything shared by all loops and the pool.
#[derive(Default)]
struct Registry {
    names: HashSet<String>,
    rooms: HashMap<String, Room>,
}

#[derive(Clone, Default)]
struct Shared(Arc<Mutex<Registry>>);

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Registry> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn check(what: &str, value: &str, max: usize) -> Result<(), HandlerError> {
    if value.is_empty() || value.chars().count() > max {
        return Err(HandlerError::new(format!(
            "{what} must be 1 to {max} characters"
        )));
    }
    Ok(())
}

fn logged_in(cx: &mut FrameConn<'_, '_, Session>) -> Result<String, HandlerError> {
    cx.user()
        .name
        .clone()
        .ok_or_else(|| HandlerError::new("log in first"))
}

fn router(shared: Shared) -> Router<Session> {
    let (s1, s2, s3, s4, s5, s6) = (
        shared.clone(),
        shared.clone(),
        shared.clone(),
        shared.clone(),
        shared.clone(),
        shared,
    );
    Router::<Session>::with_user_data()
        .route(LOGIN, move |cx, req: LoginReq| {
            if let Some(name) = &cx.user().name {
                return Err(HandlerError::new(format!("already logged in as {name}")));
            }
            check("name", &req.name, MAX_NAME)?;
            let mut reg = s1.lock();
            if !reg.names.insert(req.name.clone()) {
                return Err(HandlerError::new(format!("name {} is taken", req.name)));
            }
            let online = reg.names.len() as u32;
            drop(reg);
            cx.user().name = Some(req.name.clone());
            Ok(Some(LoginResp {
                name: req.name,
                online,
            }))
        })
        .route(JOIN, move |cx, req: JoinReq| {
            let name = logged_in(cx)?;
            check("room", &req.room, MAX_ROOM)?;
            if cx.user().rooms.len() >= MAX_ROOMS_PER_USER && !cx.user().rooms.contains(&req.room) {
                return Err(HandlerError::new("too many rooms"));
            }
            let (id, handle) = (cx.id(), cx.handle());
            let mut reg = s2.lock();
            let room = reg.rooms.entry(req.room.clone()).or_default();
            room.members.insert(id, (name, handle));
            let mut members: Vec<String> = room.members.values().map(|(n, _)| n.clone()).collect();
            drop(reg);
            members.sort();
            cx.user().rooms.insert(req.room.clone());
            Ok(Some(JoinResp {
                room: req.room,
                members,
            }))
        })
        .route(LEAVE, move |cx, req: LeaveReq| {
            logged_in(cx)?;
            if !cx.user().rooms.remove(&req.room) {
                return Err(HandlerError::new(format!("not in room {}", req.room)));
            }
            let id = cx.id();
            if let Some(room) = s3.lock().rooms.get_mut(&req.room) {
                room.members.remove(&id);
            }
            Ok(Some(LeaveResp { room: req.room }))
        })
        .route(SAY, move |cx, req: SayReq| {
            let from = logged_in(cx)?;
            if !cx.user().rooms.contains(&req.room) {
                return Err(HandlerError::new(format!("not in room {}", req.room)));
            }
            if req.text.len() > MAX_TEXT {
                return Err(HandlerError::new("text too long"));
            }
            let me = cx.id();
            let mut reg = s4.lock();
            let Some(room) = reg.rooms.get_mut(&req.room) else {
                return Err(HandlerError::new("no such room"));
            };
            room.next_seq += 1;
            let msg = ChatMsg {
                room: req.room,
                from,
                text: req.text,
                seq: room.next_seq,
            };
            // Encoded once; every member's queue gets the same bytes.
            let bytes = encode_msg(CHAT, Flags::PUSH, 0, &msg)?;
            let mut delivered = 0;
            for (id, (_, handle)) in &room.members {
                if *id != me {
                    handle.send_encoded(bytes.clone());
                    delivered += 1;
                }
            }
            let seq = msg.seq;
            if room.history.len() == HISTORY_KEPT {
                room.history.pop_front();
            }
            room.history.push_back(msg);
            Ok(Some(SayResp { delivered, seq }))
        })
        // A "database query": runs on the worker pool, off the event loops.
        .route_blocking(HISTORY, move |req: HistoryReq| {
            let reg = s5.lock();
            let Some(room) = reg.rooms.get(&req.room) else {
                return Err(HandlerError::new(format!("no such room {}", req.room)));
            };
            let n = match req.limit as usize {
                0 => room.history.len(),
                n => n.min(room.history.len()),
            };
            let skip = room.history.len() - n;
            Ok(HistoryResp {
                messages: room.history.iter().skip(skip).cloned().collect(),
            })
        })
        .route_raw(ECHO, |cx, body| {
            cx.reply(body);
            Ok(None)
        })
        .on_close(move |session, info| {
            let mut reg = s6.lock();
            if let Some(name) = &session.name {
                reg.names.remove(name);
            }
            for r in &session.rooms {
                if let Some(room) = reg.rooms.get_mut(r) {
                    room.members.remove(&info.id);
                }
            }
        })
}

fn main() -> std::io::Result<()> {
    let args = ServeArgs::from_env(9100);
    let max_frame = args.get::<u32>("max-frame").unwrap_or(64 * 1024);
    let heartbeat = args.get::<u64>("heartbeat").unwrap_or(60);
    let pool_threads = args.get::<usize>("pool-threads").unwrap_or(2);
    let per_ip = args.get::<usize>("max-conns-per-ip").unwrap_or(0);

    let mut frames = FrameService::new(router(Shared::default()))
        .max_frame(max_frame)
        .pool(WorkerPool::new(pool_threads, 1024));
    if heartbeat > 0 {
        frames = frames
            .heartbeat_timeout(Duration::from_secs(heartbeat))
            .ping_interval(Duration::from_secs(heartbeat / 2).max(Duration::from_secs(1)));
    }
    let f = frames.clone();
    let mut server = Server::new().bind(args.addr())?.loops(args.loops);
    if per_ip > 0 {
        server = server.max_connections_per_ip(per_ip);
    }
    let server = server.serve(move || f.protocol())?;
    eprintln!(
        "chat: listening on {} with {} loop(s), max frame {max_frame} B",
        server.local_addr(),
        server.loops()
    );
    server.join();
    eprintln!("chat: stopped; {:?}", frames.stats());
    Ok(())
}
