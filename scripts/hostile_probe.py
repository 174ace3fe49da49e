#!/usr/bin/env python3
"""hostile_probe.py: drive the real monolith binary through bad inputs and faults, and
classify every result against docs/reliability.md's promises.

Each case runs one command (with a timeout) and is judged:
  crash      killed by a signal, an exit status outside 0/1/2/130, or a sanitizer report
  hang       still running at the timeout (a run that may legitimately be long is sent
             SIGINT and must stop within 20 s; then it is "long", which is fine)
  accepted   exit 0 on input that is wrong whatever the rest of the command
  multiline  a refusal whose stderr is not exactly one error line (notes aside; train's
             and the pipeline's progress lines before the error aside), or junk from a
             library (HDF5-DIAG, OpenBLAS, a usage text)
  leftover   a refused or failed command left a *.tmp, a zero-byte file, or its -o output
  rawout     output holds control characters that came from a name or a value
  lost       a fault (kill -9, a second run on the same folder) lost work or blocked
             the folder for good
  unchanged  an input file was modified by a command that only reads it

Usage: scripts/hostile_probe.py [--bin build/monolith] [--quick] [--only REGEX] [-v]
  --quick   a fixed subset (the ctest `hostile_probe_quick`, seconds)
  --only    run only the cases whose name matches REGEX
  -v        print every case, not only the failures
Exit status: 0 when no case failed. Needs python3 with h5py and numpy.
"""
import argparse
import hashlib
import os
import random
import re
import resource
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time

try:
    import h5py
    import numpy as np
except ImportError:  # Debian's python3-h5py is for the system python (scripts/setup.sh)
    if sys.executable != "/usr/bin/python3" and os.path.exists("/usr/bin/python3"):
        os.execv("/usr/bin/python3", ["/usr/bin/python3"] + sys.argv)
    raise

SRC = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# ------------------------------------------------------------------ running one case

JUNK = re.compile(r"HDF5-DIAG|#0\d\d: |blas_thread_init|BLAS : Program|AddressSanitizer|UndefinedBehavior|runtime error:|"
                  r"Segmentation|core dumped|malloc\(\)|free\(\)|double free|^usage:|^  --|Aborted|"
                  r"terminate called|stack smashing", re.M)
CTRL = re.compile(rb"[\x00-\x08\x0b-\x1f\x7f]")


class Case:
    def __init__(self, name, argv, expect="refuse", out=None, stdin=None, stdout=None, limits=None, timeout=30,
                 may_run_long=False, chatty=False, check_stdout_ctrl=True, cwd=None, after=None):
        self.name, self.argv, self.expect, self.out = name, argv, expect, out
        self.stdin, self.stdout, self.limits, self.timeout = stdin, stdout, limits or {}, timeout
        self.may_run_long, self.chatty, self.check_stdout_ctrl = may_run_long, chatty, check_stdout_ctrl
        if len(argv) > 1 and argv[1] == "generate":
            self.check_stdout_ctrl = False  # generated text is the model's bytes, as they are
        if len(argv) > 1 and (argv[1] in ("train", "pipeline") or argv[1:3] in (["data", "prepare"],
                                                                              ["tokenizer", "train"])):
            self.chatty = True  # progress lines on stderr before an error are not part of it
        self.cwd, self.after = cwd, after


def preexec(limits):
    def f():
        os.setsid()
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a full file returns EFBIG, as a full disk would
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
        for what, v in limits.items():
            resource.setrlimit(what, (v, v))
        os.nice(10)
    return f


def run(argv, timeout, limits=None, stdin=None, stdout=None, cwd=None, may_run_long=False, env=None):
    """Returns (rc or 'hang' or 'long', stdout bytes, stderr bytes, seconds)."""
    t0 = time.time()
    so = open(stdout, "wb") if stdout else subprocess.PIPE
    si = open(stdin, "rb") if isinstance(stdin, str) else subprocess.DEVNULL
    p = subprocess.Popen(argv, stdin=si, stdout=so, stderr=subprocess.PIPE, preexec_fn=preexec(limits or {}),
                         restore_signals=False, cwd=cwd, env=env)
    try:
        out, err = p.communicate(timeout=timeout)
        rc = p.returncode
    except subprocess.TimeoutExpired:
        rc = "hang"
        if may_run_long:
            os.killpg(p.pid, signal.SIGINT)
            try:
                out, err = p.communicate(timeout=20)
                rc = "long" if p.returncode in (0, 130) else "hang"
            except subprocess.TimeoutExpired:
                pass
        if p.returncode is None:
            os.killpg(p.pid, signal.SIGKILL)
            out, err = p.communicate()
    finally:
        if stdout:
            so.close()
        if isinstance(stdin, str):
            si.close()
    return rc, out or b"", err or b"", time.time() - t0


def error_lines(err, chatty):
    lines = [l for l in err.decode("utf-8", "replace").split("\n") if l.strip()]
    lines = [l for l in lines if not l.startswith("note: ") and not l.startswith("monolith: prompt ")]
    if chatty:  # progress before the error is not part of it
        return [l for l in lines if l.startswith("monolith")] or lines[-1:]
    return lines


def snapshot(d):
    return set(os.listdir(d)) if os.path.isdir(d) else set()


def leftovers(root, before):
    bad = []
    for dp, dn, fn in os.walk(root):
        for f in fn:
            p = os.path.join(dp, f)
            rel = os.path.relpath(p, root)
            if rel.split(os.sep)[0] in before:
                continue
            if f.endswith(".tmp"):
                bad.append(rel + " (.tmp)")
            elif f not in ("run.lock", "metrics.jsonl") and os.path.isfile(p) and os.path.getsize(p) == 0:
                bad.append(rel + " (zero bytes)")
    return bad


def judge(c, work):
    """Runs case c; returns (verdict, detail). verdict 'ok' or one of the failure kinds."""
    scratch = c.cwd or work
    before = snapshot(scratch)
    rc, out, err, secs = run(c.argv, c.timeout, c.limits, c.stdin, c.stdout, scratch, c.may_run_long)
    text = err.decode("utf-8", "replace")
    lines = error_lines(err, c.chatty)
    if rc == "hang":
        return "hang", "no exit after %d s" % c.timeout
    if rc == "long":
        return "ok", "long run, stopped by SIGINT"
    if rc == 127 and len(lines) == 1 and "error while loading shared libraries" in lines[0] and c.limits:
        # ld.so could not map a library under the limit, before any monolith code runs:
        # one line, nothing written (docs/reliability.md, known and not ours)
        return "ok", "the dynamic loader: " + lines[0]
    if rc < 0 or rc not in (0, 1, 2, 130) or re.search(r"AddressSanitizer|runtime error:|LeakSanitizer", text):
        return "crash", "exit %s: %s" % (rc if rc >= 0 else "signal %d" % -rc, text[-400:])
    if JUNK.search(text):
        return "multiline", "library or usage text on stderr: " + text[:400]
    if c.check_stdout_ctrl and c.stdout is None and CTRL.search(out):
        return "rawout", "control character on stdout: %r" % out[:200]
    if rc == 0:
        if c.expect == "refuse":
            return "accepted", "exit 0: " + text[-300:]
        if c.after:
            v = c.after(out, err)
            if v:
                return v
        return "ok", ""
    if c.expect == "succeed":
        return "refused", "exit %d: %s" % (rc, text[-400:])
    if len(lines) != 1:
        return "multiline", "%d lines: %s" % (len(lines), text[:600])
    if not lines[0].startswith("monolith"):
        return "multiline", "not a monolith error line: " + lines[0][:300]
    left = leftovers(scratch, before)
    if c.out and os.path.exists(c.out) and os.path.basename(c.out) not in before and not os.path.isdir(c.out):
        left.append(os.path.basename(c.out) + " (the refused command's output)")
    if left:
        return "leftover", ", ".join(left) + " after: " + lines[0][:200]
    return "ok", lines[0]


