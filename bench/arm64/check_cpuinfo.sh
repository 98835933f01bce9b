#!/usr/bin/env bash
# Does onnxruntime (aarch64 wheel) still crash when /sys/devices/system/cpu/{possible,present}
# are missing, as on AWS Lambda arm64 (onnxruntime#10038, pytorch/cpuinfo#143)?
#
# Runs the aarch64 wheel under qemu-user in a Debian 12 arm64 chroot, in a private mount
# namespace per case, with /proc/cpuinfo replaced by a Graviton2 one (Lambda arm64 hardware)
# and /sys in four shapes: the host's (files present), none, a cpu dir without the two lists,
# an empty cpu dir. Each case is one fresh process; a crash shows as a non-zero exit code.
#
# Usage (root, x86_64 Debian/Ubuntu host; only the apt and PyPI mirrors are used):
#   bash bench/arm64/check_cpuinfo.sh                    # onnxruntime 1.32.0 (the lock) + 1.16.3 (known bad, control)
#   ORT_VERSIONS="1.32.0" bash bench/arm64/check_cpuinfo.sh
#   BUILD_DIR=/tmp/arm64 bash bench/arm64/check_cpuinfo.sh
# Artefacts (rootfs ~600 MB, wheels, logs) live in $BUILD_DIR (default .build/arm64, git-ignored).
# Prints a markdown table; also saved as $BUILD_DIR/results/latest.md.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
BUILD=${BUILD_DIR:-$REPO/.build/arm64}
ROOTFS=$BUILD/rootfs
ORT_VERSIONS=${ORT_VERSIONS:-"1.32.0 1.16.3"}
MODES=${MODES:-"import default threads1 project"}
SYS_SHAPES=${SYS_SHAPES:-"host none cpudir-nolists cpudir-empty"}
PYVER=3.11            # Debian 12's python3; the onnxruntime native code is the same for every cp3xx wheel
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
CASE_TIMEOUT=${CASE_TIMEOUT:-600}

