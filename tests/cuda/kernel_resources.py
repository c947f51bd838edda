#!/usr/bin/env python3
"""What ptxas makes of every CUDA kernel, for sm_90, with the GPU build's
optimization (no GPU needed): registers, shared memory, local memory and
spills, and the resident blocks per SM that follow.

    kernel_resources.py --nvcc NVCC --flags-file FILE --root SOURCE_DIR
                        --out DIR [--arch 90] [--jobs N] [--cuobjdump CUOBJDUMP]
                        SOURCE.cu...

Compiles the device code of each SOURCE.cu (the CUDA tests: together they
launch every kernel) as the Release GPU build does, keeping the PTX, and
reads ptxas' --resource-usage report. The nvcc flags, one per line, come
from FILE: CMake writes BUILD/tests/kernel_resources.flags (the C++
standard, the Release CUDA flags as a GPU build has them, the CUDA targets'
nvcc options, the tests' definitions), so the script and the build cannot
drift apart. Fails when
  - a kernel has a stack frame, or spills registers to local memory: local
    memory goes through L1/L2, and a spill in an inner loop costs more than
    the kernel's arithmetic;
  - a kernel that declares __launch_bounds__(threads, min_blocks) cannot
    hold min_blocks blocks per SM on sm_90 (ptxas caps registers for it,
    but not shared memory);
  - a __global__ function of kernels/cumulus/cuda/ is compiled by none of
    the sources: no test launches it.
Prints a table of every kernel last (also written to DIR/resources.txt).
With --cuobjdump (CUDA's, or pip's nvidia-cuda-cuobjdump with
nvidia-cuda-nvdisasm; not needed for the checks), the table also gives
each kernel's largest loop in the machine code: its instructions and the
share of them that are FFMA (for the GEMM and convolution kernels, the K
loop: the closer to 1, the less the arithmetic waits on index work).

These are the compiler's figures, not measurements on a GPU: what a kernel
holds, not how fast it runs.
"""
import argparse
import concurrent.futures
import os
import re
import subprocess
import sys

# sm_90 (H100 / H200) per-SM limits, as the CUDA occupancy calculator
# (cuda_occupancy.h) counts them.
SM90 = dict(regs_per_sm=65536, sub_partitions=4, reg_unit=256, max_threads=2048, max_blocks=32,
            smem_per_sm=228 * 1024, smem_per_block_reserved=1024, max_regs_per_thread=255)


