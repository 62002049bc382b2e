//! The herd server's virtual hosts as an operator runs them: the real `herd` binary on a temp
//! config with `[[listener.server]]` blocks, driven by curl. Covers every `server_name` rule
//! (exact, `*.suffix`, `prefix.*`, the default server, no `Host`), every location rule (`=`,
//! `^~`, longest prefix, regexes in order, `~*`), root and alias, index, try_files, return
//! with variables, error_page, add_header, expires, auth_basic, traversal attempts, a reload
//! (HUP) under keep-alive load, a reload with a bad regex that keeps the old configuration,
//! and per-server TLS certificates chosen by SNI (checked with `openssl s_client`).

mod server_support;

use std::path::Path;
use std::process::{Command, Stdio};

use herd_testkit::certs::{Leaf, TestCa};
use server_support::{herd_bin, Herd, HttpLoad, Signal, TempDir};

/// A response as curl saw it.
#[derive(Debug)]
struct Got {
    status: u16,
    head: String,
    body: String,
}

impl Got {
    /// The value of header `name` (lowercase), if present.
    fn header(&self, name: &str) -> Option<String> {
        self.head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            (k.trim().eq_ignore_ascii_case(name)).then(|| v.trim().to_string())
        })
    }
}

/// `curl -si --path-as-is` to `http://127.0.0.1:port{path}` with extra arguments.
fn curl(port: u16, path: &str, args: &[&str]) -> Got {
    let out = Command::new("curl")
        .args(["-s", "-i", "--path-as-is", "--max-time", "10"])
        .args(args)
        .arg(format!("http://127.0.0.1:{port}{path}"))
        .stdin(Stdio::null())
        .output()
        .expect("curl runs");
    assert!(out.status.success(), "curl {path} {args:?}: {out:?}");
    let text = String::from_utf8_lossy(&out.stdout).replace("\r\n", "\n");
    let (head, body) = text.split_once("\n\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    Got {
        status,
        head: head.to_string(),
        body: body.to_string(),
    }
}

/// `GET path` with `Host: host`.
fn get(port: u16, host: &str, path: &str) -> Got {
    curl(port, path, &["-H", &format!("Host: {host}")])
}

