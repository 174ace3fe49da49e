// llama_cpp_run.mjs: runs a GGUF model in llama.cpp (npm node-llama-cpp) and prints, as
// JSON, what scripts/check_llama_cpp.sh compares with monolith: for each prompt, llama.cpp's
// tokens of the prompt text, its greedy continuation, and at each generated step the
// probability of every vocabulary entry (evaluateWithMetadata, temperature 0).
//
//   node scripts/llama_cpp_run.mjs MODEL.gguf STEPS PROMPTS.json    (NODE_PATH = the install's node_modules)
//
// PROMPTS.json: [{"text": "...", "ids": [monolith's ids of the text]}]. The continuation
// starts from monolith's ids, so a tokenizer difference shows in the tokens field alone.
// LLAMA_KV=F32 (default here) or F16 (llama.cpp's own default) chooses the type of
// llama.cpp's KV cache; flash attention is off.
import fs from "node:fs";
import { createRequire } from "node:module";

const [modelPath, stepsArg, promptsPath] = process.argv.slice(2);
const require = createRequire(process.env.NODE_PATH.split(":")[0] + "/");
const { getLlama, LlamaLogLevel } = await import(require.resolve("node-llama-cpp"));

const llama = await getLlama({ gpu: false, build: "never", logLevel: LlamaLogLevel.error });
const model = await llama.loadModel({ modelPath });
const steps = Number(stepsArg);
const out = { model: modelPath, vocab: model.tokens.length ?? null, prompts: [] };
for (const p of JSON.parse(fs.readFileSync(promptsPath, "utf8"))) {
  const kv = process.env.LLAMA_KV || "F32";
  const context = await model.createContext({ contextSize: 256, threads: 1, batchSize: 256, flashAttention: false,
                                              experimentalKvCacheKeyType: kv, experimentalKvCacheValueType: kv });
  const seq = context.getSequence();
  const rec = { text: p.text, tokens: Array.from(model.tokenize(p.text, false)), continuation: [], probs: [] };
  const it = seq.evaluateWithMetadata(p.ids, { probabilities: true }, { temperature: 0 });
  for await (const step of it) {
    rec.continuation.push(step.token);
    // All probabilities as [id, p] pairs above 1e-12 (the rest count as 0).
    rec.probs.push(Array.from(step.probabilities.entries()).filter(([, q]) => q > 1e-12));
    if (rec.continuation.length >= steps) break;
  }
  out.prompts.push(rec);
  await context.dispose();
}
await model.dispose();
console.log(JSON.stringify(out));
