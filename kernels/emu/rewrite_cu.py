#!/usr/bin/env python3
"""Rewrites kernels/src/*.cu and *.cuh into host C++ for the emulated device.

Three constructs of CUDA C++ have no host C++ spelling; everything else compiles as it is
against kernels/emu/include/ciuic_emu/device.h (force-included by the build):

  k<...><<<grid, block[, smem[, stream]]>>>(args)
      -> ::ciuic::emu::launch(k<...>, "k<...>", grid, block[, smem[, stream]])(args)
  __shared__ DECL NAME[dims];
      -> struct ciuic_emu_shared_NAME { DECL NAME[dims]; };
         auto& NAME = ::ciuic::emu::shared_var<ciuic_emu_shared_NAME, decltype(ciuic_emu_shared_NAME::NAME)>();
  extern __shared__ [__align__(N)|alignas(N)] TYPE NAME[];
      -> TYPE* NAME = ::ciuic::emu::dynamic_shared<TYPE, N>();
  __global__ ... { body }
      -> __global__ ... { CIUIC_EMU_KERNEL_ENTRY(); body }

Comments and literals are left alone; every replacement keeps the original line breaks and
the output starts with a #line directive, so compiler messages, __builtin_LINE() and the
emulator's error messages point at the original source lines.

Usage: rewrite_cu.py --outdir DIR FILE...   (DIR/<basename> for .cuh, DIR/<stem>.cpp for .cu)
"""
import argparse
import os
import re
import sys


def code_mask(src):
    """True for characters of code, False inside comments and string/char literals."""
    mask = [True] * len(src)
    i, n = 0, len(src)
    while i < n:
        c = src[i]
        if src.startswith('//', i):
            j = src.find('\n', i)
            j = n if j < 0 else j
            mask[i:j] = [False] * (j - i)
            i = j
        elif src.startswith('/*', i):
            j = src.find('*/', i + 2)
            j = n if j < 0 else j + 2
            mask[i:j] = [False] * (j - i)
            i = j
        elif c in '"\'':
            j = i + 1
            while j < n and src[j] != c:
                j += 2 if src[j] == '\\' else 1
            j = min(n, j + 1)
            mask[i:j] = [False] * (j - i)
            i = j
        else:
            i += 1
    return mask


def find_code(src, mask, token, start=0):
    i = src.find(token, start)
    while i >= 0 and not mask[i]:
        i = src.find(token, i + 1)
    return i


def is_word_at(src, i, word):
    before = src[i - 1] if i > 0 else ' '
    after = src[i + len(word)] if i + len(word) < len(src) else ' '
    return not (before.isalnum() or before == '_') and not (after.isalnum() or after == '_')


def fail(path, src, i, msg):
    line = src.count('\n', 0, i) + 1
    sys.exit(f'{path}:{line}: rewrite_cu.py: {msg}')


def kernel_expr_start(src, end, path):
    """Start of the kernel expression ending just before `end` (an identifier, qualified
    names and template arguments: ns::kern<T, 4>)."""
    i = end
    while i > 0 and src[i - 1].isspace():
        i -= 1
    if i > 0 and src[i - 1] == '>':
        depth = 0
        while i > 0:
            i -= 1
            if src[i] == '>':
                depth += 1
            elif src[i] == '<':
                depth -= 1
                if depth == 0:
                    break
        if depth != 0:
            fail(path, src, end, 'unbalanced template arguments before <<<')
    while i > 0 and (src[i - 1].isalnum() or src[i - 1] in '_:'):
        i -= 1
    if i == end:
        fail(path, src, end, 'no kernel expression before <<<')
    return i


def rewrite_launches(path, src, mask, edits):
    i = find_code(src, mask, '<<<')
    while i >= 0:
        k0 = kernel_expr_start(src, i, path)
        kernel = src[k0:i].strip()
        depth, j = 0, i + 3
        while j < len(src):
            if mask[j]:
                if src[j] in '([{':
                    depth += 1
                elif src[j] in ')]}':
                    depth -= 1
                elif depth == 0 and src.startswith('>>>', j):
                    break
            j += 1
        else:
            fail(path, src, i, 'no >>> after <<<')
        name = kernel.replace('\\', '\\\\').replace('"', '\\"').replace('\n', ' ')
        edits.append((k0, i + 3, f'::ciuic::emu::launch({src[k0:i]}, "{name}", '))
        edits.append((j, j + 3, ')'))
        i = find_code(src, mask, '<<<', j + 3)


def statement_start(src, mask, i):
    j = i
    while j > 0 and not (mask[j - 1] and src[j - 1] in ';{}'):
        j -= 1
    return j


