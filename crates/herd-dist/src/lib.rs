//! Packaging helpers for herd, kept out of the server: the man pages and shell completions
//! that the Debian package installs, generated from the sources that already describe herd.
//!
//! - `herd(8)`: the clap definition of the command line (`herd_server::cli::Cli`, through
//!   clap_mangen) followed by `docs/signals.md` (processes, signals, reload, upgrade).
//! - `herd.toml(5)`: `docs/config.md`, the configuration reference, converted from Markdown.
//! - bash and zsh completions: the same clap definition, through clap_complete.
//!
//! The Markdown converter ([`markdown_to_roff`]) handles the subset the docs use — headings,
//! paragraphs, fenced code, pipe tables, bullet and numbered lists, inline code, emphasis and
//! links — and nothing else; a doc that grows another construct shows up as literal text, and
//! the packaging test renders both pages with `man --warnings` to catch broken output.
//!
//! The `herd-dist` binary writes the files (`herd-dist gen OUTDIR`); `herd-probe` is the
//! container image's health check.

use std::fmt::Write as _;
use std::io;
use std::path::Path;

use clap::CommandFactory;
use clap_complete::Shell;

/// What each Markdown heading level becomes in a man page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Headings {
    /// `#` is dropped (the page's NAME line says it), `##` is `.SH`, `###` is `.SS`.
    DropTitle,
    /// `#` is `.SH`, `##` and deeper are `.SS`: a whole document as one section of a page.
    Nested,
}

/// Escapes text for a roff text line: backslashes, and `-` as a real minus where `code` asks.
fn escape(text: &str, minus: bool) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\e"),
            '-' if minus => out.push_str("\\-"),
            // The tree drawings of the docs, in characters every terminal's groff device has.
            '├' | '└' => out.push('+'),
            '─' => out.push('-'),
            _ => out.push(c),
        }
    }
    out
}

/// A roff text line must not start with `.` or `'` (a request) once filled.
fn protect(line: &str) -> String {
    if line.starts_with('.') || line.starts_with('\'') {
        format!("\\&{line}")
    } else {
        line.to_string()
    }
}

/// Where a link to one of the docs points in an installed system.
fn link_target(target: &str) -> Option<String> {
    let file = target.split('#').next().unwrap_or(target);
    let name = file.rsplit('/').next().unwrap_or(file);
    match name {
        "config.md" => Some("herd.toml(5)".into()),
        "signals.md" => Some("herd(8)".into()),
        n if n.ends_with(".md") => Some(format!("/usr/share/doc/herd/{n}")),
        _ if target.starts_with("http://") || target.starts_with("https://") => {
            Some(target.to_string())
        }
        _ => None,
    }
}

/// Inline Markdown (code spans, `**bold**`, `*italic*`, links) to roff escapes.
pub fn inline(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(pos) = rest.find(['`', '*', '[']) {
        out.push_str(&escape(&rest[..pos], false));
        let tail = &rest[pos..];
        if let Some(code) = tail.strip_prefix('`') {
            if let Some(end) = code.find('`') {
                let _ = write!(out, "\\fB{}\\fR", escape(&code[..end], true));
                rest = &code[end + 1..];
                continue;
            }
        } else if let Some(b) = tail.strip_prefix("**") {
            if let Some(end) = b.find("**") {
                let _ = write!(out, "\\fB{}\\fR", inline(&b[..end]));
                rest = &b[end + 2..];
                continue;
            }
        } else if let Some(i) = tail.strip_prefix('*') {
            if let Some(end) = i.find('*').filter(|&e| e > 0 && !i.starts_with(' ')) {
                let _ = write!(out, "\\fI{}\\fR", inline(&i[..end]));
                rest = &i[end + 1..];
                continue;
            }
        } else if let Some(l) = tail.strip_prefix('[') {
            if let Some((label, after)) = l.split_once("](") {
                if let Some((target, after)) = after.split_once(')') {
                    out.push_str(&inline(label));
                    if let Some(t) = link_target(target) {
                        if t.ends_with(label) {
                            out.truncate(out.len() - inline(label).len());
                            out.push_str(&escape(&t, false));
                        } else {
                            let _ = write!(out, " ({})", escape(&t, false));
                        }
                    }
                    rest = after;
                    continue;
                }
            }
        }
        // Not markup after all: the character itself.
        out.push_str(&escape(&tail[..1], false));
        rest = &tail[1..];
    }
    out.push_str(&escape(rest, false));
    out
}

fn table_cells(line: &str) -> Vec<String> {
    let t = line.trim().trim_start_matches('|').trim_end_matches('|');
    t.split('|').map(|c| c.trim().to_string()).collect()
}

