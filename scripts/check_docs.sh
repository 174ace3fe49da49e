#!/usr/bin/env bash
# check_docs.sh: runs the command blocks of docs/ as a newcomer would, in a scratch clone
# of this checkout's HEAD: the fenced ```sh and ```bash blocks of each page, in order, each
# in a bash with -e and pipefail from the clone's top folder (the folder every page's
# commands start from), with the variables the page's earlier blocks set. Pages go in the order a reader meets them, so the files one page
# makes (data/corpora/*.h5, runs/...) are there for the next.
#
# A block whose first line is
#     # check_docs: skip (REASON)
# is listed as skipped, not run: the mark is in the page, for the reader too. Blocks that
# need hours, a cluster, a download of hundreds of MB or a path the reader picks carry it.
# A block that shows a refusal starts with
#     # check_docs: refused (WHAT)
# and passes when it stops with an error (its other commands must still work).
# The pages of measurements (benchmarks, experiments) re-run hours of benchmarks and
# experiments: they run only when named.
#
#   scripts/check_docs.sh [--dir DIR] [--keep] [PAGE.md...]
#
# DIR (default: a new folder under /tmp) receives the clone; --keep leaves it. With no
# PAGE, every page of docs/ in reading order. Builds the clone first (cmake, as the README
# says). Prints one line per block (ok, FAILED, skipped) and the failed blocks' last
# output lines; exits 1 when a block failed.
set -uo pipefail
cd "$(dirname "$0")/.."

order=(data training inference modules interop distributed threading reliability architecture design formats
       kernels)
measured=(benchmarks experiments)
dir="" keep=0 pages=()
while [ $# -gt 0 ]; do
  case "$1" in
    --dir) dir=${2:?--dir needs a folder}; shift 2 ;;
    --keep) keep=1; shift ;;
    -h|--help) sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) echo "check_docs.sh: unknown flag '$1' (--dir DIR, --keep, PAGE.md...)" >&2; exit 2 ;;
    *) pages+=("$(basename "$1" .md)"); shift ;;
  esac
done
if [ ${#pages[@]} -eq 0 ]; then
  for p in "${order[@]}"; do [ -f "docs/$p.md" ] && pages+=("$p"); done
  for f in docs/*.md; do  # a page missing from the order still runs, last
    p=$(basename "$f" .md)
    [[ " ${order[*]} ${measured[*]} " == *" $p "* ]] || pages+=("$p")
  done
fi
for p in "${pages[@]}"; do
  [ -f "docs/$p.md" ] || { echo "check_docs.sh: no page docs/$p.md" >&2; exit 2; }
done

src=$(pwd)
if [ -z "$dir" ]; then dir=$(mktemp -d /tmp/check_docs.XXXXXX); fi
[ -e "$dir/.git" ] || git clone -q "$src" "$dir" || { echo "check_docs.sh: cannot clone into $dir" >&2; exit 1; }
[ $keep -eq 1 ] || [ -z "${dir##/tmp/check_docs.*}" ] || keep=1  # never delete a folder the caller named
log=$dir/.check_docs
mkdir -p "$log"
cd "$dir"
echo "check_docs.sh: in $dir ($(git log --oneline -1 | cut -c1-60))"
if [ ! -x build/monolith ]; then
  echo "build: cmake -S . -B build && cmake --build build -j"
  { cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo && cmake --build build -j"$(nproc)"; } >"$log/build" 2>&1 ||
    { tail -n 20 "$log/build"; echo "check_docs.sh: the build failed" >&2; exit 1; }
fi

# Splits PAGE into blocks: $log/PAGE.N.sh (the block) and a line "N LINE" per block.
split() {
  awk -v out="$log/$1" '
    /^```(sh|bash)[ \t]*$/ && !inb { inb = 1; n++; f = out "." n ".sh"; printf "" > f; print n, NR + 1; next }
    /^```/ && inb { inb = 0; close(f); next }
    inb { print > f }
  ' "docs/$1.md"
}

failed=0 ran=0 skipped=0
for p in "${pages[@]}"; do
  : >"$log/$p.vars"
  while read -r n line; do
    b=$log/$p.$n.sh
    where="docs/$p.md:$line"
    first=$(sed -n '1p' "$b")
    if [[ "$first" == "# check_docs: skip"* ]]; then
      echo "skipped  $where ${first#\# check_docs: skip}"
      skipped=$((skipped + 1))
      continue
    fi
    t0=$(date +%s)
    # The shell variables a block sets stay for the page's next blocks (as in a reader's
    # terminal); every block starts from the clone's top folder.
    refused=0
    [[ "$first" == "# check_docs: refused"* ]] && refused=1
    bash -c 'source "$1" 2>/dev/null; compgen -v | sort >"$1.before"; set -eo pipefail; source "$2"; set +e
             for v in $(compgen -v | sort | comm -13 "$1.before" -); do declare -p "$v"; done >>"$1"' \
      _ "$log/$p.vars" "$b" >"$b.out" 2>&1 </dev/null  # (mpirun forwards stdin: it would eat the list of blocks)
    rc=$?
    if [ $((rc != 0)) -eq $refused ]; then
      echo "ok       $where ($(( $(date +%s) - t0 )) s)$([ $refused -eq 1 ] && echo ", refused as the page shows")"
    else
      echo "FAILED   $where ($(( $(date +%s) - t0 )) s): $(head -c 200 "$b" | head -n 1)"
      tail -n 8 "$b.out" | sed 's/^/         | /'
      failed=$((failed + 1))
    fi
    ran=$((ran + 1))
  done < <(split "$p")
done
echo "check_docs.sh: $ran blocks run, $failed failed, $skipped skipped"
[ $keep -eq 1 ] || { cd /; rm -rf "$dir"; }
[ $failed -eq 0 ]