fn write(dir: &Path, rel: &str, text: &str) {
    let p = dir.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

/// The site tree: one directory per server, and a secret next to them (outside every root).
fn make_sites(d: &Path) {
    write(d, "secret.txt", "TOP SECRET\n");
    write(d, "a/index.html", "site a\n");
    write(d, "b/index.html", "site b www\n");
    write(d, "bwild/index.html", "site b wildcard\n");
    write(d, "wlead/index.html", "leading wildcard\n");
    write(d, "wtrail/index.html", "trailing wildcard\n");
    write(d, "def/index.html", "default one\n");
    write(d, "def2/index.html", "default two\n");
    write(d, "first/index.html", "first server\n");
    write(d, "locs/index.html", "locs root\n");
    write(d, "locs/home.htm", "locs home\n");
    write(d, "locs/plain.txt", "plain\n");
    write(d, "locs/sub/index.html", "sub index\n");
    write(d, "locs/docs/index.htm", "docs htm index\n");
    write(d, "locs/errors/404.html", "custom not found\n");
    write(d, "locs/spa/index.html", "spa shell\n");
    write(d, "locs/spa/real.txt", "spa real file\n");
    write(d, "locs/private/data.txt", "private data\n");
    write(d, "locs/hdr/x.txt", "with headers\n");
    write(d, "aliased/f.txt", "from the alias dir\n");
    write(d, "other/rooted/f.txt", "from another root\n");
    std::fs::write(d.join("users"), "alice:{PLAIN}wonder\n").unwrap();
    std::os::unix::fs::symlink(d.join("secret.txt"), d.join("locs/escape.txt")).unwrap();
}

/// The servers: selection by name, then one server full of locations.
fn servers(d: &Path, default_dir: &str, extra: &str) -> String {
    let p = |s: &str| format!("{:?}", d.join(s));
    format!(
        r#"
[[listener.server]]
server_name = ["first.test"]
root = {first}

[[listener.server]]
server_name = ["a.test", "alias-of-a.test"]
root = {a}

[[listener.server]]
server_name = ["www.b.test"]
root = {b}

[[listener.server]]
server_name = ["*.b.test"]
root = {bwild}

[[listener.server]]
server_name = ["*.w.test"]
root = {wlead}

[[listener.server]]
server_name = ["www.w.*", "www.t.*"]
root = {wtrail}

[[listener.server]]
server_name = ["herd"]
default = true
root = {def}

{extra}

[[listener.server]]
server_name = ["loc.test"]
root = {locs}
index = ["index.html", "index.htm"]
error_page = {{ 404 = "/errors/404.html" }}

[[listener.server.location]]
path = "= /exact"
return = {{ status = 200, url = "exact match" }}

[[listener.server.location]]
path = "/images/"
return = {{ status = 200, url = "prefix images" }}

[[listener.server.location]]
path = "/images/deeper/"
return = {{ status = 200, url = "longer prefix" }}

[[listener.server.location]]
path = "^~ /static/"
return = {{ status = 200, url = "no-regex prefix" }}

[[listener.server.location]]
path = "~* \\.png$"
return = {{ status = 200, url = "png regex" }}

[[listener.server.location]]
path = "~ ^/images/big"
return = {{ status = 200, url = "big regex" }}

[[listener.server.location]]
path = "~ ^/order/"
return = {{ status = 200, url = "first regex" }}

[[listener.server.location]]
path = "~ ^/order/x"
return = {{ status = 200, url = "second regex" }}

[[listener.server.location]]
path = "/alias/"
alias = {aliased}

[[listener.server.location]]
path = "/rooted/"
root = {other}

[[listener.server.location]]
path = "/spa/"
try_files = ["$uri", "$uri/", "/spa/index.html"]

[[listener.server.location]]
path = "/tf/"
try_files = ["$uri", "=410"]

[[listener.server.location]]
path = "/open/"
try_files = ["$uri", "/private/data.txt"]

[[listener.server.location]]
path = "/go/"
return = {{ status = 301, url = "$scheme://$host$request_uri" }}

[[listener.server.location]]
path = "/echo/"
return = {{ status = 200, url = "uri=$uri host=$host" }}

[[listener.server.location]]
path = "/hdr/"
add_header = {{ X-Herd-Test = "yes" }}
expires = "1h"

[[listener.server.location]]
path = "/private/"
auth_basic = "Herd Test"
auth_basic_user_file = {users}
"#,
        first = p("first"),
        a = p("a"),
        b = p("b"),
        bwild = p("bwild"),
        wlead = p("wlead"),
        wtrail = p("wtrail"),
        def = p(default_dir),
        locs = p("locs"),
        aliased = p("aliased"),
        other = p("other"),
        users = p("users"),
    )
}

/// The echo listener of the shared helpers turned into an HTTP listener with `servers`.
fn http_listener(text: &mut String, servers: &str) {
    *text = text.replace(
        "protocol = \"echo\"\n",
        &format!("protocol = \"http\"\n{servers}"),
    );
}

fn start(tag: &str, workers: usize) -> (Herd, TempDir) {
    let sites = TempDir::new(&format!("{tag}-sites"));
    make_sites(&sites.0);
    let s = servers(&sites.0, "def", "");
    let h = Herd::launch(TempDir::new(tag), workers, "", |t| http_listener(t, &s));
    let master = h.pid();
    h.wait_ready_workers(master, workers);
    (h, sites)
}

#[test]
fn servers_are_picked_by_host_in_nginx_order() {
    let (h, _sites) = start("vh-pick", 1);
    let port = h.port;
    let body = |host: &str| get(port, host, "/").body;
    assert_eq!(body("a.test"), "site a\n");
    assert_eq!(body("alias-of-a.test"), "site a\n", "a second name");
    assert_eq!(body("A.TEST:8080"), "site a\n", "case and port ignored");
    assert_eq!(body("a.test."), "site a\n", "a trailing dot ignored");
    assert_eq!(body("www.b.test"), "site b www\n", "exact beats *.b.test");
    assert_eq!(body("x.b.test"), "site b wildcard\n");
    assert_eq!(body("x.y.b.test"), "site b wildcard\n", "any depth");
    assert_eq!(body("b.test"), "default one\n", "*.b.test needs a label");
    assert_eq!(
        body("www.w.test"),
        "leading wildcard\n",
        "*.w.test beats www.w.*"
    );
    assert_eq!(body("www.w.org"), "trailing wildcard\n");
    assert_eq!(body("www.t.example.net"), "trailing wildcard\n");
    assert_eq!(
        body("nobody.test"),
        "default one\n",
        "the default = true server, not the first"
    );
    assert_eq!(body("first.test"), "first server\n");
    // HTTP/1.0 without Host: the default server.
    let g = curl(port, "/", &["-0", "-H", "Host:"]);
    assert_eq!((g.status, g.body.as_str()), (200, "default one\n"), "{g:?}");
    // HTTP/1.1 without Host is a bad request (RFC 9112 3.2).
    let g = curl(port, "/", &["-H", "Host:"]);
    assert_eq!(g.status, 400, "{g:?}");
    // An absolute-form target's host wins over Host (RFC 9112 3.2.2).
    let g = curl(port, "/", &["--request-target", "http://a.test/"]);
    assert_eq!(g.body, "site a\n", "{g:?}");
}

#[test]
fn locations_follow_nginx_rules() {
    let (h, _sites) = start("vh-loc", 1);
    let port = h.port;
    let loc = |path: &str| get(port, "loc.test", path);
    let body = |path: &str| loc(path).body;
    assert_eq!(body("/exact"), "exact match");
    assert_eq!(body("/exact/more"), "custom not found\n", "= is exact only");
    assert_eq!(body("/images/a.jpg"), "prefix images");
    assert_eq!(body("/images/deeper/a.jpg"), "longer prefix");
    assert_eq!(body("/images/a.png"), "png regex", "a regex beats a prefix");
    assert_eq!(body("/images/a.PNG"), "png regex", "~* ignores case");
    assert_eq!(body("/images/big.jpg"), "big regex");
    assert_eq!(body("/static/a.png"), "no-regex prefix", "^~ skips regexes");
    assert_eq!(body("/order/x"), "first regex", "regexes in written order");
    assert_eq!(body("/ORDER/x"), "custom not found\n", "~ keeps case");

    // root / alias / index.
    assert_eq!(body("/"), "locs root\n");
    assert_eq!(body("/plain.txt"), "plain\n");
    assert_eq!(body("/sub/"), "sub index\n");
    assert_eq!(body("/docs/"), "docs htm index\n", "the second index name");
    let g = loc("/sub");
    assert_eq!(g.status, 301, "a directory without its slash: {g:?}");
    assert_eq!(body("/alias/f.txt"), "from the alias dir\n");
    assert_eq!(body("/rooted/f.txt"), "from another root\n");

    // try_files: the file, else the fallback URI; =code.
    assert_eq!(body("/spa/real.txt"), "spa real file\n");
    assert_eq!(body("/spa/no/such/page"), "spa shell\n");
    assert_eq!(loc("/tf/missing").status, 410);

    // return with variables.
    let g = loc("/go/there?x=1");
    assert_eq!(g.status, 301);
    assert_eq!(
        g.header("location").as_deref(),
        Some("http://loc.test/go/there?x=1")
    );
    assert_eq!(body("/echo/z"), "uri=/echo/z host=loc.test");

    // error_page keeps the status, serves the page.
    let g = loc("/no-such-file");
    assert_eq!((g.status, g.body.as_str()), (404, "custom not found\n"));

    // add_header and expires on success.
    let g = loc("/hdr/x.txt");
    assert_eq!(g.status, 200);
    assert_eq!(g.header("x-herd-test").as_deref(), Some("yes"));
    assert_eq!(g.header("cache-control").as_deref(), Some("max-age=3600"));
    assert!(
        g.header("expires").is_some_and(|e| e.ends_with(" GMT")),
        "{g:?}"
    );
    let g = loc("/hdr/missing");
    assert_eq!(g.status, 404);
    assert_eq!(g.header("x-herd-test"), None, "not on errors");

    // auth_basic.
    let g = loc("/private/data.txt");
    assert_eq!(g.status, 401);
    assert_eq!(
        g.header("www-authenticate").as_deref(),
        Some("Basic realm=\"Herd Test\"")
    );
    let with = |user: &str| {
        curl(
            port,
            "/private/data.txt",
            &["-H", "Host: loc.test", "-u", user],
        )
    };
    assert_eq!(with("alice:wrong").status, 401);
    let g = with("alice:wonder");
    assert_eq!((g.status, g.body.as_str()), (200, "private data\n"));
    // Spelling the path differently must not step around the password.
    // A try_files fallback into a protected location asks for the password too.
    let g = loc("/open/anything");
    assert_eq!(g.status, 401, "{g:?}");
    let g = curl(
        port,
        "/open/anything",
        &["-H", "Host: loc.test", "-u", "alice:wonder"],
    );
    assert_eq!((g.status, g.body.as_str()), (200, "private data\n"));
    // Locations see the decoded, normalised path.
    for (p, status) in [
        ("/%70rivate/data.txt", 401),
        ("//private/data.txt", 401),
        ("/./private/data.txt", 401),
        ("/x/../private/data.txt", 401),
        ("/PRIVATE/data.txt", 404),
        ("/private%2fdata.txt", 400),
    ] {
        let g = loc(p);
        assert_eq!(g.status, status, "{p}: {g:?}");
        assert!(!g.body.contains("private data"), "{p}: {g:?}");
    }
    assert_eq!(
        body("/%73pa/nothing"),
        "spa shell\n",
        "decoded before matching"
    );
    assert_eq!(body("/caf%C3%A9/"), "custom not found\n");
}

#[test]
fn traversal_never_leaves_the_root() {
    let (h, _sites) = start("vh-trav", 1);
    let port = h.port;
    for p in [
        "/../secret.txt",
        "/../../secret.txt",
        "/%2e%2e/secret.txt",
        "/%2E%2E/secret.txt",
        "/sub/..%2f..%2fsecret.txt",
        "/sub%2f..%2f..%2fsecret.txt",
        "/alias/../../secret.txt",
        "/alias/%2e%2e/%2e%2e/secret.txt",
        "/alias/..%2f..%2fsecret.txt",
        "/rooted/..%2f..%2f..%2fsecret.txt",
        "/%2e%2e%5csecret.txt",
        "/..\\secret.txt",
        "/escape.txt",
        "/spa/..%2f..%2fsecret.txt",
        "/%00/secret.txt",
    ] {
        for host in ["loc.test", "a.test"] {
            let g = get(port, host, p);
            assert!(
                !g.body.contains("TOP SECRET"),
                "{host}{p} escaped the root: {g:?}"
            );
            assert_ne!(g.status, 200, "{host}{p}: {g:?}");
        }
    }
    // The server still answers, and said why it refused.
    assert_eq!(get(port, "a.test", "/").body, "site a\n");
    let line = h.wait_log("a.test: refused request path", |_| true);
    assert!(line.msg.contains("reason=\"bad_path\""), "{line:?}");
}

#[test]
fn a_reload_changes_a_server_under_keepalive_load_and_a_bad_regex_keeps_the_old() {
    let (h, sites) = start("vh-reload", 2);
    let master = h.pid();
    assert_eq!(get(h.port, "herd", "/").body, "default one\n");
    assert_eq!(get(h.port, "new.test", "/").body, "default one\n");

    // 8 keep-alive clients (Host: herd, the default server) all through the reload.
    let load = HttpLoad::start(h.addr(), 8, "/");
    load.wait_progress(200);
    let base = std::fs::read_to_string(&h.config).unwrap();
    let newer = base
        .replace(
            &format!("root = {:?}", sites.0.join("def")),
            &format!("root = {:?}", sites.0.join("def2")),
        )
        .replace(
            "[[listener.server]]\nserver_name = [\"loc.test\"]",
            &format!(
                "[[listener.server]]\nserver_name = [\"new.test\"]\nroot = {:?}\n\n\
                 [[listener.server]]\nserver_name = [\"loc.test\"]",
                sites.0.join("a")
            ),
        );
    assert_ne!(newer, base);
    std::fs::write(&h.config, &newer).unwrap();
    h.signal(Signal::Hup);
    h.wait_log("configuration reloaded: generation 2", |l| l.pid == master);
    server_support::wait_until("the new default server answers", || {
        get(h.port, "herd", "/").body == "default two\n"
    });
    load.wait_progress(200);
    let (ok, _closes, failures) = load.finish();
    assert!(failures.is_empty(), "failed requests: {failures:?}");
    assert!(ok >= 400, "{ok}");
    assert_eq!(
        get(h.port, "new.test", "/").body,
        "site a\n",
        "a new server"
    );

    // A bad regex: refused with its reason, the running configuration stays.
    let bad = newer.replace("path = \"~ ^/order/x\"", "path = \"~ ^/order/(x\"");
    assert_ne!(bad, newer);
    std::fs::write(&h.config, &bad).unwrap();
    h.signal(Signal::Hup);
    let line = h.wait_log("reload failed", |l| l.pid == master);
    assert!(
        line.msg.contains("location[") && line.msg.contains(".path"),
        "{line:?}"
    );
    assert!(
        line.msg.contains("keeping the old configuration"),
        "{line:?}"
    );
    assert_eq!(get(h.port, "herd", "/").body, "default two\n");
    assert_eq!(get(h.port, "new.test", "/").body, "site a\n");
    assert_eq!(get(h.port, "loc.test", "/order/x").body, "first regex");
    // `herd -t` says the same.
    let o = Command::new(herd_bin())
        .args(["-t", "-c"])
        .arg(&h.config)
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains(".path"), "{err}");
}