# ------------------------------------------------------------------ fixtures

def sh(argv, **kw):
    r = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw)
    if r.returncode:
        sys.exit("hostile_probe: setup failed: %s\n%s" % (" ".join(argv), r.stderr.decode()[-2000:]))
    return r


def fixtures(B, fx):
    tok = os.path.join(SRC, "tests/fuzz/vocab.tiktoken")
    shutil.copy(tok, fx + "/tok.tiktoken")
    text = fx + "/text.txt"
    with open(text, "w") as f:
        for n in ("engine/moe.c", "engine/router.c", "engine/base/h5io.c"):
            f.write(open(os.path.join(SRC, n)).read())
    os.makedirs(fx + "/textdir")
    shutil.copy(text, fx + "/textdir/a.txt")
    T = dict(tok=fx + "/tok.tiktoken", text=text, textdir=fx + "/textdir")
    sh([B, "data", "prepare", "--tokenizer", T["tok"], "--domain", "code", "--val-fraction", "0.2", "--input",
        os.path.join(SRC, "engine"), "-o", fx + "/code.h5"])
    T["code"] = fx + "/code.h5"
    shutil.copy(T["code"], fx + "/code2.h5")
    T["code2"] = fx + "/code2.h5"
    run_dir = fx + "/run"
    sh([B, "train", "--preset", "tiny", "--tokenizer", T["tok"], "--data", "code=" + T["code"], "--batch", "2",
        "--seq", "16", "--warmup", "1", "--eval-every", "0", "--eval-batches", "1", "--threads", "1", "--steps",
        "2", "--save-every", "1", "--out", run_dir])
    T["run"] = run_dir
    T["ck"] = run_dir + "/ckpt-00000002.h5"
    sh([B, "expert", "extract", T["ck"], "--expert", "0", "-o", fx + "/mod.h5"])
    T["mod"] = fx + "/mod.h5"
    sh([B, "init", "--preset", "tiny", "--moe-layers", "0,0", "-o", fx + "/dense.h5"])
    T["dense"] = fx + "/dense.h5"
    with h5py.File(fx + "/batch.h5", "w", libver=("v108", "v108")) as f:
        f["tokens"] = np.random.default_rng(0).integers(0, 500, size=(2, 9)).astype(np.int32)
    T["batch"] = fx + "/batch.h5"
    with open(fx + "/ids.txt", "w") as f:
        f.write("1 2 3 40 50\n")
    T["ids"] = fx + "/ids.txt"
    # interop files: the tiny MoE as GGUF and as a Hugging Face folder, when its config allows
    r = subprocess.run([B, "export", "gguf", T["ck"], "-o", fx + "/m.gguf"], capture_output=True)
    T["gguf"] = fx + "/m.gguf" if r.returncode == 0 else None
    r = subprocess.run([B, "export", "hf", T["ck"], fx + "/hf"], capture_output=True)
    T["hf"] = fx + "/hf" if r.returncode == 0 else None
    with open(fx + "/train.ini", "w") as f:
        f.write("steps = 2\nbatch = 2\nseq = 16\n")
    T["ini"] = fx + "/train.ini"
    os.mkfifo(fx + "/fifo")
    T["fifo"] = fx + "/fifo"
    return T


# bad files of any kind, made from a good one
def file_variants(good, d, kind):
    v = {}
    data = open(good, "rb").read() if os.path.isfile(good) else b""
    v["missing"] = d + "/missing"
    p = d + "/empty"
    open(p, "wb").close()
    v["empty"] = p
    os.makedirs(d + "/a_dir", exist_ok=True)
    v["directory"] = d + "/a_dir"
    v["fifo"] = d + "/fifo"
    if not os.path.exists(v["fifo"]):
        os.mkfifo(v["fifo"])
    v["dev_zero"] = "/dev/zero"
    v["dev_null"] = "/dev/null"
    p = d + "/dangling"
    if not os.path.lexists(p):
        os.symlink(d + "/nowhere", p)
    v["dangling_symlink"] = p
    p = d + "/loop"
    if not os.path.lexists(p):
        os.symlink(p, p)
    v["symlink_loop"] = p
    p = d + "/to_zero"
    if not os.path.lexists(p):
        os.symlink("/dev/zero", p)
    v["symlink_to_dev_zero"] = p
    if data:
        for frac in (0.02, 0.5, 0.98):
            p = d + "/trunc%g" % frac
            open(p, "wb").write(data[: int(len(data) * frac)])
            v["truncated_%g" % frac] = p
        rng = random.Random(len(data))
        for k in range(3):
            b = bytearray(data)
            pos = rng.randrange(0, min(len(b), 4096)) if k < 2 else rng.randrange(0, len(b))
            b[pos] ^= 1 << rng.randrange(8)
            p = d + "/flip%d" % k
            open(p, "wb").write(bytes(b))
            v["bitflip_%d@%d" % (k, pos)] = p
        p = d + "/garbage"
        open(p, "wb").write(bytes(random.Random(1).getrandbits(8) for _ in range(min(len(data), 8192))))
        v["random_bytes"] = p
    p = d + "/text"
    open(p, "w").write("this is not the file you are looking for\n")
    v["text_file"] = p
    p = d + "/sparse"
    with open(p, "wb") as f:  # 300 MB claimed, nothing stored
        f.truncate(300 << 20)
    v["sparse_300MB"] = p
    return v


