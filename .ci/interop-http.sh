#!/usr/bin/env bash
# .ci/interop-http.sh: herd's HTTP/1.1 server against real clients (curl, python3 http.client).
#
# Builds the `static_site` and `hello` examples, serves a generated site from a temporary
# directory on 127.0.0.1 (a free port each), and checks with curl and python's http.client:
# bodies byte for byte, MIME types, keep-alive reuse, HEAD, ETag/304, If-Modified-Since,
# Range 206/416, index.html and the directory redirect, traversal attempts (plain, encoded,
# symlink) refused, HTTP/1.0, Expect: 100-continue and chunked uploads, the access log, gzip and
# Brotli responses and pre-compressed files (decoded by curl, gzip and python), and the hello
# example's exact answer. Installs curl and python3 through apt only when missing (CI
# runs it as root), so it is idempotent; every client call is bounded by a timeout and the
# servers it started are stopped by PID on exit. Prints "N passed, M failed" and exits 1 on any
# failure.

set -uo pipefail
cd "$(dirname "$0")/.." || exit 1

say() { printf '%s\n' "$*" >&2; }
die() {
    say "interop-http: $*"
    exit 1
}

APT_UPDATED=0
need() { # need COMMAND DEBIAN-PACKAGE
    command -v "$1" >/dev/null 2>&1 && return 0
    say "installing $2 (for $1)"
    if [ "$APT_UPDATED" = 0 ]; then
        apt-get update -qq >/dev/null || die "apt-get update failed"
        APT_UPDATED=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null || die "could not install $2"
    command -v "$1" >/dev/null 2>&1 || die "$1 still missing after installing $2"
}
need curl curl
need python3 python3
need timeout coreutils

WORK=$(mktemp -d /tmp/herd-interop-http.XXXXXX)
PIDS=()
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null; done
    for pid in "${PIDS[@]}"; do
        for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
    done
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say "building the static_site and hello examples"
timeout 1800 cargo build -q --example static_site --example hello || die "build failed"
TARGET=${CARGO_TARGET_DIR:-target}
BIN=$TARGET/debug/examples

# --- the site ------------------------------------------------------------------------------
SITE=$WORK/site
mkdir -p "$SITE/docs" "$SITE/empty"
printf '<h1>home</h1>\n' >"$SITE/index.html"
printf 'hello from herd\n' >"$SITE/a.txt"
printf 'body { color: red }\n' >"$SITE/style.css"
printf '<p>docs</p>\n' >"$SITE/docs/index.html"
head -c 300000 /dev/urandom >"$SITE/data.bin"
printf 'top secret\n' >"$WORK/secret.txt"
ln -s "$WORK/secret.txt" "$SITE/escape.txt"

# start NAME ARGS...: starts an example on port 0, sets ADDR from its "listening on" line.
start() {
    local name=$1 log=$WORK/$1.log
    shift
    "$BIN/$name" --port 0 --loops 2 "$@" >"$log" 2>&1 &
    PIDS+=($!)
    for _ in $(seq 1 200); do
        ADDR=$(sed -n 's|.*listening on http://\([0-9.:]*\).*|\1|p' "$log" | head -n 1)
        [ -n "$ADDR" ] && return 0
        kill -0 "${PIDS[-1]}" 2>/dev/null || break
        sleep 0.05
    done
    cat "$log" >&2
    die "$name did not start"
}

PASS=0
FAIL=0
check() { # check NAME EXPECTED ACTUAL
    if [ "$2" = "$3" ]; then
        PASS=$((PASS + 1))
    else
        FAIL=$((FAIL + 1))
        say "FAIL: $1: expected [$2], got [$3]"
    fi
}

C=(curl -sS --max-time 10)

start static_site --root "$SITE"
S=http://$ADDR
say "static_site on $S"

# --- curl ----------------------------------------------------------------------------------
check "GET /" "$(cat "$SITE/index.html")" "$("${C[@]}" "$S/")"
check "GET /a.txt" "hello from herd" "$("${C[@]}" "$S/a.txt")"
"${C[@]}" -o "$WORK/data.out" "$S/data.bin"
check "binary body" "same" "$(cmp -s "$SITE/data.bin" "$WORK/data.out" && echo same || echo differ)"
check "MIME css" "text/css; charset=utf-8" "$("${C[@]}" -o /dev/null -w '%{content_type}' "$S/style.css")"
check "MIME bin" "application/octet-stream" "$("${C[@]}" -o /dev/null -w '%{content_type}' "$S/data.bin")"
check "404" "404" "$("${C[@]}" -o /dev/null -w '%{http_code}' "$S/missing")"
check "dir redirect" "301 $S/docs/" "$("${C[@]}" -o /dev/null -w '%{http_code} %{redirect_url}' "$S/docs")"
check "follow to index" "<p>docs</p>" "$("${C[@]}" -L "$S/docs")"
check "HEAD" "200 300000" "$("${C[@]}" -I -o /dev/null -w '%{http_code} %header{content-length}' "$S/data.bin")"
check "keep-alive reuse" "1" "$("${C[@]}" -o /dev/null -o /dev/null -o /dev/null -w '%{num_connects}\n' "$S/a.txt" "$S/style.css" "$S/" | awk '{ s += $1 } END { print s }')"
ETAG=$("${C[@]}" -o /dev/null -w '%header{etag}' "$S/a.txt")
LM=$("${C[@]}" -o /dev/null -w '%header{last-modified}' "$S/a.txt")
check "If-None-Match" "304" "$("${C[@]}" -o /dev/null -w '%{http_code}' -H "If-None-Match: $ETAG" "$S/a.txt")"
check "If-Modified-Since" "304" "$("${C[@]}" -o /dev/null -w '%{http_code}' -H "If-Modified-Since: $LM" "$S/a.txt")"
check "Range body" "$(head -c 100 "$SITE/data.bin" | od -An -tx1 | tr -d ' \n')" \
    "$("${C[@]}" -r 0-99 "$S/data.bin" | od -An -tx1 | tr -d ' \n')"