log() { printf '== %s\n' "$*" >&2; }
die() { printf 'check_cpuinfo: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root (debootstrap, chroot, mount namespaces)"
[ "$(uname -m)" = x86_64 ] || log "host is $(uname -m), not x86_64: the x86_64 reference is then this host's"
mkdir -p "$BUILD"

# --- 1. tools -------------------------------------------------------------------------------
if ! command -v qemu-aarch64-static >/dev/null || ! command -v debootstrap >/dev/null \
   || ! command -v update-binfmts >/dev/null; then
  log "installing qemu-user-static debootstrap binfmt-support"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq qemu-user-static debootstrap binfmt-support >/dev/null
fi

# --- 2. binfmt_misc: run aarch64 ELF files through qemu (needed by chroot) ------------------
if [ ! -e /proc/sys/fs/binfmt_misc/register ]; then
  mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc 2>/dev/null || true
fi
if ! grep -q enabled /proc/sys/fs/binfmt_misc/qemu-aarch64 2>/dev/null; then
  update-binfmts --enable qemu-aarch64 >/dev/null 2>&1 || true
fi
grep -q enabled /proc/sys/fs/binfmt_misc/qemu-aarch64 2>/dev/null \
  || die "cannot register binfmt_misc for qemu-aarch64 here (no binfmt_misc in this sandbox?)"
QEMU_INTERP=$(sed -n 's/^interpreter //p' /proc/sys/fs/binfmt_misc/qemu-aarch64)

# --- 3. Debian 12 arm64 rootfs ----------------------------------------------------------------
install_qemu_into_rootfs() {
  # Without binfmt's F flag the kernel looks the interpreter up inside the chroot.
  install -D -m 755 "$(command -v qemu-aarch64-static)" "$ROOTFS/usr/bin/qemu-aarch64-static"
  mkdir -p "$ROOTFS$(dirname "$QEMU_INTERP")"
  ln -sf /usr/bin/qemu-aarch64-static "$ROOTFS$QEMU_INTERP"
}
if [ ! -e "$ROOTFS/.stage2-done" ]; then
  log "debootstrap bookworm arm64 into $ROOTFS (first stage ~1 min, second stage under qemu ~6 min)"
  rm -rf "$ROOTFS"
  debootstrap --arch=arm64 --foreign --variant=minbase --include=python3,python3-venv,ca-certificates \
    bookworm "$ROOTFS" "$MIRROR" >"$BUILD/debootstrap1.log" 2>&1 || die "debootstrap failed: $BUILD/debootstrap1.log"
  install_qemu_into_rootfs
  chroot "$ROOTFS" /debootstrap/debootstrap --second-stage >"$BUILD/debootstrap2.log" 2>&1 \
    || die "debootstrap second stage failed: $BUILD/debootstrap2.log"
  touch "$ROOTFS/.stage2-done"
fi
install_qemu_into_rootfs
chroot "$ROOTFS" /usr/bin/python3 -c 'import platform, sys; assert platform.machine() == "aarch64", platform.machine()' \
  || die "the chroot's python does not run as aarch64"

numpy_spec() {  # onnxruntime before 1.20 was built against numpy 1.x
  python3 - "$1" <<'EOF'
import sys
major, minor = (int(x) for x in sys.argv[1].split(".")[:2])
print("numpy<2" if (major, minor) < (1, 20) else "numpy")
EOF
}

# --- 4. aarch64 wheels from PyPI, installed offline into one venv per version --------------------
for v in $ORT_VERSIONS; do
  venv=/opt/venv-$v
  if [ ! -e "$ROOTFS$venv/.installed" ]; then
    log "onnxruntime $v: downloading cp${PYVER/./} aarch64 wheels, installing into $venv"
    wheels=$BUILD/wheels/$v
    mkdir -p "$wheels"
    pip download -q --only-binary=:all: --implementation cp --python-version "$PYVER" \
      --platform manylinux_2_28_aarch64 --platform manylinux_2_27_aarch64 --platform manylinux2014_aarch64 \
      --platform manylinux_2_17_aarch64 -d "$wheels" "onnxruntime==$v" "$(numpy_spec "$v")" pillow
    rm -rf "$ROOTFS/opt/wheels/$v" && mkdir -p "$ROOTFS/opt/wheels" && cp -r "$wheels" "$ROOTFS/opt/wheels/$v"
    chroot "$ROOTFS" /bin/sh -c "rm -rf $venv && python3 -m venv $venv && \
      PIP_CONFIG_FILE=/dev/null PIP_FIND_LINKS= $venv/bin/pip install -q --no-index --find-links /opt/wheels/$v \
      onnxruntime==$v '$(numpy_spec "$v")' pillow && touch $venv/.installed"
  fi
done

# --- 5. x86_64 reference: same input tensor through the function's own decode + preprocess --------
X86=$BUILD/x86venv
FIRST=${ORT_VERSIONS%% *}
if [ ! -e "$X86/.installed-1.32.0" ]; then
  log "x86_64 reference venv (onnxruntime 1.32.0)"
  python3 -m venv "$X86"
  "$X86/bin/pip" install -q onnxruntime==1.32.0 numpy pillow
  touch "$X86/.installed-1.32.0"
fi
DATA=$BUILD/data
"$X86/bin/python" "$HERE/probe.py" prepare --model "$REPO/predict_function/model/model.onnx" \
  --event "$REPO/events/base64.json" --classifier-dir "$REPO/predict_function/classifier" --out "$DATA" \
  >"$BUILD/x86_reference.json"
log "x86_64 reference: $(cat "$BUILD/x86_reference.json")"

# What goes into the chroot: the model, the tensors, the probe, the function's classifier package.
rm -rf "$ROOTFS/opt/check" && mkdir -p "$ROOTFS/opt/check"
cp "$REPO/predict_function/model/model.onnx" "$DATA/input.npy" "$DATA/reference.npy" "$HERE/probe.py" "$ROOTFS/opt/check/"
cp -r "$REPO/predict_function/classifier" "$ROOTFS/opt/check/classifier"
find "$ROOTFS/opt/check" -name __pycache__ -prune -exec rm -rf {} +

# A Graviton2 (Neoverse N1, what Lambda arm64 runs on) /proc/cpuinfo with one entry per host CPU.
# qemu 7.2's linux-user passes /proc/cpuinfo through from the x86_64 host kernel; the x86 text
# would make cpuinfo misparse (see README: it segfaults when the sysfs lists ARE present).
NCPU=$(nproc)
FAKE_CPUINFO=$BUILD/graviton2.cpuinfo
: >"$FAKE_CPUINFO"
for ((i = 0; i < NCPU; i++)); do
  printf 'processor\t: %d\nBogoMIPS\t: 243.75\nFeatures\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp ssbs\nCPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x3\nCPU part\t: 0xd0c\nCPU revision\t: 1\n\n' "$i" >>"$FAKE_CPUINFO"
done

# --- 6. the matrix ------------------------------------------------------------------------------------
RESULTS=$BUILD/results/$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$RESULTS"

run_case() {  # version proc-shape sys-shape mode
  local v=$1 proc=$2 sys=$3 mode=$4 name rc
  name=$(printf '%s_%s_%s_%s' "$v" "$proc" "$sys" "$mode")
  log "case onnxruntime=$v /proc/cpuinfo=$proc /sys=$sys mode=$mode"
  set +e
  (R=$ROOTFS P=$proc S=$sys N=$NCPU F=$FAKE_CPUINFO T=$CASE_TIMEOUT V=$v M=$mode \
  unshare --mount --propagation private /bin/bash -c '
    set -e
    mount -t proc proc "$R/proc"
    mount --rbind /dev "$R/dev"
    if [ "$P" = graviton2 ]; then mount --bind "$F" "$R/proc/cpuinfo"; fi
    case "$S" in
      host) mount --rbind /sys "$R/sys" ;;
      none) ;;   # nothing mounted: the chroot has an empty /sys directory
      cpudir-nolists)
        mount -t tmpfs -o size=1m sysfs-stand-in "$R/sys"
        mkdir -p "$R/sys/devices/system/cpu"
        for ((i = 0; i < N; i++)); do mkdir -p "$R/sys/devices/system/cpu/cpu$i"; done
        echo "0-$((N - 1))" >"$R/sys/devices/system/cpu/online" ;;
      cpudir-empty)
        mount -t tmpfs -o size=1m sysfs-stand-in "$R/sys"
        mkdir -p "$R/sys/devices/system/cpu" ;;
      *) echo "unknown /sys shape $S" >&2; exit 99 ;;
    esac
    ulimit -c 0
    exec timeout "$T" chroot "$R" /opt/venv-$V/bin/python /opt/check/probe.py run --mode "$M" \
      --model /opt/check/model.onnx --input /opt/check/input.npy --reference /opt/check/reference.npy \
      --classifier-dir /opt/check/classifier
  ' >"$RESULTS/$name.stdout" 2>"$RESULTS/$name.stderr") 2>/dev/null  # no "Aborted" job notice from bash
  rc=$?
  set -e
  printf '{"ort": "%s", "proc": "%s", "sys": "%s", "mode": "%s", "rc": %d}\n' "$v" "$proc" "$sys" "$mode" "$rc" \
    >"$RESULTS/$name.meta.json"
}