// ---- TLS: a certificate per server block, chosen by SNI ----

/// The subject of the certificate the server presents for `sni` (`None`: no SNI), e.g.
/// `CN=a.test`.
fn subject(port: u16, sni: Option<&str>) -> String {
    let mut cmd = Command::new("openssl");
    cmd.args(["s_client", "-connect", &format!("127.0.0.1:{port}")]);
    match sni {
        Some(n) => cmd.args(["-servername", n]),
        None => cmd.arg("-noservername"),
    };
    let out = cmd
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .expect("openssl runs");
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find_map(|l| l.strip_prefix("subject="))
        .map(|s| s.replace(' ', ""))
        .unwrap_or_else(|| panic!("no certificate for {sni:?}: {text}"))
}

fn copy(leaf: &Leaf, dir: &Path, name: &str) {
    std::fs::copy(&leaf.cert, dir.join(format!("{name}.pem"))).unwrap();
    std::fs::copy(&leaf.key, dir.join(format!("{name}.key"))).unwrap();
}

fn cert_table(dir: &Path, name: &str) -> String {
    format!(
        "tls = {{ cert = {:?}, key = {:?} }}",
        dir.join(format!("{name}.pem")),
        dir.join(format!("{name}.key"))
    )
}

#[test]
fn sni_picks_the_server_blocks_certificate_and_a_reload_swaps_it() {
    let ca = TestCa::new("vh-sni");
    let dir = TempDir::new("vh-sni");
    let d = dir.0.clone();
    copy(&ca.server("listener", &["listener.test"]), &d, "listener");
    copy(&ca.server("a", &["a.test"]), &d, "a");
    copy(&ca.server("w", &["wild.w.test"]), &d, "w");
    write(&d, "www/index.html", "site\n");
    let www = format!("{:?}", d.join("www"));
    let servers = format!(
        "{listener}\n\
         [[listener.server]]\nserver_name = [\"a.test\"]\nroot = {www}\n{a}\n\n\
         [[listener.server]]\nserver_name = [\"*.w.test\"]\nroot = {www}\n{w}\n\n\
         [[listener.server]]\nserver_name = [\"plain.test\"]\nroot = {www}\n",
        listener = cert_table(&d, "listener"),
        a = cert_table(&d, "a"),
        w = cert_table(&d, "w"),
    );
    let h = Herd::launch(dir, 1, "", |t| http_listener(t, &servers));
    let master = h.pid();
    h.wait_ready_workers(master, 1);
    let port = h.port;
    assert_eq!(subject(port, Some("a.test")), "CN=a.test");
    assert_eq!(subject(port, Some("A.Test")), "CN=a.test");
    assert_eq!(subject(port, Some("x.y.w.test")), "CN=wild.w.test");
    assert_eq!(
        subject(port, Some("plain.test")),
        "CN=listener.test",
        "a server without tls: the listener's certificate"
    );
    assert_eq!(subject(port, Some("unknown.test")), "CN=listener.test");
    assert_eq!(subject(port, None), "CN=listener.test");

    // A new certificate for a.test, then HUP: new connections get it.
    copy(&ca.server("a2", &["a2.test", "a.test"]), &h.dir.0, "a");
    h.signal(Signal::Hup);
    h.wait_log("configuration reloaded: generation 2", |l| l.pid == master);
    server_support::wait_until("the swapped certificate", || {
        subject(port, Some("a.test")) == "CN=a2.test"
    });
    assert_eq!(subject(port, Some("x.w.test")), "CN=wild.w.test");

    // A broken server certificate: the reload is refused and the old one stays.
    std::fs::write(h.dir.0.join("a.pem"), "not a certificate").unwrap();
    h.signal(Signal::Hup);
    let line = h.wait_log("reload failed", |l| l.pid == master);
    assert!(line.msg.contains("a.pem"), "{line:?}");
    assert_eq!(subject(port, Some("a.test")), "CN=a2.test");
}