def blocks_per_sm(threads, regs, smem, lim=SM90):
    """Resident blocks of `threads` threads, `regs` registers each and `smem`
    bytes of static shared memory, and which limit binds."""
    warps = (threads + 31) // 32
    limits = {"blocks": lim["max_blocks"], "threads": lim["max_threads"] // (warps * 32)}
    regs_per_warp = -(-max(regs, 1) * 32 // lim["reg_unit"]) * lim["reg_unit"]
    # Registers come from the four sub-partitions; a warp lives in one.
    warps_per_part = (lim["regs_per_sm"] // lim["sub_partitions"]) // regs_per_warp
    limits["registers"] = warps_per_part * lim["sub_partitions"] // warps
    limits["shared"] = lim["smem_per_sm"] // (smem + lim["smem_per_block_reserved"])
    bound = min(limits, key=limits.get)
    return limits[bound], bound


def compile_one(nvcc, src, flags, keep_dir):
    os.makedirs(keep_dir, exist_ok=True)
    cubin = os.path.join(keep_dir, os.path.basename(src) + ".cubin")
    cmd = [nvcc, *flags, "-cubin", "--resource-usage", "--keep", "--keep-dir", keep_dir, "-o", cubin, src]
    run = subprocess.run(cmd, capture_output=True, text=True)
    if run.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}\nexited {run.returncode}:\n{run.stderr[-4000:]}")
    ptx = [os.path.join(keep_dir, f) for f in os.listdir(keep_dir) if f.endswith(".ptx")]
    return run.stdout + run.stderr, ptx


def worse(old, new):
    """The worse of two reports of one kernel (the same kernel reported twice): each figure's maximum."""
    return new if old is None else {k: max(old.get(k, 0), new.get(k, 0)) for k in old.keys() | new.keys()}


def parse_ptxas(text, arch):
    """{mangled: {regs, smem, stack, spill_st, spill_ld, barriers}} from ptxas' report, for sm_<arch> only (the
    flags may add other -gencode targets, whose figures the sm_90 limits do not judge); a kernel reported twice
    for it keeps the worse figures."""
    out, cur, props, target = {}, None, {}, None
    for line in text.splitlines():
        m = re.search(r"Compiling entry function '\S+' for '(sm_\d+a?)'", line)
        if m:
            target = m.group(1)
            continue
        m = re.search(r"Function properties for (\S+)", line)
        if m:
            cur, props = (m.group(1), {}) if target in (None, f"sm_{arch}", f"sm_{arch}a") else (None, {})
            continue
        m = re.search(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads", line)
        if m and cur:
            props.update(stack=int(m.group(1)), spill_st=int(m.group(2)), spill_ld=int(m.group(3)))
            continue
        m = re.search(r"Used (\d+) registers", line)
        if m and cur:
            smem = re.search(r"(\d+) bytes smem", line)
            bars = re.search(r"used (\d+) barriers", line)
            props.update(regs=int(m.group(1)), smem=int(smem.group(1)) if smem else 0,
                         barriers=int(bars.group(1)) if bars else 0)
            out[cur] = worse(out.get(cur), props)
            cur = None
    return out


def parse_ptx_bounds(paths):
    """{mangled: (max threads, min blocks)} from the .maxntid / .minnctapersm directives."""
    out = {}
    for p in paths:
        text = open(p, errors="replace").read()
        for m in re.finditer(r"\.entry\s+(\S+?)\s*\((.*?)\)\s*((?:\.\w+[^{]*?)*)\{", text, re.S):
            name, directives = m.group(1), m.group(3)
            nt = re.search(r"\.maxntid\s+(\d+)\s*,\s*(\d+)\s*,\s*(\d+)", directives)
            mb = re.search(r"\.minnctapersm\s+(\d+)", directives)
            if nt:
                out[name] = (int(nt.group(1)) * int(nt.group(2)) * int(nt.group(3)), int(mb.group(1)) if mb else 0)
    return out


def demangle(names):
    run = subprocess.run(["c++filt"], input="\n".join(names), capture_output=True, text=True)
    got = run.stdout.splitlines() if run.returncode == 0 else []
    return dict(zip(names, got)) if len(got) == len(names) else {n: n for n in names}


def short(demangled):
    s = demangled.replace("(anonymous namespace)::", "").replace("cumulus::cuda::", "").replace("void ", "", 1)
    s = re.sub(r"\(.*\)$", "", s)
    s = s.replace("conv_detail::", "").replace("GemmConfig", "Cfg")
    return re.sub(r"\s+", " ", s)


def sass_loops(cuobjdump, cubins):
    """{mangled: (instructions, FFMA) of the largest loop} from cuobjdump -sass."""
    out = {}
    for cubin in cubins:
        run = subprocess.run([cuobjdump, "-sass", cubin], capture_output=True, text=True)
        if run.returncode != 0:
            raise RuntimeError(f"{cuobjdump} -sass {cubin} exited {run.returncode}: {run.stderr[-2000:]}")
        for func in run.stdout.split("Function : ")[1:]:
            name = func.split("\n", 1)[0].strip()
            ins = [(int(m.group(1), 16), m.group(2)) for m in re.finditer(r"/\*([0-9a-f]{4,})\*/\s+([^;]*);", func)]
            best = (0, 0)
            for addr, text in ins:
                m = re.search(r"\bBRA\b.*?0x([0-9a-f]+)", text)
                if m and int(m.group(1), 16) < addr:
                    body = [t for a, t in ins if int(m.group(1), 16) <= a <= addr]
                    ffma = sum(1 for t in body if re.match(r"(@!?U?P\w+\s+)?FFMA\b", t.strip()))
                    best = max(best, (len(body), ffma))
            out[name] = best
    return out


def declared_kernels(root):
    """Every __global__ function name in kernels/cumulus/cuda/*.cuh."""
    found = {}
    kdir = os.path.join(root, "kernels", "cumulus", "cuda")
    for f in sorted(os.listdir(kdir)):
        if not f.endswith(".cuh"):
            continue
        text = re.sub(r"//[^\n]*", "", open(os.path.join(kdir, f)).read())
        for m in re.finditer(r"__global__\s+void\s+(?:__launch_bounds__\s*\([^)]*\)\s*)?(\w+)\s*\(", text):
            found[m.group(1)] = f
    return found


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--nvcc", required=True)
    ap.add_argument("--flags-file", required=True, help="nvcc flags, one per line (CMake writes "
                    "BUILD/tests/kernel_resources.flags)")
    ap.add_argument("--root", required=True, help="the source tree (include/, kernels/)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--arch", default="90")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--cuobjdump", help="also print each kernel's largest loop (instructions, FFMA share)")
    ap.add_argument("sources", nargs="+")
    a = ap.parse_args()
    if a.arch != "90":
        sys.exit(f"kernel_resources: only sm_90's limits are known here, not sm_{a.arch}")
    with open(a.flags_file) as f:
        given = [line.strip() for line in f if line.strip()]
    levels = [g for g in given if re.fullmatch(r"-O[0-9]", g)]
    if not levels or levels[-1] == "-O0":
        sys.exit(f"kernel_resources: {a.flags_file} names no optimization level above -O0 (-O3 in a Release build's "
                 "CMAKE_CUDA_FLAGS_RELEASE); the figures would be an unoptimized build's")
    flags = [*given, f"-arch=sm_{a.arch}", "-I" + os.path.join(a.root, "include"),
             "-I" + os.path.join(a.root, "kernels")]
    os.makedirs(a.out, exist_ok=True)
    kernels, bounds, cubins = {}, {}, []
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, a.jobs)) as pool:
        jobs = {pool.submit(compile_one, a.nvcc, s, flags, os.path.join(a.out, os.path.basename(s) + ".d")): s
                for s in a.sources}
        for fut in concurrent.futures.as_completed(jobs):
            report, ptx = fut.result()
            d = os.path.join(a.out, os.path.basename(jobs[fut]) + ".d")
            cubins.append(os.path.join(d, os.path.basename(jobs[fut]) + ".cubin"))
            for name, props in parse_ptxas(report, a.arch).items():
                # The same kernel in two sources (one instantiation, the same flags): keep the worse figures.
                kernels[name] = worse(kernels.get(name), props)
            bounds.update(parse_ptx_bounds(ptx))
    if not kernels:
        sys.exit("kernel_resources: ptxas reported no kernels: its --resource-usage format changed?")

    names = sorted(kernels)
    dem = demangle(names)
    loops = sass_loops(a.cuobjdump, cubins) if a.cuobjdump else {}
    failures = []
    rows = []
    for n in names:
        k = kernels[n]
        label = short(dem[n])
        threads, min_blocks = bounds.get(n, (0, 0))
        occ = "-"
        if threads:
            blocks, bound = blocks_per_sm(threads, k["regs"], k["smem"])
            occ = f"{blocks} ({bound})"
            if blocks < min_blocks:
                failures.append(f"{label}: __launch_bounds__ asks for {min_blocks} blocks per SM, but "
                                f"{k['regs']} registers x {threads} threads and {k['smem']} B of shared "
                                f"memory hold {blocks} ({bound} bind)")
        if k["spill_st"] or k["spill_ld"] or k["stack"]:
            failures.append(f"{label}: {k['stack']} B stack frame, {k['spill_st']} B spill stores, "
                            f"{k['spill_ld']} B spill loads (local memory): cut its registers (smaller "
                            f"tile, 32-bit indices) or raise its register bound")
        row = (label, str(threads or "-"), str(k["regs"]), str(k["smem"]), f"{k['stack']}/{k['spill_st']}/"
               f"{k['spill_ld']}", occ)
        if a.cuobjdump:
            n_ins, ffma = loops.get(n, (0, 0))
            row += (f"{n_ins} / {ffma / n_ins:.2f}" if n_ins else "-",)
        rows.append(row)

    compiled = {re.sub(r"<.*", "", short(dem[n])).strip() for n in names}
    for name, header in declared_kernels(a.root).items():
        if name not in compiled:
            failures.append(f"{name} ({header}): no source compiles it, so no CUDA test launches it")

    head = ("kernel", "threads", "regs", "smem B", "stack/spill st/ld B", "blocks/SM")
    if a.cuobjdump:
        head += ("loop instr / FFMA",)
    width = [max(len(r[i]) for r in rows + [head]) for i in range(len(head))]
    lines = [f"ptxas, sm_{a.arch}, {levels[-1]} ({len(names)} kernels; blocks/SM where __launch_bounds__ fixes the block)"]
    for r in [head] + sorted(rows):
        lines.append("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, width))))
    table = "\n".join(lines)
    open(os.path.join(a.out, "resources.txt"), "w").write(table + "\n")
    for f in failures:
        print("FAILED:", f)
    print(table)
    if failures:
        print(f"kernel_resources: {len(failures)} failure(s)")
        return 1
    print("kernel_resources: every kernel compiled, no spills, no stack, launch bounds held")
    return 0


if __name__ == "__main__":
    sys.exit(main())
