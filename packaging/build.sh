#!/usr/bin/env bash
# packaging/build.sh deb|image|all [cargo-deb options...]
#
# Builds herd's artefacts into target/dist/ from a clean checkout, needing only the Rust
# toolchain: the Debian packages it uses (dpkg-dev, podman, runc) and cargo-deb are installed
# when missing (as root, like CI). docs/packaging.md describes each artefact.
#
#   deb    target/dist/herd_<version>_amd64.deb: `cargo deb` with the metadata in Cargo.toml;
#          the man pages and completions are generated first (herd-dist, into
#          target/packaging/). Extra arguments go to cargo-deb, e.g.
#          `deb --no-build --deb-version 0.1.0-2` (the upgrade test's N+1).
#   image  the container image herd:<version> in podman's local storage, saved as
#          target/dist/herd-image_<version>.tar (docker-archive: `podman load -i` or
#          `docker load -i`). herd is linked statically (-C target-feature=+crt-static on
#          x86_64-unknown-linux-gnu, the dist profile) for a FROM scratch image; herd-probe
#          is a link to it.
#   all    both.
#
# Environment: CARGO_TARGET_DIR is honoured.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
DIST=$ROOT/target/dist
# Paths under target/packaging/ are named in Cargo.toml's deb assets, relative to the root,
# so they stay here whatever CARGO_TARGET_DIR says.
GEN=$ROOT/target/packaging
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
TRIPLE=x86_64-unknown-linux-gnu
VERSION=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)

say() { printf 'build.sh: %s\n' "$*" >&2; }

# apt_ensure PKG...: installs the Debian packages that are not installed yet.
apt_ensure() {
    local missing=()
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    say "installing ${missing[*]} (apt)"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# The man pages and completions, from the clap CLI and docs/ (crates/herd-dist).
generate() {
    say "generating man pages and completions into target/packaging/"
    cargo build --release --locked -q -p herd-dist --bin herd-dist
    rm -rf "$GEN/gen"
    "$TARGET_DIR/release/herd-dist" gen "$GEN/gen" "$ROOT/docs"
    for page in herd.8 herd.toml.5; do
        gzip -9n <"$GEN/gen/$page" >"$GEN/$page.gz"
    done
    cp "$GEN/gen/herd.bash" "$GEN/gen/_herd" "$GEN/"
}

build_deb() {
    apt_ensure dpkg-dev gzip
    if ! cargo deb --version >/dev/null 2>&1; then
        say "installing cargo-deb (cargo install)"
        cargo install --locked --quiet cargo-deb --version '^3'
    fi
    mkdir -p "$GEN" "$DIST"
    generate
    say "cargo deb $*"
    local out
    out=$(cargo deb -p herd-bin --locked --strip --output "$DIST/" "$@" | tail -n 1)
    say "built $out ($(du -k "$out" | cut -f1) KiB)"
}

podman_conf() {
    # Rootful podman on these machines: runc (crun refuses the hybrid cgroups), no default
    # ulimits (the sandbox refuses to raise RLIMIT_NOFILE/NPROC), cgroupfs and a file event log
    # (no systemd as PID 1).
    mkdir -p "$GEN"
    cat >"$GEN/containers.conf" <<'EOF'
[containers]
default_ulimits = []

[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
runtime = "runc"
EOF
    export CONTAINERS_CONF=$GEN/containers.conf
}

# pm ARGS...: podman with the runtime and configuration above.
pm() { podman --runtime /usr/sbin/runc "$@"; }

build_image() {
    apt_ensure podman runc binutils
    rustup target list --installed 2>/dev/null | grep -qx "$TRIPLE" || rustup target add "$TRIPLE"
    say "static build: herd ($TRIPLE, +crt-static, profile dist)"
    # The dist profile (Cargo.toml): fat LTO, one codegen unit, cold crates at opt-level z.
    RUSTFLAGS="-C target-feature=+crt-static" \
        cargo build --profile dist --locked -q --target "$TRIPLE" -p herd-bin --bin herd
    local bin=$TARGET_DIR/$TRIPLE/dist
    for b in herd; do
        # A dynamic executable names an interpreter; a static one has no PT_INTERP.
        if readelf -l "$bin/$b" | grep -q 'Requesting program interpreter'; then
            say "$b is not statically linked"
            exit 1
        fi
    done
    local ctx=$GEN/image
    rm -rf "$ctx"
    mkdir -p "$ctx/rootfs/usr/sbin" "$ctx/rootfs/etc/herd" "$ctx/rootfs/tmp"
    chmod 1777 "$ctx/rootfs/tmp"
    strip -o "$ctx/rootfs/usr/sbin/herd" "$bin/herd"
    # The health probe is herd itself, called as herd-probe (src/main.rs).
    ln -s herd "$ctx/rootfs/usr/sbin/herd-probe"
    install -m 644 packaging/container/herd.toml "$ctx/rootfs/etc/herd/herd.toml"
    printf 'root:x:0:0:root:/:/sbin/nologin\nherd:x:65532:65532:herd:/nonexistent:/sbin/nologin\n' \
        >"$ctx/rootfs/etc/passwd"
    printf 'root:x:0:\nherd:x:65532:\n' >"$ctx/rootfs/etc/group"
    podman_conf
    say "podman build herd:$VERSION"
    pm build -q --format docker -t "herd:$VERSION" -f packaging/Containerfile "$ctx" >/dev/null
    mkdir -p "$DIST"
    local tar=$DIST/herd-image_$VERSION.tar
    rm -f "$tar"
    pm save -q --format docker-archive -o "$tar" "herd:$VERSION"
    local size
    size=$(pm image inspect --format '{{.Size}}' "herd:$VERSION")
    say "built image herd:$VERSION: $size bytes ($((size / 1024)) KiB); saved $tar ($(du -k "$tar" | cut -f1) KiB)"
}

what=${1:-}
shift || true
case "$what" in
deb) build_deb "$@" ;;
image) build_image ;;
all)
    build_deb "$@"
    build_image
    ;;
*)
    echo "usage: packaging/build.sh deb|image|all [cargo-deb options...]" >&2
    exit 2
    ;;
esac