#[test]
fn without_a_listener_certificate_the_default_servers_answers_unknown_names() {
    let ca = TestCa::new("vh-sni2");
    let dir = TempDir::new("vh-sni2");
    let d = dir.0.clone();
    copy(&ca.server("a", &["a.test"]), &d, "a");
    copy(&ca.server("b", &["b.test"]), &d, "b");
    write(&d, "www/index.html", "over tls\n");
    let www = format!("{:?}", d.join("www"));
    let servers = format!(
        "tls = {{}}\n\
         [[listener.server]]\nserver_name = [\"a.test\"]\nroot = {www}\n{a}\n\n\
         [[listener.server]]\nserver_name = [\"b.test\"]\ndefault = true\nroot = {www}\n{b}\n",
        a = cert_table(&d, "a"),
        b = cert_table(&d, "b"),
    );
    let h = Herd::launch(dir, 1, "", |t| http_listener(t, &servers));
    h.wait_ready_workers(h.pid(), 1);
    assert_eq!(subject(h.port, Some("a.test")), "CN=a.test");
    assert_eq!(subject(h.port, Some("b.test")), "CN=b.test");
    assert_eq!(subject(h.port, Some("other.test")), "CN=b.test");
    assert_eq!(subject(h.port, None), "CN=b.test");
    // And HTTP over it, verified against the CA.
    let out = Command::new("curl")
        .args(["-s", "--max-time", "10", "--cacert"])
        .arg(ca.ca_file())
        .args(["--resolve", &format!("a.test:{}:127.0.0.1", h.port)])
        .arg(format!("https://a.test:{}/", h.port))
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "over tls\n",
        "{out:?}"
    );
}