check "Range 206" "206 bytes 0-99/300000" "$("${C[@]}" -r 0-99 -o /dev/null -w '%{http_code} %header{content-range}' "$S/data.bin")"
check "Range 416" "416" "$("${C[@]}" -r 300000- -o /dev/null -w '%{http_code}' "$S/data.bin")"
check "HTTP/1.0" "200 hello from herd" "$("${C[@]}" --http1.0 -w '%{http_code} ' -o "$WORK/h10" "$S/a.txt")$(cat "$WORK/h10")"
for p in /../secret.txt /%2e%2e/secret.txt /docs/..%2f..%2fsecret.txt /escape.txt; do
    code=$("${C[@]}" --path-as-is -o "$WORK/out" -w '%{http_code}' "$S$p")
    case $code in 403 | 404) check "traversal $p" ok ok ;; *) check "traversal $p" "403 or 404" "$code" ;; esac
    check "no leak $p" "" "$(grep -l 'top secret' "$WORK/out" 2>/dev/null)"
done
check "Expect 100-continue upload" "405 GET, HEAD" \
    "$("${C[@]}" -H 'Expect: 100-continue' --data-binary @"$SITE/data.bin" -o /dev/null -w '%{http_code} %header{allow}' "$S/a.txt")"
check "chunked upload" "405" \
    "$("${C[@]}" -H 'Transfer-Encoding: chunked' --data-binary @"$SITE/a.txt" -o /dev/null -w '%{http_code}' "$S/a.txt")"

# --- python http.client --------------------------------------------------------------------
PY_OUT=$(timeout 60 python3 - "$ADDR" "$SITE" <<'EOF'
import http.client, sys
host, port = sys.argv[1].rsplit(":", 1)
site = sys.argv[2]
c = http.client.HTTPConnection(host, int(port), timeout=10)
results = []
def req(method, path, body=None, headers={}, **kw):
    c.request(method, path, body=body, headers=headers, **kw)
    r = c.getresponse()
    return r, r.read()
r, b = req("GET", "/a.txt")
results.append(("get", r.status == 200 and b == b"hello from herd\n"))
first_sock = c.sock
data = open(site + "/data.bin", "rb").read()
r, b = req("GET", "/data.bin")
results.append(("binary", b == data and r.getheader("Content-Length") == str(len(data))))
r, b = req("HEAD", "/data.bin")
results.append(("head", r.status == 200 and b == b"" and r.getheader("Content-Length") == "300000"))
etag = r.getheader("ETag")
r, b = req("GET", "/data.bin", headers={"If-None-Match": etag})
results.append(("304", r.status == 304 and b == b""))
r, b = req("GET", "/data.bin", headers={"Range": "bytes=1000-1999"})
results.append(("range", r.status == 206 and b == data[1000:2000]))
r, b = req("POST", "/a.txt", body=iter([b"abc", b"def"]), encode_chunked=True,
           headers={"Transfer-Encoding": "chunked"})
results.append(("chunked upload 405", r.status == 405 and r.getheader("Allow") == "GET, HEAD"))
r, b = req("GET", "/docs/")
results.append(("index", b == b"<p>docs</p>\n"))
# Every request above went over one connection: it is still the same socket.
results.append(("one connection", c.sock is not None and c.sock is first_sock))
c.close()
c = http.client.HTTPConnection(host, int(port), timeout=10)
c.putrequest("GET", "/../secret.txt", skip_host=True)
c.putheader("Host", "x")
c.endheaders()
r = c.getresponse()
body = r.read()
results.append(("traversal", r.status in (403, 404) and b"secret" not in body))
for name, ok in results:
    print(("ok " if ok else "FAIL ") + name)
EOF
)
while read -r status name; do
    check "python: $name" ok "$status"
done <<<"$PY_OUT"
[ -n "$PY_OUT" ] || check "python ran" "output" ""

check "access log" "yes" "$(grep -q '"GET /a.txt" 200' "$WORK/static_site.log" && echo yes || echo no)"