def ck_variants(ck, d):
    """HDF5 structural damage to a checkpoint (h5py), each a separate file."""
    out = {}

    def make(name, fn):
        p = "%s/%s.h5" % (d, name)
        shutil.copy(ck, p)
        try:
            with h5py.File(p, "r+") as f:
                fn(f, p)
        except Exception as e:  # a variant h5py cannot make is skipped, not a failure
            print("hostile_probe: note: variant %s not made: %s" % (name, e))
            return
        out[name] = p

    def retype(dtype):
        def f(h, p):
            x = h["model/norm"][()]
            del h["model/norm"]
            h.create_dataset("model/norm", data=x.astype(dtype))
        return f

    def reshape(h, p):
        x = h["model/norm"][()]
        del h["model/norm"]
        h.create_dataset("model/norm", data=np.concatenate([x, x]))

    def huge(h, p):
        del h["model/norm"]
        h.create_dataset("model/norm", shape=(1 << 40,), dtype="f4", chunks=(1 << 16,), maxshape=(None,))

    def bomb(h, p):  # gzip of zeros: little stored, a lot declared
        x = h["model/norm"][()]
        del h["model/norm"]
        h.create_dataset("model/norm", shape=(1 << 28,), dtype="f4", chunks=(1 << 22,), compression="gzip",
                         data=None, fillvalue=0)
        h["model/norm"][: 1 << 22] = 0

    def soft(h, p):
        h["model/extra"] = h5py.SoftLink("/model/norm")

    def soft_replace(h, p):
        del h["model/norm"]
        h["model/norm"] = h5py.SoftLink("/model/output")

    def ext(h, p):
        h["model/extra"] = h5py.ExternalLink(d + "/fifo", "/x")

    def ext_replace(h, p):
        del h["model/norm"]
        h["model/norm"] = h5py.ExternalLink(ck, "/model/norm")

    def vds(h, p):
        x = h["model/norm"][()]
        del h["model/norm"]
        src = d + "/vds_src.h5"
        with h5py.File(src, "w") as s:
            s["x"] = x
        lay = h5py.VirtualLayout(shape=x.shape, dtype=x.dtype)
        lay[:] = h5py.VirtualSource(src, "x", shape=x.shape)
        h.create_virtual_dataset("model/norm", lay)

    def vlen_attr(h, p):
        a = h.attrs["format"]
        h.attrs.modify("format", a)
        del h.attrs["format"]
        h.attrs.create("format", "monolith-checkpoint", dtype=h5py.string_dtype())

    def attr_int(h, p):
        del h.attrs["format"]
        h.attrs["format"] = 7

    def no_config(h, p):
        del h["config"]

    def nan_weight(h, p):
        d_ = h["model/norm"]
        x = d_[()]
        x[0] = np.nan
        d_[...] = x

    def inf_weight(h, p):
        d_ = h["model/output"]
        x = d_[()]
        x.flat[0] = np.inf
        d_[...] = x

    def inf_logits(h, p):  # finite weights whose logits overflow float
        h["model/output"][...] = np.float32(3e38)
        h["model/norm"][...] = np.float32(1e4)

    def huge_weights(h, p):
        d_ = h["model/output"]
        d_[...] = (np.random.default_rng(0).standard_normal(d_.shape) * 1e37).astype(np.float32)

    def cfg_attr(key, val):
        def f(h, p):
            g = h["config"]
            if key in g.attrs:
                dt = g.attrs[key].dtype
                g.attrs.modify(key, np.array(val).astype(dt))
            else:
                raise KeyError(key)
        return f

    def ctrl_name(h, p):
        h["model"].create_group("bad\x1b[31mname\n")

    def no_model(h, p):
        del h["model"]

    def no_tokenizer(h, p):
        del h["tokenizer"]

    def deep(h, p):
        g = h["model"]
        for i in range(200):
            g = g.create_group("g")

    make("dtype_f64", retype("f8"))
    make("dtype_i32", retype("i4"))
    make("dtype_f16", retype("f2"))
    make("shape_doubled", reshape)
    make("huge_declared", huge)
    make("gzip_bomb", bomb)
    make("soft_link", soft)
    make("soft_link_tensor", soft_replace)
    make("external_link_fifo", ext)
    make("external_link_tensor", ext_replace)
    make("virtual_dataset", vds)
    make("vlen_string_attr", vlen_attr)
    make("format_attr_int", attr_int)
    make("no_config", no_config)
    make("nan_weight", nan_weight)
    make("inf_weight", inf_weight)
    make("huge_weights", huge_weights)
    make("inf_logits", inf_logits)
    make("ctrl_object_name", ctrl_name)
    make("no_model", no_model)
    make("no_tokenizer", no_tokenizer)
    make("deep_groups", deep)
    for key, val in (("n_layers", -1), ("n_layers", 1 << 30), ("vocab_size", 0), ("vocab_size", (1 << 31) - 1),
                     ("n_experts", 0), ("top_k", 99), ("d_model", 3), ("rope_theta", np.inf), ("norm_eps", np.nan),
                     ("max_seq_len", 1 << 30), ("n_heads", 0)):
        make("config_%s=%s" % (key, val), cfg_attr(key, val))
    return out


def tokset_variants(code, d):
    out = {}

    def make(name, fn):
        p = "%s/%s.h5" % (d, name)
        shutil.copy(code, p)
        try:
            with h5py.File(p, "r+") as f:
                fn(f)
        except Exception as e:
            print("hostile_probe: note: variant %s not made: %s" % (name, e))
            return
        out[name] = p

    def set_tokens(split, arr):
        def f(h):
            del h[split + "/tokens"]
            h.create_dataset(split + "/tokens", data=arr)
        return f

    n = 4096
    make("ids_past_vocab", set_tokens("train", np.full(n, 1 << 30, dtype=np.uint32)))
    make("ids_negative", set_tokens("train", np.full(n, -1, dtype=np.int32)))
    make("ids_float", set_tokens("train", np.ones(n, dtype=np.float32)))
    make("ids_rank2", set_tokens("train", np.ones((64, 64), dtype=np.uint32)))
    make("train_empty", set_tokens("train", np.zeros(0, dtype=np.uint32)))
    make("val_empty", set_tokens("val", np.zeros(0, dtype=np.uint32)))
    make("val_one_token", set_tokens("val", np.ones(1, dtype=np.uint32)))

    def no_val(h):
        del h["val"]

    def huge_declared(h):
        del h["val/tokens"]
        h.create_dataset("val/tokens", shape=(1 << 40,), dtype="u4", chunks=(1 << 16,), maxshape=(None,))

    def bomb(h):
        del h["val/tokens"]
        h.create_dataset("val/tokens", shape=(1 << 30,), dtype="u4", chunks=(1 << 22,), compression="gzip")
        h["val/tokens"][: 1 << 22] = 1

    def soft(h):
        del h["val/tokens"]
        h["val/tokens"] = h5py.SoftLink("/train/tokens")

    make("no_val", no_val)
    make("val_huge_declared", huge_declared)
    make("val_gzip_bomb", bomb)
    make("val_soft_link", soft)
    return out


def tiktoken_variants(tok, d):
    lines = open(tok, "rb").read().split(b"\n")
    out = {}

    def make(name, data):
        p = "%s/%s.tiktoken" % (d, name)
        open(p, "wb").write(data)
        out[name] = p

    make("bad_base64", b"\n".join(lines[:50] + [b"!!!! 50"] + lines[51:]))
    make("duplicate_rank", b"\n".join(lines[:50] + [lines[10]] + lines[51:]))
    make("rank_gap", b"\n".join(l for i, l in enumerate(lines) if i != 300))
    make("huge_rank", b"\n".join(lines[:50] + [lines[50].split(b" ")[0] + b" 99999999999999999999"]))
    make("long_line", b"\n".join(lines[:50] + [b"QQ" * (5 << 20) + b" 50"]))
    make("nul_bytes", b"\0" * 4096)
    make("crlf", b"\r\n".join(lines))
    make("only_header", lines[0] + b"\n")
    return out


