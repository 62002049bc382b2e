//! `herd-probe [HOST:PORT] [PATH]`: the container image's health check as its own binary
//! (the image itself runs the same code through `herd` called as `herd-probe`); see
//! `herd_server::probe`.

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    herd_server::probe::run(&args)
}