# --- compression: curl, gzip and python decode what herd encodes ---------------------------
python3 -c 'import sys; sys.stdout.write("<p>herd compresses this line.</p>\n" * 3000)' >"$SITE/big.html"
printf 'console.log("original");\n' >"$SITE/app.js"
printf 'console.log("gzip variant");\n' | gzip -9 -n >"$SITE/app.js.gz"
start static_site --root "$SITE" --compress 1 --quiet 1
Z=http://$ADDR
say "static_site --compress 1 on $Z"
GZ=(-H 'Accept-Encoding: gzip')
check "gzip body" "same" "$("${C[@]}" "${GZ[@]}" "$Z/big.html" | gzip -dc | cmp -s - "$SITE/big.html" && echo same || echo differ)"
check "gzip headers" "gzip Accept-Encoding" \
    "$("${C[@]}" "${GZ[@]}" -o /dev/null -w '%header{content-encoding} %header{vary}' "$Z/big.html")"
n=$("${C[@]}" "${GZ[@]}" -o /dev/null -w '%{size_download}' "$Z/big.html")
check "gzip smaller than 10000 of 105000 bytes" "yes" "$([ "$n" -lt 10000 ] && echo yes || echo "no ($n bytes)")"
if curl -V | grep -qi brotli; then
    enc=$("${C[@]}" --compressed -o "$WORK/br.out" -w '%header{content-encoding}' "$Z/big.html")
    check "br (curl --compressed)" "br same" "$enc $(cmp -s "$WORK/br.out" "$SITE/big.html" && echo same || echo differ)"
fi
enc=$("${C[@]}" -o "$WORK/id.out" -w '%header{content-encoding}' "$Z/big.html")
check "identity without Accept-Encoding" " same" "$enc $(cmp -s "$WORK/id.out" "$SITE/big.html" && echo same || echo differ)"
check "q-values: gzip;q=0.5, br;q=0" "gzip" \
    "$("${C[@]}" -H 'Accept-Encoding: gzip;q=0.5, identity;q=0.1, br;q=0' -o /dev/null -w '%header{content-encoding}' "$Z/big.html")"
check "small file untouched" " 16" \
    "$("${C[@]}" "${GZ[@]}" -o /dev/null -w '%header{content-encoding} %header{content-length}' "$Z/a.txt")"
check "binary not compressed" "" \
    "$("${C[@]}" "${GZ[@]}" -o /dev/null -w '%header{content-encoding}' "$Z/data.bin")"
enc=$("${C[@]}" "${GZ[@]}" -o "$WORK/app.gz" -w '%header{content-encoding}' "$Z/app.js")
check "pre-compressed variant" 'gzip console.log("gzip variant");' "$enc $(gzip -dc "$WORK/app.gz")"
check "pre-compressed original" 'console.log("original");' "$("${C[@]}" "$Z/app.js")"
check "Range gets identity" "206 " \
    "$("${C[@]}" "${GZ[@]}" -r 0-99 -o /dev/null -w '%{http_code} %header{content-encoding}' "$Z/big.html")"
PY_OUT=$(timeout 60 python3 - "$ADDR" "$SITE" <<'EOF'
import gzip, http.client, sys
host, port = sys.argv[1].rsplit(":", 1)
want = open(sys.argv[2] + "/big.html", "rb").read()
c = http.client.HTTPConnection(host, int(port), timeout=10)
res = []
c.request("GET", "/big.html", headers={"Accept-Encoding": "gzip"})
r = c.getresponse(); b = r.read()
res.append(("gzip", r.getheader("Content-Encoding") == "gzip" and gzip.decompress(b) == want))
etag = r.getheader("ETag") or ""
res.append(("weak etag", etag.startswith('W/"')))
c.request("GET", "/big.html", headers={"Accept-Encoding": "gzip", "If-None-Match": etag})
r = c.getresponse(); b = r.read()
res.append(("304 on the weak etag", r.status == 304 and b == b""))
c.request("HEAD", "/big.html", headers={"Accept-Encoding": "gzip"})
r = c.getresponse(); b = r.read()
res.append(("head", r.status == 200 and b == b"" and r.getheader("Content-Encoding") == "gzip"))
c.request("GET", "/big.html")
r = c.getresponse(); b = r.read()
res.append(("identity on the same connection", b == want and r.getheader("Vary") == "Accept-Encoding"))
for name, ok in res:
    print(("ok " if ok else "FAIL ") + name)
EOF
)
while read -r status name; do
    check "python compression: $name" ok "$status"
done <<<"$PY_OUT"
[ -n "$PY_OUT" ] || check "python compression ran" "output" ""

# --- the hello example ---------------------------------------------------------------------
start hello
H=http://$ADDR
check "hello body" "Hello, World!" "$("${C[@]}" "$H/hello")"
check "hello headers" "200 13 text/plain" \
    "$("${C[@]}" -o /dev/null -w '%{http_code} %header{content-length} %{content_type}' "$H/hello")"
check "hello keep-alive" "1" "$("${C[@]}" -o /dev/null -o /dev/null -w '%{num_connects}\n' "$H/hello" "$H/hello" | awk '{ s += $1 } END { print s }')"

echo "interop-http: $PASS passed, $FAIL failed"
[ "$FAIL" = 0 ]