fn is_table_rule(line: &str) -> bool {
    let t = line.trim();
    t.starts_with('|') && t.chars().all(|c| matches!(c, '|' | '-' | ':' | ' '))
}

/// A pipe table as tagged paragraphs: the first cell is the tag; the middle cells follow as
/// `Header: value.`; the last cell is the text. (Man pages read better so than as tbl tables
/// whose last column is a paragraph.)
fn render_table(rows: &[String], out: &mut String) {
    let header = table_cells(&rows[0]);
    for row in rows.iter().skip(2) {
        let cells = table_cells(row);
        let _ = writeln!(out, ".TP");
        let _ = writeln!(out, "{}", protect(&inline(&cells[0])));
        let last = cells.len().saturating_sub(1);
        let mut body = Vec::new();
        for (i, c) in cells.iter().enumerate().take(last).skip(1) {
            if c.is_empty() || c == "—" {
                continue;
            }
            let h = header.get(i).map_or("", |h| h.as_str());
            let mut h = inline(h);
            if let Some(first) = h.get(..1) {
                h = first.to_uppercase() + &h[1..];
            }
            body.push(format!("{h}: {}.", inline(c)));
        }
        if last > 0 {
            body.push(inline(&cells[last]));
        }
        let _ = writeln!(out, "{}", protect(&body.join(" ")));
    }
}

/// Converts the Markdown subset the docs use into man(7) requests.
pub fn markdown_to_roff(md: &str, headings: Headings) -> String {
    let mut out = String::new();
    let lines: Vec<&str> = md.lines().collect();
    let mut i = 0;
    // Inside a list item, continuation lines belong to the item until a blank line.
    while i < lines.len() {
        let line = lines[i];
        let trimmed = line.trim_start();
        if trimmed.is_empty() {
            i += 1;
            continue;
        }
        if let Some(fence) = trimmed.strip_prefix("```") {
            let _ = fence;
            i += 1;
            let _ = writeln!(out, ".PP\n.RS 4\n.nf");
            while i < lines.len() && !lines[i].trim_start().starts_with("```") {
                let _ = writeln!(out, "{}", protect(&escape(lines[i], true)));
                i += 1;
            }
            let _ = writeln!(out, ".fi\n.RE");
            i += 1;
            continue;
        }
        if trimmed.starts_with('#') {
            let level = trimmed.chars().take_while(|&c| c == '#').count();
            let title = inline(trimmed[level..].trim());
            let request = match (headings, level) {
                (Headings::DropTitle, 1) => None,
                (Headings::DropTitle, 2) | (Headings::Nested, 1) => Some(".SH"),
                _ => Some(".SS"),
            };
            if let Some(r) = request {
                // Man sections are upper case, except a heading that names a TOML key.
                let title = if r == ".SH" && !trimmed.contains('`') {
                    title.to_uppercase()
                } else {
                    title
                };
                let _ = writeln!(out, "{r} \"{}\"", title.replace('"', "\\(dq"));
            }
            i += 1;
            continue;
        }
        if trimmed.starts_with('|') && i + 1 < lines.len() && is_table_rule(lines[i + 1]) {
            let start = i;
            while i < lines.len() && lines[i].trim_start().starts_with('|') {
                i += 1;
            }
            let rows: Vec<String> = lines[start..i].iter().map(|s| s.to_string()).collect();
            render_table(&rows, &mut out);
            continue;
        }
        let bullet = trimmed.strip_prefix("- ");
        let number = trimmed
            .split_once(". ")
            .filter(|(n, _)| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()));
        if bullet.is_some() || number.is_some() {
            let (mark, first) = match (bullet, number) {
                (Some(b), _) => ("\\(bu 2".to_string(), b),
                (None, Some((n, rest))) => (format!("{n}. 4"), rest),
                _ => unreachable!(),
            };
            let _ = writeln!(out, ".IP {mark}");
            let _ = writeln!(out, "{}", protect(&inline(first)));
            i += 1;
            while i < lines.len() {
                let l = lines[i];
                let t = l.trim_start();
                let starts_item = t.starts_with("- ")
                    || t.split_once(". ").is_some_and(|(n, _)| {
                        !n.is_empty() && n.chars().all(|c| c.is_ascii_digit())
                    });
                if t.is_empty() || starts_item || t.starts_with("```") || t.starts_with('#') {
                    break;
                }
                let _ = writeln!(out, "{}", protect(&inline(t)));
                i += 1;
            }
            continue;
        }
        // A paragraph: every line up to a blank line or another block.
        let _ = writeln!(out, ".PP");
        while i < lines.len() {
            let t = lines[i].trim_start();
            if t.is_empty() || t.starts_with("```") || t.starts_with('#') || t.starts_with('|') {
                break;
            }
            let _ = writeln!(out, "{}", protect(&inline(t)));
            i += 1;
        }
    }
    out
}

