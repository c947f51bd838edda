#!/usr/bin/env python3
"""Rewrites CUDA kernel launches for the CPU emulation of the CUDA backend.

    python3 rewrite.py OUT_DIR ROOT FILE...

Each FILE (a path under ROOT) is copied to OUT_DIR under the same relative
path (a .cu file as .cpp), with every launch `kernel<<<grid, block[, shmem[, stream]]>>>(args)`
turned into `::cuemu::launch(::cuemu::LaunchConfig(grid, block[, ...]),
"kernel", [](auto&&... a) { kernel(a...); }, args)`, which g++ compiles
(tests/emu/include/cuemu.hpp): the arguments are evaluated and kept at the
launch, and the kernel's template arguments deduced from them, as nvcc does. Each
`__shared__ [__align__(n)] T name[dims], ...;` becomes
`auto& name = ::cuemu::shared_array<T[dims], n>([] {});`: a heap block per
declaration (AddressSanitizer's redzones around it) that every block finds
filled with NaN bytes (`static` or `extern __shared__` are refused; a kernel
that captures a shared array in a `[=]` lambda would copy it: use `[&]`).
Nothing else changes, and a `#line` directive first keeps the original's name and
line numbers in __FILE__, __LINE__ and compiler messages. A file is only rewritten when
its content would change, so the build does not recompile what it need not.
"""
import os
import re
import sys


def kernel_start(text, end):
    """Index where the kernel expression ending just before `end` starts."""
    i = end
    while i > 0 and text[i - 1] in " \t\r\n":
        i -= 1
    if i > 0 and text[i - 1] == ">":  # template arguments: match the angle brackets
        depth = 0
        while i > 0:
            i -= 1
            c = text[i]
            if c == ">":
                depth += 1
            elif c == "<":
                depth -= 1
                if depth == 0:
                    break
        while i > 0 and text[i - 1] in " \t\r\n":
            i -= 1
    while i > 0 and (text[i - 1].isalnum() or text[i - 1] in "_:"):
        i -= 1
    return i


def in_comment(text, at):
    """Whether `at` lies in a // or /* */ comment (string literals are not looked at)."""
    line_start = text.rfind("\n", 0, at) + 1
    if "//" in text[line_start:at]:
        return True
    return text.rfind("/*", 0, at) > text.rfind("*/", 0, at)


SHARED = re.compile(r"\b__shared__\b")
ALIGN = re.compile(r"\s*__align__\s*\(\s*(\d+)\s*\)")
DECLARATOR = re.compile(r"^(?P<type>.+?)\s+(?P<name>[A-Za-z_]\w*)\s*(?P<dims>(?:\[[^\]]*\]\s*)*)$")
NAMED = re.compile(r"^(?P<name>[A-Za-z_]\w*)\s*(?P<dims>(?:\[[^\]]*\]\s*)*)$")


def rewrite_shared(text, path):
    """`__shared__ [__align__(n)] T a[..], b;` -> references to cuemu::shared_array blocks, on the same line."""
    out = []
    pos = 0
    for m in SHARED.finditer(text):
        if m.start() < pos or in_comment(text, m.start()):
            continue
        line = text.count("\n", 0, m.start()) + 1

        def fail(why):
            sys.exit(f"rewrite.py: {path}:{line}: {why}")

        before = text[text.rfind("\n", 0, m.start()) + 1:m.start()].split()
        if before and before[-1] in ("static", "extern"):
            fail(f"'{before[-1]} __shared__' is not supported by the emulation (tests/emu/rewrite.py)")
        end = text.find(";", m.end())
        if end < 0:
            fail("a __shared__ declaration without ';'")
        body = text[m.end():end]
        align = "16"
        a = ALIGN.match(body)
        if a:
            align, body = a.group(1), body[a.end():]
        if any(c in body for c in "={}()"):
            fail(f"cannot read the __shared__ declaration '__shared__{text[m.end():end]};'")
        parts = [p.strip() for p in " ".join(body.split()).split(",")]
        first = DECLARATOR.match(parts[0])
        if not first:
            fail(f"cannot read the __shared__ declaration '__shared__{text[m.end():end]};'")
        base = first.group("type")
        decls = [(first.group("name"), first.group("dims"))]
        for p in parts[1:]:
            d = NAMED.match(p)
            if not d:
                fail(f"cannot read the declarator '{p}' of a __shared__ declaration")
            decls.append((d.group("name"), d.group("dims")))
        out.append(text[pos:m.start()])
        out.append(" ".join(f"auto& {name} = ::cuemu::shared_array<{base}{dims.strip()}, {align}>([] {{}});"
                            for name, dims in decls) + "\n" * text[m.start():end + 1].count("\n"))
        pos = end + 1
    out.append(text[pos:])
    return "".join(out)


def rewrite(text, path):
    text = rewrite_shared(text, path)
    out = []
    pos = 0
    while True:
        open_at = text.find("<<<", pos)
        if open_at < 0:
            out.append(text[pos:])
            return "".join(out)
        if in_comment(text, open_at):
            out.append(text[pos:open_at + 3])
            pos = open_at + 3
            continue
        close_at = text.find(">>>", open_at)
        paren = close_at + 3
        while paren < len(text) and text[paren] in " \t\r\n":
            paren += 1
        if close_at < 0 or paren >= len(text) or text[paren] != "(":
            line = text.count("\n", 0, open_at) + 1
            sys.exit(f"rewrite.py: {path}:{line}: a '<<<' without '>>>(' after it")
        start = kernel_start(text, open_at)
        kernel = text[start:open_at].strip()
        if not kernel:
            line = text.count("\n", 0, open_at) + 1
            sys.exit(f"rewrite.py: {path}:{line}: no kernel name before '<<<'")
        config = text[open_at + 3:close_at]
        # Keep the newlines of the original so that line numbers do not move.
        between = (text[start:open_at].count("\n") + config.count("\n") - config.strip().count("\n") +
                   text[close_at + 3:paren].count("\n"))
        # an empty argument list: `kernel<<<...>>>()`
        rest = paren + 1
        j = rest
        while j < len(text) and text[j] in " \t\r\n":
            j += 1
        sep = "" if text[j] == ")" else ", "
        out.append(text[pos:start])
        name = " ".join(kernel.split())
        out.append(f"::cuemu::launch(::cuemu::LaunchConfig({config.strip()}), \"{name}\", "
                   f"[](auto&&... cuemu_args) {{ {name}(cuemu_args...); }}{sep}" + "\n" * between)
        pos = rest


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    out_dir, root = sys.argv[1], sys.argv[2]
    for f in sys.argv[3:]:
        rel = os.path.relpath(f, root)
        with open(f, encoding="utf-8") as fh:
            text = fh.read()
        # `#line` keeps __FILE__, __LINE__ and compiler messages pointing at the original.
        new = f'#line 1 "{os.path.abspath(f)}"\n' + rewrite(text, f)
        dest = os.path.join(out_dir, rel)
        if dest.endswith(".cu"):
            dest = dest[:-3] + ".cpp"  # for g++
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        try:
            with open(dest, encoding="utf-8") as fh:
                if fh.read() == new:
                    continue
        except OSError:
            pass
        with open(dest, "w", encoding="utf-8") as fh:
            fh.write(new)


if __name__ == "__main__":
    main()