for v in $ORT_VERSIONS; do
  for sys in $SYS_SHAPES; do
    for mode in $MODES; do
      run_case "$v" graviton2 "$sys" "$mode"
    done
  done
done
# Emulation artefact, shown for honesty: the x86 /proc/cpuinfo that qemu-user passes through.
if [ "${SKIP_PASSTHROUGH:-0}" != 1 ]; then
  for sys in host none; do run_case "$FIRST" passthrough "$sys" default; done
fi

{
  echo "# onnxruntime aarch64 without /sys/devices/system/cpu/{possible,present}"
  echo
  echo "$(date -u +%Y-%m-%dT%H:%MZ); host $(uname -m) kernel $(uname -r); $(qemu-aarch64-static --version | head -1);"
  echo "guest Debian $(cat "$ROOTFS/etc/debian_version") arm64, Python $(chroot "$ROOTFS" python3 -c 'import platform; print(platform.python_version())');"
  echo "x86_64 reference (onnxruntime 1.32.0): $(cat "$BUILD/x86_reference.json")"
  echo
  "$X86/bin/python" "$HERE/probe.py" table "$RESULTS"
} | tee "$RESULTS/table.md"
cp "$RESULTS/table.md" "$BUILD/results/latest.md"
echo
echo "logs: $RESULTS"