def ini_variants(d):
    out = {}

    def make(name, data):
        p = "%s/%s.ini" % (d, name)
        open(p, "wb").write(data)
        out[name] = p

    make("line_10MB", b"steps = " + b"9" * (10 << 20) + b"\n")
    make("nul_byte", b"steps = 2\0\nbatch = 2\n")
    make("unclosed_quote", b'out = "abc\n')
    make("bad_escape", b'out = "a\\qb"\n')
    make("unknown_key", b"stepz = 2\n")
    make("bad_value", b"steps = many\n")
    make("nan_value", b"lr = nan\n")
    make("section_garbage", b"[\x1b[31m\nsteps = 2\n")
    make("binary", bytes(random.Random(2).getrandbits(8) for _ in range(4096)))
    make("continuation", b"steps = 2\n  batch = 3\n")
    make("dup_keys", b"steps = 2\nsteps = 3\n")
    return out


# ------------------------------------------------------------------ the cases

# values no numeric flag may take; then by kind: whole numbers, floats
BAD_ALWAYS = ["abc", "", "nan", "inf", "1\n2", "\x1b[2J", "x" * 5000]
BAD_COUNT = ["-1", "99999999999999999999", "1.5"]
EDGE_COUNT = ["0", "2147483648", " 1"]
BAD_FLOAT = ["-inf", "1e999", "-1e39"]
EDGE_FLOAT = ["0", "-1", "1e-300", "1e-45", "1e39"]


