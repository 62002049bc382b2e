//! `herd-dist gen OUTDIR [DOCS]`: writes the man pages (`herd.8`, `herd.toml.5`) and the shell
//! completions (`herd.bash`, `_herd` for zsh) that packaging/build.sh puts in the package.
//! `DOCS` is the directory of the Markdown manual (default: `docs` of this repository).

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (out, docs) = match args.as_slice() {
        [cmd, out] if cmd == "gen" => (
            PathBuf::from(out),
            PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs")),
        ),
        [cmd, out, docs] if cmd == "gen" => (PathBuf::from(out), PathBuf::from(docs)),
        _ => {
            eprintln!("usage: herd-dist gen OUTDIR [DOCS]");
            return ExitCode::from(2);
        }
    };
    match herd_dist::generate(&docs, &out) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("herd-dist: {e}");
            ExitCode::FAILURE
        }
    }
}