def statement_end(src, mask, i):
    depth, j = 0, i
    while j < len(src):
        if mask[j]:
            if src[j] in '([{':
                depth += 1
            elif src[j] in ')]}':
                depth -= 1
            elif src[j] == ';' and depth == 0:
                return j
        j += 1
    return -1


ALIGN = re.compile(r'(?:__align__|alignas)\s*\(\s*(\d+)\s*\)')


def rewrite_shared(path, src, mask, edits):
    i = find_code(src, mask, '__shared__')
    while i >= 0:
        if not is_word_at(src, i, '__shared__'):
            i = find_code(src, mask, '__shared__', i + 1)
            continue
        s0 = statement_start(src, mask, i)
        end = statement_end(src, mask, i)
        if end < 0:
            fail(path, src, i, '__shared__ declaration without a ;')
        lead = ''.join(c if mask[s0 + k] else ' ' for k, c in enumerate(src[s0:i]))
        decl = src[i + len('__shared__'):end]
        if lead.strip() == 'extern':
            s0 += lead.index('extern')
            lead = 'extern'
            align = ALIGN.search(decl)
            rest = ALIGN.sub('', decl)
            m = re.fullmatch(r'\s*(.+?)\s*\b(\w+)\s*\[\s*\]\s*', rest, re.S)
            if not m:
                fail(path, src, i, 'extern __shared__ declaration not of the form TYPE NAME[]')
            typ, name = ' '.join(m.group(1).split()), m.group(2)
            n_align = align.group(1) if align else '16'
            newlines = '\n' * src.count('\n', s0, end)
            edits.append((s0, end + 1,
                          f'{typ}* {name} = ::ciuic::emu::dynamic_shared<{typ}, {n_align}>();{newlines}'))
        elif lead.strip() == '':
            bracket = decl.find('[')
            head = decl if bracket < 0 else decl[:bracket]
            names = re.findall(r'\b\w+\b', head)
            if not names:
                fail(path, src, i, '__shared__ declaration without a name')
            name = names[-1]
            holder = f'ciuic_emu_shared_{name}'
            edits.append((i, end + 1,
                          f'struct {holder} {{{decl}; }}; auto& {name} = ::ciuic::emu::shared_var<{holder}, '
                          f'decltype({holder}::{name})>();'))
        else:
            fail(path, src, i, f'unrecognised __shared__ declaration (preceded by "{lead.strip()}")')
        i = find_code(src, mask, '__shared__', end)


def rewrite_kernel_entries(path, src, mask, edits):
    i = find_code(src, mask, '__global__')
    while i >= 0:
        if is_word_at(src, i, '__global__'):
            depth, j = 0, i
            while j < len(src):
                if mask[j]:
                    if src[j] == '(':
                        depth += 1
                    elif src[j] == ')':
                        depth -= 1
                    elif depth == 0 and src[j] in '{;':
                        break
                j += 1
            if j < len(src) and src[j] == '{':
                edits.append((j + 1, j + 1, ' CIUIC_EMU_KERNEL_ENTRY();'))
        i = find_code(src, mask, '__global__', i + 1)


def rewrite(path, src):
    mask = code_mask(src)
    edits = []
    rewrite_launches(path, src, mask, edits)
    rewrite_shared(path, src, mask, edits)
    rewrite_kernel_entries(path, src, mask, edits)
    edits.sort(key=lambda e: (e[0], e[1]))
    for a, b in zip(edits, edits[1:]):
        if b[0] < a[1]:
            fail(path, src, b[0], 'overlapping rewrites')
    out, pos = [], 0
    for start, end, text in edits:
        out.append(src[pos:start])
        out.append(text)
        pos = end
    out.append(src[pos:])
    result = ''.join(out)
    if result.count('\n') != src.count('\n'):
        fail(path, src, 0, 'internal error: the rewrite changed the line count')
    # Relative to the compiler's working directory (meson's build root), as meson names the
    # sources it compiles: messages read the same, and the output does not depend on where
    # the tree lives (ccache hits across clones laid out alike).
    return f'#line 1 "{os.path.relpath(path)}"\n' + result


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--outdir', required=True)
    ap.add_argument('files', nargs='+')
    args = ap.parse_args()
    os.makedirs(args.outdir, exist_ok=True)
    for f in args.files:
        with open(f, encoding='utf-8') as fh:
            src = fh.read()
        base = os.path.basename(f)
        out_name = base[:-3] + '.cpp' if base.endswith('.cu') else base
        text = rewrite(f, src)
        out_path = os.path.join(args.outdir, out_name)
        # Rewrite only on change, so that an unchanged source does not rebuild its object.
        if os.path.exists(out_path):
            with open(out_path, encoding='utf-8') as fh:
                if fh.read() == text:
                    continue
        with open(out_path, 'w', encoding='utf-8') as fh:
            fh.write(text)


if __name__ == '__main__':
    main()