def build_cases(B, T, d, quick):
    C = []
    ck, mod, tok, code = T["ck"], T["mod"], T["tok"], T["code"]
    n = [0]

    def outp(ext=".h5"):
        n[0] += 1
        return "%s/out%04d%s" % (d, n[0], ext)

    def add(name, argv, **kw):
        C.append(Case(name, [B] + argv, **kw))


    refs = {}

    def same_as(argv, bad, good, o):
        """An `after` check: stdout equal to the same command's on the good file (paths aside)."""
        def check(out, err):
            ref_argv = [good if x == bad else x for x in argv]
            if o:
                ref_argv = [x + ".ref" if x == o else x for x in ref_argv]
            key = tuple(ref_argv)
            if key not in refs:
                refs[key] = run([B] + ref_argv, 60, cwd=d)[1]
            norm = lambda b: re.sub(rb"[^\s]*(flip\d|good\.\w+|\.ref|out\d+\.\w+)[^\s]*", b"F", b)
            if norm(out) != norm(refs[key]):
                return "accepted", "a flipped bit read as a different file: %r" % out[:200]
            return None
        return check

    train_base = ["--batch", "2", "--seq", "16", "--warmup", "1", "--eval-every", "0", "--eval-batches", "1",
                  "--threads", "1", "--steps", "2", "--save-every", "0"]

    # --- readers of a checkpoint, given bad files and damaged HDF5
    vd = d + "/variants"
    os.makedirs(vd)
    fv = file_variants(ck, vd, "ckpt")
    good_ck = vd + "/good.h5"  # beside the variants: no run folder (metrics.jsonl) next to it either
    shutil.copy(ck, good_ck)
    cv = ck_variants(ck, vd)
    readers = {
        "inspect": lambda f: (["inspect", f], None),
        "expert_list": lambda f: (["expert", "list", f], None),
        "generate": lambda f: (["generate", "--checkpoint", f, "--prompt", "int", "--max-tokens", "3", "--threads",
                                "1"], None),
        "eval": lambda f: (["eval", "--checkpoint", f, "--data", "code=" + code, "--batches", "1", "--batch", "2",
                            "--seq", "16", "--threads", "1"], None),
        "expert_extract": lambda f: (lambda o: (["expert", "extract", f, "--expert", "0", "-o", o], o))(outp()),
        "expert_add": lambda f: (lambda o: (["expert", "add", f, "--init", "random", "--router-init", "random", "-o",
                                             o], o))(outp()),
        "compose": lambda f: (lambda o: (["compose", "--base", f, "--expert", mod, "--expert", mod, "-o", o],
                                         o))(outp()),
        "dump": lambda f: (lambda o: (["dump", "--checkpoint", f, "--tokens", T["batch"], "-o", o, "--threads", "1"],
                                      o))(outp()),
        "train_init": lambda f: (lambda o: (["train", "--init", f, "--data", "code=" + code] + train_base +
                                            ["--out", o], o))(outp("")),
        "export_gguf": lambda f: (lambda o: (["export", "gguf", f, "-o", o], o))(outp(".gguf")),
        "tokenizer_encode": lambda f: (["tokenizer", "encode", "--tokenizer", f, "--input", T["text"]], None),
    }
    for rname, mk in readers.items():
        variants = dict(fv)
        variants.update(cv)
        if rname in ("tokenizer_encode",):
            variants = {k: v for k, v in variants.items() if k in fv or k == "no_tokenizer"}
        for vname, path in variants.items():
            argv, o = mk(path)
            # Damage the model can survive (a non-finite weight only reaches some outputs, a NaN in
            # norm where the command never multiplies) is not judged as "accepted" for every reader:
            expect = "refuse"
            if vname in ("no_tokenizer",) and rname not in ("generate", "tokenizer_encode"):
                expect = "any"
            if vname in ("nan_weight", "inf_weight", "huge_weights") and rname in ("inspect", "expert_list",
                                                                                   "expert_extract", "expert_add",
                                                                                   "compose", "export_gguf"):
                expect = "any"
            if vname in ("huge_weights",) and rname in ("dump", "train_init", "generate"):
                expect = "any"  # finite logits: a (bad) model, not a broken file
            if vname == "inf_logits" and rname not in ("generate", "eval"):
                expect = "any"
            if vname == "config_max_seq_len=1073741824":
                expect = "any"  # a long context is a setting; what needs memory for it is checked there
            if vname in ("ctrl_object_name", "deep_groups"):
                expect = "any"  # extra objects no reader looks at
            after = None
            if vname.startswith("bitflip"):
                # A flip in unused file space is harmless: accepted only if it reads as the good file.
                expect = "any"
                after = same_as(argv, path, good_ck, o)
            C.append(Case("%s/%s" % (rname, vname), [B] + argv, expect=expect, out=o, timeout=20,
                          chatty=rname.startswith("train"), after=after))

    # --- token sets
    os.makedirs(d + "/tv")
    tv = file_variants(code, d + "/tv", "tokens")
    tv.update(tokset_variants(code, d + "/tv"))
    good_tv = d + "/tv/good.h5"
    shutil.copy(code, good_tv)
    for vname, path in tv.items():
        expect = "any" if vname.startswith("bitflip") or vname == "val_one_token" else "refuse"
        argv = ["eval", "--checkpoint", ck, "--data", "code=" + path, "--batches", "1", "--batch", "2", "--seq", "16",
                "--threads", "1"]
        add("eval_data/" + vname, argv, expect=expect, timeout=20,
            after=same_as(argv, "code=" + path, "code=" + good_tv, None) if vname.startswith("bitflip") else None)
        if vname in ("val_empty", "no_val", "val_huge_declared", "val_gzip_bomb", "val_one_token", "val_soft_link"):
            expect = "any" if vname in ("val_empty", "no_val", "val_one_token") else expect
        o = outp("")
        add("train_data/" + vname, ["train", "--preset", "tiny", "--tokenizer", tok, "--data", "code=" + path] +
            train_base + ["--out", o], expect=expect, out=o, timeout=20, chatty=True)
    # the dump batch
    os.makedirs(d + "/bv")
    bv = file_variants(T["batch"], d + "/bv", "batch")
    good_bv = d + "/bv/good.h5"
    shutil.copy(T["batch"], good_bv)
    for vname, path in bv.items():
        o = outp()
        argv = ["dump", "--checkpoint", ck, "--tokens", path, "-o", o, "--threads", "1"]
        flip = vname.startswith("bitflip")
        add("dump_tokens/" + vname, argv, out=o, expect="any" if flip else "refuse",
            after=same_as(argv, path, good_bv, o) if flip else None)
    # expert modules
    os.makedirs(d + "/mv")
    mv = file_variants(mod, d + "/mv", "module")
    good_mv = d + "/mv/good.h5"
    shutil.copy(mod, good_mv)
    for vname, path in mv.items():
        flip = vname.startswith("bitflip")
        e = "any" if flip else "refuse"
        for name, argv, o in (("expert_insert_module", ["expert", "insert", ck, path, "--slot", "0", "-o"], outp()),
                              ("compose_module", ["compose", "--base", ck, "--expert", path, "-o"], outp()),
                              ("expert_list_module", ["expert", "list", path], None)):
            argv = argv + [o] if o else argv
            add(name + "/" + vname, argv, out=o, expect=e, after=same_as(argv, path, good_mv, o) if flip else None)
    # tokenizers (.tiktoken) where one is read
    os.makedirs(d + "/kv")
    kv = file_variants(tok, d + "/kv", "tiktoken")
    kv.update(tiktoken_variants(tok, d + "/kv"))
    for vname, path in kv.items():
        # (a vocabulary cut at a line end is a smaller vocabulary: the format has no length to check)
        e = "any" if vname.startswith(("bitflip", "truncated")) or vname in ("crlf", "rank_gap") else "refuse"
        o = outp()
        add("data_prepare_tokenizer/" + vname, ["data", "prepare", "--tokenizer", path, "--domain", "x", "--input",
                                                T["text"], "-o", o], out=o, expect=e, timeout=20)
        add("tokenizer_encode/" + vname, ["tokenizer", "encode", "--tokenizer", path, "--input", T["text"]], expect=e,
            timeout=20)
        o = outp("")
        add("train_tokenizer/" + vname, ["train", "--preset", "tiny", "--tokenizer", path, "--data", "code=" + code] +
            train_base + ["--out", o], out=o, expect=e, chatty=True, timeout=20)
    # text inputs: unbounded streams and odd files
    os.makedirs(d + "/emptydir", exist_ok=True)
    for vname in ("missing", "directory", "fifo", "dev_zero", "dangling_symlink", "symlink_loop", "symlink_to_dev_zero",
                  "sparse_300MB", "empty"):
        path = fv[vname] if vname != "directory" else d + "/emptydir"
        e = "any" if vname in ("empty",) else "refuse"
        if vname != "sparse_300MB":  # (300 MB of text is long work for a corpus reader, not a fault)
            o = outp()
            add("data_prepare_input/" + vname, ["data", "prepare", "--tokenizer", tok, "--domain", "x", "--input",
                                                path, "-o", o], out=o, expect=e, timeout=20)
            add("tokenizer_encode_input/" + vname, ["tokenizer", "encode", "--tokenizer", tok, "--input", path],
                expect=e, timeout=20)
            add("tokenizer_decode_input/" + vname, ["tokenizer", "decode", "--tokenizer", tok, "--input", path],
                expect=e, timeout=20)
            o = outp(".tiktoken")
            add("tokenizer_train_input/" + vname, ["tokenizer", "train", "--vocab-size", "300", "--input", path,
                                                   "-o", o], out=o, expect=e, timeout=20)
        add("generate_prompt_file/" + vname, ["generate", "--checkpoint", ck, "--prompt-file", path, "--max-tokens",
                                              "2", "--threads", "1"], expect=e, timeout=20)
        add("train_config/" + vname, ["train", "--config", path, "--preset", "tiny", "--tokenizer", tok, "--data",
                                      "code=" + code] + train_base + ["--out", outp("")], expect=e, timeout=20,
            chatty=True)
        add("pipeline_config/" + vname, ["pipeline", "btx", "--config", path], expect="refuse", timeout=20)
    for vname, path in ini_variants(d).items():
        e = "any" if vname in ("dup_keys",) else "refuse"
        add("train_config/" + vname, ["train", "--config", path, "--preset", "tiny", "--tokenizer", tok, "--data",
                                      "code=" + code] + train_base + ["--out", outp("")], expect=e, timeout=20,
            chatty=True)
        add("pipeline_config/" + vname, ["pipeline", "btx", "--config", path], expect="refuse", timeout=20)
    # decode input: ids out of range, not numbers, huge numbers
    for name, data in (("past_vocab", b"1 2 99999\n"), ("negative", b"-1\n"), ("huge", b"9" * 100 + b"\n"),
                       ("letters", b"1 x 2\n"), ("ctrl", b"1\x1b2\n"), ("nul", b"1\x002\n")):
        p = "%s/ids_%s.txt" % (d, name)
        open(p, "wb").write(data)
        add("tokenizer_decode_ids/" + name, ["tokenizer", "decode", "--tokenizer", tok, "--input", p])
    # interop inputs
    if T["gguf"]:
        os.makedirs(d + "/gv")
        gv = file_variants(T["gguf"], d + "/gv", "gguf")
        for vname, path in gv.items():
            o = outp()
            add("import_gguf/" + vname, ["import", "gguf", path, "-o", o], out=o,
                expect="any" if vname.startswith("bitflip") else "refuse", timeout=20)
    if T["hf"]:
        for vname, path in fv.items():
            if vname in ("missing", "empty", "fifo", "dev_zero", "directory", "text_file"):
                o = outp()
                add("import_hf/" + vname, ["import", "hf", path, "-o", o], out=o)
        for fname in sorted(os.listdir(T["hf"])):
            for how in ("empty", "truncated", "garbage", "fifo"):
                hd = "%s/hf_%s_%s" % (d, fname, how)
                shutil.copytree(T["hf"], hd)
                p = os.path.join(hd, fname)
                raw = open(p, "rb").read()
                os.remove(p)
                if how == "fifo":
                    os.mkfifo(p)
                else:
                    open(p, "wb").write(b"" if how == "empty" else raw[: len(raw) // 2] if how == "truncated"
                                        else b"\xff\xfe{[" * 100)
                o = outp()
                e = "any" if fname == "generation_config.json" else "refuse"
                add("import_hf_file/%s/%s" % (fname, how), ["import", "hf", hd, "-o", o], out=o, expect=e, timeout=20)

    # --- every flag with bad values
    def flagcases(cmd, base, flags, chatty=False, may_run_long=(), out_flag=None, bad_extra=()):
        for flag, kind in flags:
            vals = list(BAD_ALWAYS) + list(bad_extra)
            if kind in ("count", "pos"):
                vals += BAD_COUNT + EDGE_COUNT
            elif kind in ("float", "prob"):
                vals += BAD_FLOAT + EDGE_FLOAT
            elif kind == "name":
                vals = ["", "a" * 5000, "\x1b]0;t\x07", "a\nb", "../../x", "-"]
            elif kind == "path":
                vals = ["", "/nonexistent/x", "/", "/dev/null", "/proc/self/mem", "x" * 5000, "a\nb"]
            for v in vals:
                argv = list(base)
                o = None
                if out_flag:
                    o = outp("" if cmd.startswith("train") else ".h5")
                    i = argv.index(out_flag)
                    argv[i + 1] = o
                if flag in argv:
                    argv[argv.index(flag) + 1] = v
                else:
                    argv += [flag, v]
                definitely = v in BAD_ALWAYS or v in bad_extra or (v in BAD_COUNT and kind in ("count", "pos")) or \
                    (v in BAD_FLOAT and kind in ("float", "prob")) or (kind == "prob" and v == "-1")
                if kind in ("name", "path"):
                    definitely = v in ("", "/nonexistent/x", "x" * 5000, "a\nb") and kind == "path"
                if kind == "str":
                    definitely = True
                e = "refuse" if definitely else "any"
                C.append(Case("%s %s=%r" % (cmd, flag, v[:40]), [B] + argv, expect=e, out=o,
                              timeout=25 if flag in may_run_long else 60, may_run_long=flag in may_run_long,
                              chatty=chatty))

    tb = ["train", "--preset", "tiny", "--tokenizer", tok, "--data", "code=" + code] + train_base + ["--out", "X"]
    flagcases("train", tb, [("--steps", "pos"), ("--batch", "pos"), ("--seq", "pos"), ("--grad-accum", "pos"),
                            ("--lr", "float"), ("--lr-floor", "float"), ("--warmup", "count"),
                            ("--weight-decay", "float"), ("--beta1", "prob"), ("--beta2", "prob"), ("--eps", "float"),
                            ("--clip", "float"), ("--seed", "count"), ("--eval-every", "count"),
                            ("--eval-batches", "pos"), ("--save-every", "count"), ("--log-every", "count"),
                            ("--keep", "pos"), ("--threads", "count"), ("--router-ce", "float"),
                            ("--n-experts", "pos"), ("--top-k", "pos"), ("--aux-coef", "float"),
                            ("--max-seq-len", "pos"),
                            ("--schedule", "str"), ("--precision", "str"), ("--train", "str"), ("--preset", "str"),
                            ("--moe-layers", "str"), ("--data", "str")],
              chatty=True, out_flag="--out",
              may_run_long=("--steps", "--eval-batches", "--grad-accum", "--batch", "--seq", "--warmup", "--d-model",
                            "--n-layers", "--max-seq-len", "--vocab-size", "--n-experts"))
    gb = ["generate", "--checkpoint", ck, "--prompt", "int", "--max-tokens", "3", "--threads", "1"]
    flagcases("generate", gb, [("--max-tokens", "count"), ("--temperature", "float"), ("--top-k", "count"),
                               ("--top-p", "prob"), ("--repetition-penalty", "float"), ("--seed", "count"),
                               ("--threads", "count"), ("--experts-only", "str"), ("--weights", "str"),
                               ("--precision", "str")], may_run_long=("--max-tokens",))
    eb = ["eval", "--checkpoint", ck, "--data", "code=" + code, "--batches", "1", "--batch", "2", "--seq", "16",
          "--threads", "1"]
    flagcases("eval", eb, [("--batch", "pos"), ("--seq", "pos"), ("--batches", "count"), ("--threads", "count"),
                           ("--data", "str")], may_run_long=("--batches", "--batch"))
    flagcases("init", ["init", "--preset", "tiny", "-o", "X"], [("--seed", "count"), ("--n-experts", "pos"),
                                                                ("--d-model", "pos"), ("--n-heads", "pos"),
                                                                ("--vocab-size", "pos"), ("--d-ff", "pos"),
                                                                ("--rope-theta", "float"), ("--z-coef", "float"),
                                                                ("--moe-layers", "str"), ("--preset", "str")],
              out_flag="-o", may_run_long=("--vocab-size", "--d-model", "--d-ff", "--n-experts"))
    flagcases("expert add", ["expert", "add", ck, "--init", "random", "--router-init", "random", "-o", "X"],
              [("--seed", "count"), ("--init", "str"), ("--router-init", "str"), ("--seq", "pos"),
               ("--name", "name"), ("--domain", "name")], out_flag="-o")
    flagcases("expert extract", ["expert", "extract", ck, "--expert", "0", "-o", "X"],
              [("--expert", "str"), ("--name", "name"), ("--domain", "name")], out_flag="-o")
    flagcases("expert insert", ["expert", "insert", ck, mod, "--slot", "0", "-o", "X"], [("--slot", "count")],
              out_flag="-o")
    flagcases("expert remove", ["expert", "remove", ck, "--expert", "0", "-o", "X"], [("--expert", "str")],
              out_flag="-o")
    flagcases("compose", ["compose", "--base", ck, "--expert", mod, "--expert", mod, "-o", "X"],
              [("--top-k", "pos"), ("--seed", "count"), ("--router", "str")], out_flag="-o")
    flagcases("upcycle", ["upcycle", T["dense"], "--n-experts", "2", "--top-k", "1", "-o", "X"],
              [("--n-experts", "pos"), ("--top-k", "pos"), ("--noise", "float"), ("--seed", "count")], out_flag="-o",
              may_run_long=("--n-experts",))
    flagcases("data prepare", ["data", "prepare", "--tokenizer", tok, "--domain", "x", "--input", T["text"], "-o",
                               "X"], [("--val-fraction", "prob"), ("--seed", "count"), ("--domain", "name")],
              out_flag="-o", chatty=True)
    flagcases("tokenizer train", ["tokenizer", "train", "--vocab-size", "300", "--input", T["text"], "-o", "X"],
              [("--vocab-size", "pos")], out_flag="-o", may_run_long=("--vocab-size",), chatty=True)
    flagcases("dump", ["dump", "--checkpoint", ck, "--tokens", T["batch"], "-o", "X", "--threads", "1"],
              [("--threads", "count")], out_flag="-o")
    flagcases("export gguf", ["export", "gguf", ck, "-o", "X"], [("--type", "str")], out_flag="-o")
    flagcases("export hf", ["export", "hf", ck, d + "/hf_out"], [("--dtype", "str"), ("--shard-size", "count")])
    flagcases("bench machine", ["bench", "machine", "--json"], [("--threads", "count")],
              may_run_long=("--threads",))
    flagcases("pipeline", ["pipeline", "btx", "--config", T["ini"]], [("--threads", "count")])
    # paths as flags
    for cmd, base, flag in (("train", tb, "--out"), ("init", ["init", "--preset", "tiny", "-o", "X"], "-o"),
                            ("expert extract", ["expert", "extract", ck, "--expert", "0", "-o", "X"], "-o"),
                            ("data prepare", ["data", "prepare", "--tokenizer", tok, "--domain", "x", "--input",
                                              T["text"], "-o", "X"], "-o")):
        # Never a real device or system folder: the probe runs as root in CI, and an output
        # renamed onto /dev/null would replace the machine's /dev/null. A device node, a FIFO
        # and a non-empty folder of the probe's own stand in for them.
        dev, fifo, full = d + "/null_dev", d + "/fifo_o", d + "/a_full_dir"
        if not os.path.exists(dev):
            os.mknod(dev, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
            os.mkfifo(fifo)
            os.makedirs(full + "/x")
        for v in ("", full, dev, fifo, d + "/nodir/x/y", "x" * 5000):
            argv = list(base)
            argv[argv.index(flag) + 1] = v
            e = "refuse" if v in ("", dev, fifo, "x" * 5000) or (v == full and cmd != "train") else "any"
            if cmd == "train" and v in (d + "/nodir/x/y",):
                e = "any"
            C.append(Case("%s %s=%r" % (cmd, flag, v[-40:]), [B] + argv, expect=e, timeout=20, chatty=True))

    # --- control characters printed back
    named = d + "/named.h5"
    sh([B, "expert", "add", ck, "--init", "random", "--router-init", "random", "--name", "\x1b]0;x\x07\x1b[31mred",
        "--domain", "dom\x1b[2J", "-o", named])
    nmod = d + "/named_mod.h5"
    sh([B, "expert", "extract", named, "--expert", "4", "-o", nmod])
    add("expert_list/ctrl_names", ["expert", "list", named], expect="succeed")
    add("expert_list_module/ctrl_names", ["expert", "list", nmod], expect="succeed")
    add("inspect/ctrl_names", ["inspect", named], expect="succeed")
    ctrl_out = "%s/out\x1b[31m\x07" % d
    add("train --out with control characters", ["train", "--preset", "tiny", "--tokenizer", tok, "--data",
                                                  "code=" + code] + train_base + ["--out", ctrl_out, "--log-every",
                                                                                  "1"],
        expect="succeed", chatty=True, timeout=20, after=lambda o, e: ("rawout", "train printed --out raw: %r" %
                                                                       e[-200:]) if CTRL.search(e) else None)

    # --- stdout that cannot be written
    for name, argv in (("inspect", ["inspect", ck]), ("expert list", ["expert", "list", ck]),
                       ("expert list module", ["expert", "list", mod]),
                       ("eval --json", eb + ["--json"]), ("eval", eb), ("generate", gb),
                       ("tokenizer encode", ["tokenizer", "encode", "--tokenizer", tok, "--input", T["text"]]),
                       ("tokenizer decode", ["tokenizer", "decode", "--tokenizer", tok, "--input", T["ids"]]),
                       ("help", ["help"]), ("--version", ["--version"]), ("init", ["init", "--preset", "tiny", "-o",
                                                                                      outp()]),
                       ("generate --show-routing", gb + ["--show-routing"]), ("train --help", ["train", "--help"])):
        C.append(Case("stdout=/dev/full/" + name, [B] + argv, stdout="/dev/full"))

    # --- a full disk (ulimit -f, SIGXFSZ ignored)
    writers = [
        ("init", lambda o: ["init", "--preset", "tiny", "-o", o]),
        ("expert extract", lambda o: ["expert", "extract", ck, "--expert", "0", "-o", o]),
        ("expert insert", lambda o: ["expert", "insert", ck, mod, "--slot", "0", "-o", o]),
        ("expert add", lambda o: ["expert", "add", ck, "--init", "random", "--router-init", "random", "-o", o]),
        ("expert remove", lambda o: ["expert", "remove", ck, "--expert", "0", "-o", o]),
        ("compose", lambda o: ["compose", "--base", ck, "--expert", mod, "--expert", mod, "-o", o]),
        ("upcycle", lambda o: ["upcycle", T["dense"], "--n-experts", "2", "--top-k", "1", "-o", o]),
        ("dump", lambda o: ["dump", "--checkpoint", ck, "--tokens", T["batch"], "-o", o, "--threads", "1"]),
        ("data prepare", lambda o: ["data", "prepare", "--tokenizer", tok, "--domain", "x", "--input", T["text"],
                                    "-o", o]),
        ("tokenizer train", lambda o: ["tokenizer", "train", "--vocab-size", "300", "--input", T["text"], "-o", o]),
        ("export gguf", lambda o: ["export", "gguf", ck, "-o", o]),
        ("export hf", lambda o: ["export", "hf", ck, o]),
        ("train", lambda o: ["train", "--preset", "tiny", "--tokenizer", tok, "--data", "code=" + code] +
         train_base[:-1] + ["1", "--out", o]),
    ]
    if T["gguf"]:
        writers.append(("import gguf", lambda o: ["import", "gguf", T["gguf"], "-o", o]))
    if T["hf"]:
        writers.append(("import hf", lambda o: ["import", "hf", T["hf"], "-o", o]))
    for limit in (0, 4096, 65536, 1 << 20):
        for name, mk in writers:
            sub = "%s/fsize_%d_%s" % (d, limit, name.replace(" ", "_"))
            os.makedirs(sub)
            o = sub + "/out.h5" if name not in ("train", "export hf") else sub + "/out"
            C.append(Case("ulimit -f %d/%s" % (limit, name), [B] + mk(o), expect="any", out=o, cwd=sub,
                          limits={resource.RLIMIT_FSIZE: limit}, timeout=20,
                          chatty=name in ("train", "data prepare", "tokenizer train")))

    # --- memory limits (ulimit -v); not under AddressSanitizer, which reserves terabytes of address space
    asan = b"libasan" in subprocess.run(["ldd", B], capture_output=True).stdout
    for mb in (() if asan else (64, 200, 400, 800)):
        lim = {resource.RLIMIT_AS: mb << 20}
        for name, argv in (("inspect", ["inspect", ck]), ("generate", gb), ("eval", eb),
                           ("train", tb[:-1] + [outp("")]), ("train --threads 64", tb[:-1] + [outp(""), "--threads",
                                                                                             "64"]),
                           ("expert add", ["expert", "add", ck, "--init", "random", "--router-init", "random", "-o",
                                           outp()]),
                           ("data prepare", ["data", "prepare", "--tokenizer", tok, "--domain", "x", "--input",
                                             T["text"], "-o", outp()]),
                           ("bench machine --threads 64", ["bench", "machine", "--threads", "64"])):
            C.append(Case("ulimit -v %dMB/%s" % (mb, name), [B] + argv, expect="any", limits=lim, timeout=90,
                          chatty=name.startswith(("train", "data prepare"))))

    if quick:
        pick = random.Random(7)
        always = [c for c in C if c.name.startswith(("stdout=/dev/full/inspect", "expert_list/ctrl", "train --out with",
                                                     "ulimit -f 4096/init", "ulimit -f 0/train",
                                                     "ulimit -v 200MB/train --threads", "inspect/soft_link",
                                                     "inspect/virtual", "tokenizer_encode_input/dev_zero",
                                                     "train_config/line_10MB", "bench machine --threads='-1'",
                                                     "compose --top-k='abc'", "generate --repetition-penalty='1e-300'",
                                                     "inspect/missing", "eval_data/ids_past_vocab"))]
        fast = [c for c in C if c not in always and not c.name.startswith(("train", "ulimit", "pipeline", "bench",
                                                                          "tokenizer train", "eval", "generate",
                                                                          "dump", "import", "export"))]
        C = always + pick.sample(fast, min(40, len(fast)))
    return C


# ------------------------------------------------------------------ faults on a run folder

def fault_cases(B, T, d, quick, verbose):
    """kill -9 at random moments, then resume; two runs on one folder. Returns failures."""
    fails = []
    tok, code = T["tok"], T["code"]
    base = [B, "train", "--preset", "tiny", "--tokenizer", tok, "--data", "code=" + code, "--batch", "2", "--seq",
            "16", "--warmup", "1", "--eval-every", "3", "--eval-batches", "1", "--threads", "1", "--steps", "6",
            "--save-every", "1"]
    rng = random.Random(11)
    kills = 1 if quick else 12
    n = 0
    for k in range(kills):
        out = "%s/kill%d" % (d, k)
        p = subprocess.Popen(base + ["--out", out], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             preexec_fn=preexec({}), restore_signals=False)
        time.sleep(rng.uniform(0.05, 2.5))
        os.killpg(p.pid, signal.SIGKILL)
        p.wait()
        n += 1
        rc, _, err, _ = run([B, "train", "--resume", out], 120, may_run_long=False)
        how = "resume"
        if rc != 0:
            rc, _, err, _ = run(base + ["--out", out], 120)
            how = "train again"
        name = "kill -9 #%d then %s" % (k, how)
        if rc != 0:
            fails.append((name, "lost", "neither --resume nor the same train works: %s" % err.decode()[-300:]))
            continue
        steps = [l for l in open(out + "/metrics.jsonl") if '"step"' in l and '"loss"' in l]
        left = [f for f in os.listdir(out) if f.endswith(".tmp")]
        if not os.path.exists(out + "/latest.h5") or left:
            fails.append((name, "lost", "after resuming: latest.h5 %s, .tmp %s" %
                          (os.path.exists(out + "/latest.h5"), left)))
        elif verbose:
            print("ok    %s (%d metrics lines)" % (name, len(steps)))
    # two runs on one folder: A is long (it is stopped with SIGINT once B has answered), so
    # B surely meets a live run; B must be refused in one line, and A's metrics must hold
    # every step once, in order.
    for second in ("train",) if quick else ("train", "resume"):
        out = "%s/shared_%s" % (d, second)
        a = subprocess.Popen(base[:-1] + ["1", "--steps", "100000", "--eval-every", "0", "--out", out],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, preexec_fn=preexec({}),
                             restore_signals=False)
        t0 = time.time()
        while not os.path.exists(out + "/ckpt-00000001.h5") and time.time() - t0 < 60 and a.poll() is None:
            time.sleep(0.05)
        argv = base + ["--out", out] if second == "train" else [B, "train", "--resume", out]
        rc, _, err, _ = run(argv, 60)
        alive = a.poll() is None
        os.killpg(a.pid, signal.SIGINT)
        _, aerr = a.communicate(timeout=180)
        n += 1
        name = "second %s on a running folder" % second
        lines = error_lines(err, True)
        steps = [int(re.search(r'"step": *(\d+)', l).group(1)) for l in open(out + "/metrics.jsonl")
                 if '"type": "train"' in l] if os.path.exists(out + "/metrics.jsonl") else []
        if not alive or a.returncode not in (0, 130):
            fails.append((name, "lost", "the first run was not running, or failed: exit %s %s" %
                          (a.returncode, aerr.decode()[-300:])))
        elif rc not in (1, 2) or len(lines) != 1:
            fails.append((name, "lost", "second run: exit %s, %s" % (rc, err.decode()[-300:])))
        elif steps != list(range(1, len(steps) + 1)):
            fails.append((name, "lost", "the first run's metrics lost or repeated steps: %s" % steps[:40]))
        elif verbose:
            print("ok    %s: %s; the first run kept %d steps" % (name, lines[0], len(steps)))
    return n, fails


# ------------------------------------------------------------------ main

def digest(paths):
    h = {}
    for p in paths:
        if p and os.path.isfile(p):
            h[p] = hashlib.sha256(open(p, "rb").read()).hexdigest()
    return h


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bin", default=os.environ.get("MONOLITH_BIN", os.path.join(SRC, "build/monolith")))
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--only")
    ap.add_argument("--keep", action="store_true", help="keep the scratch folder")
    ap.add_argument("-v", "--verbose", action="store_true")
    a = ap.parse_args()
    B = os.path.abspath(a.bin)
    work = tempfile.mkdtemp(prefix="hostile_probe.")
    t0 = time.time()
    try:
        fx = work + "/fixtures"
        os.makedirs(fx)
        T = fixtures(B, fx)
        inputs = digest([T[k] for k in ("tok", "text", "code", "ck", "mod", "dense", "batch", "ids", "gguf", "ini")])
        d = work + "/cases"
        os.makedirs(d)
        cases = build_cases(B, T, d, a.quick)
        if a.only:
            cases = [c for c in cases if re.search(a.only, c.name)]
        counts, fails = {}, []
        for c in cases:
            verdict, detail = judge(c, d)
            counts[verdict] = counts.get(verdict, 0) + 1
            if verdict != "ok":
                fails.append((c.name, verdict, detail))
                print("FAIL  %-9s %s: %s" % (verdict, c.name.encode("unicode_escape").decode()[:120],
                                             detail.encode("unicode_escape").decode()[:500]), flush=True)
            elif a.verbose:
                print("ok    %s: %s" % (c.name.encode("unicode_escape").decode()[:120],
                                        detail.encode("unicode_escape").decode()[:200]), flush=True)
        nf = 0
        if not a.only:
            nf, ff = fault_cases(B, T, d, a.quick, a.verbose)
            for f in ff:
                print("FAIL  %-9s %s: %s" % (f[1], f[0], f[2]), flush=True)
            fails += ff
        changed = [p for p, h in digest(list(inputs)).items() if inputs[p] != h]
        for p in changed:
            fails.append((p, "unchanged", "an input was modified"))
            print("FAIL  unchanged %s was modified" % p)
        total = len(cases) + nf
        kinds = {}
        for _, k, _ in fails:
            kinds[k] = kinds.get(k, 0) + 1
        print("hostile_probe: %d cases (%d faults on run folders) in %.0f s: %d failures%s" %
              (total, nf, time.time() - t0, len(fails),
               (" (" + ", ".join("%s %d" % kv for kv in sorted(kinds.items())) + ")") if fails else ""))
        return 1 if fails else 0
    finally:
        if a.keep:
            print("hostile_probe: scratch kept in " + work)
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
