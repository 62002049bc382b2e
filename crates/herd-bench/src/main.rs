//! The `herd-bench` command: parse the command line, run one mode, print its report.
//!
//! ```text
//! herd-bench echo --addr 127.0.0.1:9000 --connections 100 --size 64 --depth 1 \
//!                 --duration 10s --warmup 1s --threads 1 [--json]
//! herd-bench frame --addr 127.0.0.1:9200 --msg-id 1 [echo's options]
//! herd-bench ws --addr 127.0.0.1:9002 [--path /] [--deflate shared|takeover]
//!                 [--payload pattern|json] [echo's options]
//! herd-bench hold --addr 127.0.0.1:9000 --connections 10000 --size 64 --hold 10s [--json]
//!                 [--ws [--path /] [--deflate shared|takeover] [--payload json]
//!                  [--pause 1s] [--ws-messages 0|1]]
//! ```
//!
//! Exit status: 0 when the run went through with no error, 1 when it ran but counted errors
//! (echo mismatches, connections closed by the server), 2 when it could not run (bad options,
//! connect failures). The measuring itself lives in the library (`herd_bench::echo`,
//! `herd_bench::hold`); this file only translates between it and the terminal, and it must
//! not measure anything itself.
#![forbid(unsafe_code)]

use std::net::{SocketAddr, ToSocketAddrs};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Args, Parser, Subcommand};
use herd_bench::echo::{self, EchoOpts};
use herd_bench::frame::{self, FrameOpts};
use herd_bench::hold::{self, HoldOpts};
use herd_bench::parse_duration;
use herd_bench::stats::Report;
use herd_bench::ws::{self, WsOpts};

/// Load generator for servers on loopback.
#[derive(Parser)]
#[command(name = "herd-bench", version, about)]
struct Cli {
    #[command(subcommand)]
    mode: Mode,
}

#[derive(Subcommand)]
enum Mode {
    /// Keep `depth` messages in flight per connection and verify every echoed byte.
    Echo(EchoArgs),
    /// Open connections, echo one message on each, hold them idle, then exit.
    Hold(HoldArgs),
    /// Frame-protocol RPCs (protobuf body of `size` payload bytes), `depth` in flight per
    /// connection, every reply checked.
    Frame(FrameArgs),
    /// WebSocket: upgrade every connection, then `depth` masked binary messages in flight per
    /// connection, every echoed byte checked.
    Ws(WsArgs),
}

#[derive(Args)]
struct WsArgs {
    #[command(flatten)]
    common: EchoArgs,
    /// Request path of the upgrade.
    #[arg(long, default_value = "/")]
    path: String,
    /// Offer permessage-deflate and send every message compressed (RSV1): `shared` offers
    /// both no_context_takeover parameters, `takeover` offers plain context takeover. The
    /// server must accept, or the run fails.
    #[arg(long, value_parser = ws::Deflate::parse)]
    deflate: Option<ws::Deflate>,
    /// Message contents: `pattern` (binary frames of the byte stream, the default) or `json`
    /// (text frames of `size` bytes of JSON-like text, compressible about 3-5x).
    #[arg(long, default_value = "pattern", value_parser = ws::Payload::parse)]
    payload: ws::Payload,
}

#[derive(Args)]
struct FrameArgs {
    #[command(flatten)]
    common: EchoArgs,
    /// Message id of the requests (herd's frame_rpc example: 1 inline, 2 worker pool).
    #[arg(long, default_value_t = 1)]
    msg_id: u16,
}

