#!/usr/bin/env bash
# The working tree that travels to a lent GPU machine (tracked files plus untracked files git does
# not ignore; the project's device tool takes at most 64 MiB) and how to make room in it for the
# Python wheels that machine lacks (PyAV, zstandard, constriction: about 41 MB).
#
#   scripts/device_tree.sh size              bytes that would travel now
#   scripts/device_tree.sh wheels            download those wheels into .whl/ (git-ignored locally)
#   scripts/device_tree.sh slim [PRESET]     untrack every shipped weights file except PRESET's
#                                            (default: the default preset) and its coder 3 prior
#   scripts/device_tree.sh restore           undo slim: the weights are tracked again
#
# slim only changes the index and .git/info/exclude (the files stay on disk). Do not commit while
# slim: the commit would delete the weights. `restore` puts everything back; `status` shows it.
set -euo pipefail
cd "$(git rev-parse --show-toplevel)"
EXCLUDE="$(git rev-parse --git-path info/exclude)"
BEGIN="# scripts/device_tree.sh slim: begin"
END="# scripts/device_tree.sh slim: end"
PY=$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python3)

travelling_bytes() {
  { git ls-files -z; git ls-files -z --others --exclude-standard; } \
    | xargs -0 -r stat -c %s -- 2>/dev/null | awk '{s += $1} END {printf "%d\n", s}' || true
}

is_slim() { [ -f "$EXCLUDE" ] && grep -qxF "$BEGIN" "$EXCLUDE"; }

case "${1:-}" in
  size)
    bytes=$(travelling_bytes)
    echo "$bytes bytes would travel ($((bytes / 1048576)) MiB of 64, before carried paths such as .whl)$(is_slim && echo ', tree is slim')"
    ;;
  wheels)
    mkdir -p "$(dirname "$EXCLUDE")"
    grep -qxF "/.whl/" "$EXCLUDE" 2>/dev/null || echo "/.whl/" >> "$EXCLUDE"
    "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
      --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
      -d .whl "av==$("$PY" -c 'import av; print(av.__version__)')" \
      "zstandard==$("$PY" -c 'import zstandard; print(zstandard.__version__)')" \
      "constriction==$("$PY" -c 'from importlib.metadata import version; print(version("constriction"))')"
    du -sh .whl
    ;;
  slim)
    if is_slim; then echo "already slim (scripts/device_tree.sh restore first)" >&2; exit 1; fi
    if ! git diff --cached --quiet -- tokcodec/weights; then
      echo "tokcodec/weights has staged changes: commit or unstage them first" >&2; exit 1
    fi
    preset="$("$PY" -c 'import sys; from tokcodec.model.presets import resolve_name; print(resolve_name(sys.argv[1]))' \
      "${2:-default}")"
    if ! git ls-files --error-unmatch "tokcodec/weights/$preset.safetensors" > /dev/null 2>&1; then
      echo "no tracked weights file tokcodec/weights/$preset.safetensors to keep" >&2; exit 1
    fi
    mapfile -t drop < <(git ls-files tokcodec/weights | grep -E '\.(safetensors|xdelta)$' \
      | grep -vxF -e "tokcodec/weights/$preset.safetensors" -e "tokcodec/weights/$preset.coder3.safetensors")
    if [ "${#drop[@]}" -eq 0 ]; then echo "nothing to untrack"; exit 0; fi
    mkdir -p "$(dirname "$EXCLUDE")"  # the marked block first: restore then always finds it
    { echo "$BEGIN"; printf '/%s\n' "${drop[@]}"; echo "$END"; } >> "$EXCLUDE"
    git rm -q --cached -- "${drop[@]}"
    echo "untracked ${#drop[@]} weights files (kept: $preset); $(travelling_bytes) bytes would travel"
    echo "DO NOT COMMIT until: scripts/device_tree.sh restore"
    ;;
  restore)
    if ! is_slim; then echo "not slim: nothing to restore"; exit 0; fi
    git reset -q -- tokcodec/weights
    awk -v b="$BEGIN" -v e="$END" '$0 == b {skip = 1; next} $0 == e {skip = 0; next} !skip' "$EXCLUDE" \
      > "$EXCLUDE.tmp" && mv "$EXCLUDE.tmp" "$EXCLUDE"
    echo "weights tracked again; $(travelling_bytes) bytes would travel"
    ;;
  *)
    sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
    ;;
esac
