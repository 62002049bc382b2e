//! The `herd` binary: the nginx-style server (config file, master/worker processes, signals,
//! logs, daemon). All of it lives in the `herd-server` crate; see `herd --help`.
#![forbid(unsafe_code)]

fn main() {
    herd_server::main()
}
