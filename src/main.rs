//! The `herd` binary: the nginx-style server (config file, master/worker processes, signals,
//! logs, daemon). All of it lives in the `herd-server` crate; see `herd --help`. Called as
//! `herd-probe` (a link to this binary, as in the container image) it is the health probe
//! instead (`herd_server::probe`).
#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    let mut args = std::env::args();
    let called = args.next().unwrap_or_default();
    if std::path::Path::new(&called).file_name() == Some("herd-probe".as_ref()) {
        let rest: Vec<String> = args.collect();
        return herd_server::probe::run(&rest);
    }
    herd_server::main()
}
