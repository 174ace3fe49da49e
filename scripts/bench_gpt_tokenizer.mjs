// bench_gpt_tokenizer.mjs: times npm gpt-tokenizer (GPT-2's r50k_base) encoding a text
// file, the reference that `monolith bench tokenizer` is compared with in
// docs/benchmarks.md. gpt-tokenizer comes from scripts/fetch_gpt_tokenizer.sh (data/npm/).
//
//   node scripts/bench_gpt_tokenizer.mjs FILE [--seconds S] [--ids]
//
// Prints one line: bytes, tokens, MB/s wall and MB per CPU-second (10^6 bytes per second
// of encode, best of the repetitions run in S seconds, default 3; the file is read and decoded from UTF-8 before
// timing). --ids prints the token ids instead, space-separated on one line, for
// comparing with `monolith tokenizer encode` (only meaningful on valid UTF-8: JavaScript
// strings replace ill-formed bytes with U+FFFD).
import { readFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')
const args = process.argv.slice(2)
const file = args.find((a, i) => !a.startsWith('--') && args[i - 1] !== '--seconds')
if (!file) {
  console.error('usage: node scripts/bench_gpt_tokenizer.mjs FILE [--seconds S] [--ids]')
  process.exit(2)
}
const si = args.indexOf('--seconds')
const seconds = si >= 0 ? Number(args[si + 1]) : 3

const mod = await import(join(root, 'data/npm/node_modules/gpt-tokenizer/esm/encoding/r50k_base.js'))
const encode = mod.encode
const bytes = readFileSync(file)
const text = bytes.toString('utf8')
// Special-token text is plain text, as in `monolith tokenizer encode` without --allow-special.
const opts = { disallowedSpecial: new Set() }

if (args.includes('--ids')) {
  process.stdout.write(encode(text, opts).join(' ') + '\n')
  process.exit(0)
}

// Wall time and this process's CPU time (user + system): on a shared machine the CPU
// rate is the stable one. The garbage collector's helper threads count as CPU too.
let best = Infinity
let bestCpu = Infinity
let tokens = 0
const until = performance.now() + seconds * 1000
let reps = 0
do {
  const t0 = performance.now()
  const c0 = process.cpuUsage()
  tokens = encode(text, opts).length
  const dt = (performance.now() - t0) / 1000
  const c = process.cpuUsage(c0)
  const dc = (c.user + c.system) / 1e6
  if (dt < best) best = dt
  if (dc < bestCpu) bestCpu = dc
  reps++
} while (performance.now() < until || reps < 2)
console.log(`gpt-tokenizer r50k_base: ${bytes.length} bytes, ${tokens} tokens, ` +
  `${(bytes.length / 1e6 / best).toFixed(2)} MB/s wall, ${(bytes.length / 1e6 / bestCpu).toFixed(2)} MB per CPU-second ` +
  `(best of ${reps}, node ${process.version})`)