/// The text of a document before its first `##` heading (without the `#` title), and the rest.
fn split_intro(md: &str) -> (&str, &str) {
    let body = match md.find('\n') {
        Some(n) if md.starts_with("# ") => &md[n + 1..],
        _ => md,
    };
    match body.find("\n## ") {
        Some(n) => (&body[..n], &body[n + 1..]),
        None => (body, ""),
    }
}

fn title_line(name: &str, section: &str, version: &str) -> String {
    format!(".TH {name} {section} \"\" \"herd {version}\" \"herd manual\"\n")
}

/// `herd(8)`: the clap definition of the command line, then `docs/signals.md`.
pub fn herd_8(signals_md: &str) -> io::Result<String> {
    let cmd = herd_server::cli::Cli::command();
    let version = cmd.get_version().unwrap_or("").to_string();
    let man = clap_mangen::Man::new(cmd)
        .section("8")
        .source(format!("herd {version}"))
        .manual("herd manual");
    let mut buf = Vec::new();
    man.render_title(&mut buf)?;
    man.render_name_section(&mut buf)?;
    man.render_synopsis_section(&mut buf)?;
    man.render_options_section(&mut buf)?;
    let mut out = String::from_utf8(buf).map_err(io::Error::other)?;
    out.push_str(&markdown_to_roff(signals_md, Headings::Nested));
    out.push_str(&markdown_to_roff(
        "# Files\n\n\
         | file | what |\n|---|---|\n\
         | `/etc/herd/herd.toml` | The configuration of the packaged service (see herd.toml(5)). |\n\
         | `/lib/systemd/system/herd.service` | The systemd unit: `systemctl reload herd` sends HUP, `systemctl stop herd` a graceful QUIT. |\n\
         | `/etc/logrotate.d/herd` | Rotates `/var/log/herd/*.log` and reopens them with `herd -s reopen`. |\n\
         | `/run/herd.pid` | The master's pid file in the packaged configuration (`pid_file`). |\n\
         | `/var/log/herd/` | The event log and the access log of the packaged configuration. |\n\
         | `/usr/share/doc/herd/` | The manual in Markdown: daemon, logging, systemd, packaging. |\n",
        Headings::Nested,
    ));
    out.push_str(".SH \"SEE ALSO\"\n.BR herd.toml (5),\n.BR logrotate (8),\n.BR systemctl (1)\n");
    Ok(out)
}

/// `herd.toml(5)`: `docs/config.md`.
pub fn herd_toml_5(config_md: &str, version: &str) -> String {
    let (intro, rest) = split_intro(config_md);
    let mut out = title_line("herd.toml", "5", version);
    out.push_str(".SH NAME\nherd.toml \\- configuration file of the herd server\n");
    out.push_str(".SH SYNOPSIS\n.B /etc/herd/herd.toml\n");
    out.push_str(".SH DESCRIPTION\n");
    out.push_str(&markdown_to_roff(intro, Headings::DropTitle));
    out.push_str(&markdown_to_roff(rest, Headings::DropTitle));
    out.push_str(".SH \"SEE ALSO\"\n.BR herd (8)\n");
    out
}

/// The completion script of `shell` for the `herd` command line, without the hidden flags
/// (`--worker`), which clap_complete would offer.
pub fn completion(shell: Shell) -> Vec<u8> {
    let mut cmd = herd_server::cli::Cli::command();
    let mut buf = Vec::new();
    clap_complete::generate(shell, &mut cmd, "herd", &mut buf);
    let hidden: Vec<String> = cmd
        .get_arguments()
        .filter(|a| a.is_hide_set())
        .filter_map(|a| a.get_long().map(|l| format!("--{l}")))
        .collect();
    let text = String::from_utf8_lossy(&buf);
    let mut out = String::new();
    for line in text.split_inclusive('\n') {
        // zsh: one `'--flag[help]' \` line per flag; bash: the flag in the `opts="..."` list.
        if hidden
            .iter()
            .any(|h| line.trim_start().starts_with(&format!("'{h}[")))
        {
            continue;
        }
        let mut line = line.to_string();
        for h in &hidden {
            line = line.replace(&format!(" {h} "), " ");
        }
        out.push_str(&line);
    }
    out.into_bytes()
}

