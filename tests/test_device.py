"""The CPU runtime policies the CLI applies and benches reuse."""
import ctypes
import ctypes.util
import os
import subprocess
import sys
import textwrap

import pytest


def _has_mallinfo2() -> bool:
    try:
        return hasattr(ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6"), "mallinfo2")
    except OSError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux") or not _has_mallinfo2(), reason="glibc >= 2.33")
def test_keep_freed_memory_serves_big_buffers_from_the_heap_and_keeps_them():
    # a fresh process without the CLI's MALLOC_* environment: the policy is process-wide
    code = textwrap.dedent("""
        import ctypes, ctypes.util
        import numpy as np

        class MallInfo2(ctypes.Structure):
            _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd",
                                                      "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]

        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallinfo2.restype = MallInfo2

        def heap_and_mapped(size=64 << 20):
            buf = np.ones(size, dtype=np.uint8)
            mapped = libc.mallinfo2().hblkhd  # bytes in chunks of their own mmap
            del buf
            info = libc.mallinfo2()
            return info.arena, mapped - info.hblkhd

        default = heap_and_mapped()
        from tokcodec.allocator import keep_freed_memory
        keep_freed_memory()
        kept = heap_and_mapped()
        print(*default, *kept)
    """)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k != "GLIBC_TUNABLES"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    heap_default, mapped_default, heap_kept, mapped_kept = map(int, out.stdout.split())
    assert mapped_default >= 64 << 20  # by default a 64 MB buffer is a fresh mapping each time
    assert mapped_kept == 0            # with the policy it comes from the heap
    # and stays there, freed, for the next one (less what free heap space already held)
    assert heap_kept >= heap_default + (63 << 20)