#[derive(Args)]
struct EchoArgs {
    /// Server address (host:port).
    #[arg(long, value_parser = parse_addr)]
    addr: SocketAddr,
    /// Connections to open before measuring.
    #[arg(long, default_value_t = 100)]
    connections: usize,
    /// Payload bytes per message.
    #[arg(long, default_value_t = 64)]
    size: usize,
    /// Messages in flight per connection (1 = ping-pong).
    #[arg(long, default_value_t = 1)]
    depth: usize,
    /// Measured time (10s, 500ms, 1m).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    duration: Duration,
    /// Unmeasured time before it.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    warmup: Duration,
    /// Client threads, one event loop each.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Connect attempts per connection (refused connects are retried with back-off).
    #[arg(long, default_value_t = 20)]
    connect_attempts: u32,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct HoldArgs {
    /// Server address (host:port).
    #[arg(long, value_parser = parse_addr)]
    addr: SocketAddr,
    /// Connections to open and hold.
    #[arg(long, default_value_t = 10_000)]
    connections: usize,
    /// Bytes of the one message echoed on each connection.
    #[arg(long, default_value_t = 64)]
    size: usize,
    /// How long to hold the connections idle after the echoes.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    hold: Duration,
    /// Connect attempts per connection.
    #[arg(long, default_value_t = 20)]
    connect_attempts: u32,
    /// Print one JSON object as the final line instead of text.
    #[arg(long)]
    json: bool,
    /// WebSocket: upgrade each connection (request path `--path`) instead of echoing raw
    /// bytes; prints `upgraded connections=N` once all are upgraded, waits `--pause`, then
    /// echoes one message on each (unless `--ws-messages 0`) before `ready`.
    #[arg(long)]
    ws: bool,
    /// Request path of the upgrades (with --ws).
    #[arg(long, default_value = "/")]
    path: String,
    /// With --ws: offer permessage-deflate (`shared` or `takeover`, as for `ws`).
    #[arg(long, value_parser = ws::Deflate::parse)]
    deflate: Option<ws::Deflate>,
    /// With --ws: message contents (`pattern` or `json`).
    #[arg(long, default_value = "pattern", value_parser = ws::Payload::parse)]
    payload: ws::Payload,
    /// With --ws: how long to wait between `upgraded` and the echoes (for sampling).
    #[arg(long, default_value = "0s", value_parser = parse_duration)]
    pause: Duration,
    /// With --ws: messages echoed per connection after the pause (0 or 1).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(0..=1))]
    ws_messages: u8,
}

fn parse_addr(s: &str) -> Result<SocketAddr, String> {
    s.to_socket_addrs()
        .map_err(|e| format!("`{s}`: {e}"))?
        .next()
        .ok_or_else(|| format!("`{s}` resolves to no address"))
}

fn main() -> ExitCode {
    match Cli::parse().mode {
        Mode::Echo(a) => run_echo(a),
        Mode::Hold(a) => run_hold(a),
        Mode::Frame(a) => run_frame(a),
        Mode::Ws(a) => run_ws(a),
    }
}

fn run_ws(a: WsArgs) -> ExitCode {
    let c = a.common;
    let opts = WsOpts {
        addr: c.addr,
        path: a.path,
        connections: c.connections,
        size: c.size,
        depth: c.depth,
        duration: c.duration,
        warmup: c.warmup,
        threads: c.threads,
        connect_attempts: c.connect_attempts,
        deflate: a.deflate,
        payload: a.payload,
    };
    finish(ws::run(&opts), c.json)
}

/// Prints a load run's report (or why it could not run) and picks the exit status.
fn finish(result: Result<Report, herd_bench::Error>, json: bool) -> ExitCode {
    match result {
        Ok(report) => {
            if json {
                println!("{}", report.to_json());
            } else {
                print!("{}", report.to_table());
            }
            if report.errors() > 0 {
                eprintln!("herd-bench: {} error(s) during the run", report.errors());
                return ExitCode::from(1);
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("herd-bench: {e}");
            ExitCode::from(2)
        }
    }
}

fn run_echo(a: EchoArgs) -> ExitCode {
    let opts = EchoOpts {
        addr: a.addr,
        connections: a.connections,
        size: a.size,
        depth: a.depth,
        duration: a.duration,
        warmup: a.warmup,
        threads: a.threads,
        connect_attempts: a.connect_attempts,
    };
    finish(echo::run(&opts), a.json)
}

fn run_frame(a: FrameArgs) -> ExitCode {
    let c = a.common;
    let opts = FrameOpts {
        addr: c.addr,
        connections: c.connections,
        size: c.size,
        depth: c.depth,
        msg_id: a.msg_id,
        duration: c.duration,
        warmup: c.warmup,
        threads: c.threads,
        connect_attempts: c.connect_attempts,
    };
    finish(frame::run(&opts), c.json)
}

/// `hold --ws`: upgrade all, `upgraded`, pause, one echo each, `ready`, hold, report.
fn run_ws_hold(a: HoldArgs) -> ExitCode {
    let opts = ws::WsHoldOpts {
        addr: a.addr,
        path: a.path.clone(),
        connections: a.connections,
        size: a.size,
        deflate: a.deflate,
        payload: a.payload,
        connect_attempts: a.connect_attempts,
    };
    let started = Instant::now();
    let mut held = match ws::hold_open(&opts) {
        Ok(h) => h,
        Err(e) => {
            eprintln!("herd-bench: {e}");
            return ExitCode::from(2);
        }
    };
    let deflate = held.first().and_then(|(_, a)| *a);
    // Scripts wait for this line, then sample the server.
    println!(
        "upgraded connections={} open_s={:.3} deflate={}",
        held.len(),
        started.elapsed().as_secs_f64(),
        deflate.map_or("none".to_string(), |d| format!("{d:?}"))
    );
    std::thread::sleep(a.pause);
    if a.ws_messages > 0 {
        if let Err(e) = ws::hold_echo(&opts, &mut held) {
            eprintln!("herd-bench: {e}");
            return ExitCode::from(2);
        }
    }
    let streams: Vec<_> = held.into_iter().map(|(s, _)| s).collect();
    hold_report(&a, &streams, started.elapsed().as_secs_f64())
}

fn run_hold(a: HoldArgs) -> ExitCode {
    if a.ws {
        return run_ws_hold(a);
    }
    if a.deflate.is_some() || a.payload != ws::Payload::Pattern || a.ws_messages != 1 {
        eprintln!("herd-bench: --deflate, --payload and --ws-messages need --ws");
        return ExitCode::from(2);
    }
    let opts = HoldOpts {
        addr: a.addr,
        connections: a.connections,
        size: a.size,
        connect_attempts: a.connect_attempts,
    };
    let started = Instant::now();
    let held = match hold::open(&opts) {
        Ok(h) => h,
        Err(e) => {
            eprintln!("herd-bench: {e}");
            return ExitCode::from(2);
        }
    };
    hold_report(&a, &held, started.elapsed().as_secs_f64())
}

/// Prints `ready`, holds the connections, counts the ones the server closed meanwhile.
fn hold_report(a: &HoldArgs, held: &[std::net::TcpStream], open_secs: f64) -> ExitCode {
    // Scripts wait for this line, then sample the server.
    println!("ready connections={} open_s={open_secs:.3}", held.len());
    std::thread::sleep(a.hold);
    let closed = hold::check_still_open(held);
    if a.json {
        println!(
            "{{\"mode\":\"hold\",\"connections\":{},\"size\":{},\"open_s\":{open_secs:.3},\
             \"hold_s\":{:.3},\"closed_by_server\":{closed},\"errors\":{closed}}}",
            held.len(),
            a.size,
            a.hold.as_secs_f64()
        );
    } else {
        println!(
            "hold: {} connections opened and echoed in {open_secs:.3} s, held {:.3} s, \
             {closed} closed by the server meanwhile",
            held.len(),
            a.hold.as_secs_f64()
        );
    }
    if closed > 0 {
        return ExitCode::from(1);
    }
    ExitCode::SUCCESS
}