/// Writes `herd.8`, `herd.toml.5`, `herd.bash` and `_herd` (zsh) into `out`, reading the docs
/// from `docs`.
pub fn generate(docs: &Path, out: &Path) -> io::Result<()> {
    let read = |name: &str| {
        std::fs::read_to_string(docs.join(name))
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", docs.join(name).display())))
    };
    std::fs::create_dir_all(out)?;
    let version = herd_server::cli::Cli::command()
        .get_version()
        .unwrap_or("")
        .to_string();
    std::fs::write(out.join("herd.8"), herd_8(&read("signals.md")?)?)?;
    std::fs::write(
        out.join("herd.toml.5"),
        herd_toml_5(&read("config.md")?, &version),
    )?;
    std::fs::write(out.join("herd.bash"), completion(Shell::Bash))?;
    std::fs::write(out.join("_herd"), completion(Shell::Zsh))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inline_markup_becomes_font_escapes() {
        assert_eq!(inline("a `b-c` d"), "a \\fBb\\-c\\fR d");
        assert_eq!(inline("**x** and *y*"), "\\fBx\\fR and \\fIy\\fR");
        assert_eq!(
            inline("see [logging](logging.md)"),
            "see logging (/usr/share/doc/herd/logging.md)"
        );
        assert_eq!(
            inline("[logging.md](logging.md)"),
            "/usr/share/doc/herd/logging.md"
        );
        assert_eq!(inline("[config](docs/config.md)"), "config (herd.toml(5))");
        assert_eq!(inline("a\\b"), "a\\eb");
        // Lone markup characters stay as they are.
        assert_eq!(inline("2 * 3 [x"), "2 * 3 [x");
    }

    #[test]
    fn blocks_become_requests() {
        let md = "# T\n\nPara one\n.dot line\n\n## Keys\n\n| key | default | meaning |\n|---|---|---|\n| `a` | `1` | The a. |\n\n```toml\nx = \"-1\"\n```\n\n- one\n  more\n- two\n\n1. first\n";
        let r = markdown_to_roff(md, Headings::DropTitle);
        assert!(!r.contains("\"T\""), "{r}");
        assert!(r.contains(".PP\nPara one\n\\&.dot line\n"), "{r}");
        assert!(r.contains(".SH \"KEYS\"\n"), "{r}");
        assert!(
            r.contains(".TP\n\\fBa\\fR\nDefault: \\fB1\\fR. The a.\n"),
            "{r}"
        );
        assert!(r.contains(".nf\nx = \"\\-1\"\n.fi\n"), "{r}");
        assert!(
            r.contains(".IP \\(bu 2\none\nmore\n.IP \\(bu 2\ntwo\n"),
            "{r}"
        );
        assert!(r.contains(".IP 1. 4\nfirst\n"), "{r}");
        let nested = markdown_to_roff("# Signals\n\n## Reload\n", Headings::Nested);
        assert_eq!(nested, ".SH \"SIGNALS\"\n.SS \"Reload\"\n");
    }

    #[test]
    fn completions_offer_the_options_but_not_the_hidden_worker_flag() {
        for shell in [Shell::Bash, Shell::Zsh] {
            let c = String::from_utf8(completion(shell)).unwrap();
            assert!(c.contains("--config") && c.contains("--signal"), "{shell}");
            assert!(c.contains("reload") && c.contains("reopen"), "{shell}");
            assert!(!c.contains("--worker"), "{shell}: {c}");
        }
    }

    #[test]
    fn every_configuration_key_of_the_reference_is_in_the_page() {
        let md = include_str!("../../../docs/config.md");
        let page = herd_toml_5(md, "0");
        for line in md.lines().filter(|l| l.starts_with("| `")) {
            let key = table_cells(line)[0].trim_matches('`').to_string();
            assert!(
                page.contains(&format!(".TP\n\\fB{}\\fR", escape(&key, true))),
                "{key}"
            );
        }
    }

    #[test]
    fn the_herd_page_has_the_options_and_the_signals() {
        let page = herd_8(include_str!("../../../docs/signals.md")).unwrap();
        for want in [
            ".TH herd 8",
            "\\-\\-config",
            "\\-\\-signal",
            ".SH \"PROCESSES AND SIGNALS\"",
            ".SS \"Reload (HUP)\"",
        ] {
            assert!(page.contains(want), "{want} missing");
        }
        // The internal `--worker` flag is hidden from the page.
        assert!(!page.contains("\\fB\\-\\-worker\\fR"));
    }
}