#[test]
fn herd_t_checks_the_server_blocks_certificates() {
    let ca = TestCa::new("vh-t");
    let dir = TempDir::new("vh-t");
    let d = dir.0.clone();
    copy(&ca.server("a", &["a.test"]), &d, "a");
    write(&d, "www/index.html", "x\n");
    let www = format!("{:?}", d.join("www"));
    let check = |listener_tls: &str, server_tls: &str, second: bool| {
        let mut text = format!(
            "[[listener]]\nbind = \"127.0.0.1:1\"\nprotocol = \"http\"\n{listener_tls}\n\
             [[listener.server]]\nserver_name = [\"a.test\"]\nroot = {www}\n{server_tls}\n"
        );
        if second {
            text.push_str(&format!(
                "[[listener.server]]\nserver_name = [\"b.test\"]\nroot = {www}\n"
            ));
        }
        let f = d.join("t.toml");
        std::fs::write(&f, text).unwrap();
        let o = Command::new(herd_bin())
            .args(["-t", "-c"])
            .arg(&f)
            .output()
            .unwrap();
        (
            o.status.success(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    let a = cert_table(&d, "a");
    let (ok, err) = check("tls = {}", &a, false);
    assert!(ok, "every server has a certificate: {err}");
    let (ok, err) = check("tls = {}", &a, true);
    assert!(!ok && err.contains("required"), "b.test has none: {err}");
    let (ok, err) = check("", &a, false);
    assert!(
        !ok && err.contains("server[0].tls"),
        "no tls listener: {err}"
    );
    let missing = format!(
        "tls = {{ cert = {:?}, key = {:?} }}",
        d.join("nope.pem"),
        d.join("a.key")
    );
    let (ok, err) = check("tls = {}", &missing, false);
    assert!(!ok && err.contains("nope.pem"), "{err}");
    let (ok, err) = check(
        "tls = {}",
        "tls = { cert = \"a.pem\", key = \"a.key\" }",
        false,
    );
    assert!(ok, "paths relative to the config file's directory: {err}");
    let (ok, err) = check(
        "tls = {}",
        "tls = { cert = \"a.pem\", key = \"a.key\", okcsp = \"x\" }",
        false,
    );
    assert!(!ok && err.contains("okcsp"), "{err}");
}
