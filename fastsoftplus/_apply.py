"""``apply_file``: a unary function of fastsoftplus over a ``.npy`` file bigger than memory.

How it works, and why:

- The source is memory-mapped one chunk at a time (a read-only map of that chunk, closed before
  the next): a single map of the whole file would keep every page it touched resident, and count
  toward the process's RSS, until the map is closed.
- Each chunk is computed by the public function (``softplus`` & co.), so the dispatcher's choice
  and its threads apply per chunk, into one of two reused output buffers; a writer thread writes
  the other meanwhile (plain ``write()`` calls: written pages go to the page cache, not the
  process's memory; the write of 2 GB takes as long as computing it here, so they overlap).
- The output goes to a temporary file in the destination directory (same filesystem, so the final
  rename is atomic), is flushed and fsync'ed, then ``os.replace``'d onto ``dst``. Any exception,
  ``KeyboardInterrupt`` included, removes the temporary file; ``dst`` then does not appear, or an
  older ``dst`` stays as it was. Only a process killed outright (SIGKILL, power loss) can leave a
  temporary file ``.<dst name>.<random>.tmp`` behind; never a partial ``dst``.
- Every check (files, dtype, parameters) runs before the temporary file is created.
- The elements are processed in their storage order, whatever the array's shape: the function is
  elementwise, so a Fortran-order source gives a Fortran-order result with the same header flag.
  Non-native byte order is read as such; the result is in native byte order (as the functions).
"""

from __future__ import annotations

import argparse
import io
import math
import mmap
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

import numpy as np
import numpy.lib.format as npformat

from . import _api

__all__ = ["apply_file", "DEFAULT_CHUNK_BYTES"]

#: Bytes per chunk (of the larger of the input and the output element types) when ``chunk_bytes``
#: is None. Peak memory is about 4-5 chunks above the interpreter's own (the mapped input chunk,
#: two output buffers - one being written while the next is computed - and, for float16, integer
#: or byte-swapped input, the converted copy). Measured on a 2 GiB float32 file (2 cores): peak
#: RSS 195 MB at 32 MiB, 293 MB at 64 MiB, with the same run time; the per-chunk costs (a map,
#: waking the thread team, a write() call, ~0.1 ms) are negligible against ~40 ms of work.
DEFAULT_CHUNK_BYTES = 32 * 2**20

#: The functions of one array; softplus_backward needs two (grad_output, x) and is refused.
UNARY: dict[str, Callable[..., Any]] = {
    "softplus": _api.softplus,
    "softplus_grad": _api.softplus_grad,
    "softplus_inverse": _api.softplus_inverse,
}

#: Seconds between two redraws of the progress bar.
_PROGRESS_INTERVAL = 0.1


class _Source:
    """A checked ``.npy`` header: where the data starts and how to read it."""

    def __init__(self, path: str):
        self.path = path
        try:
            f = open(path, "rb")
        except FileNotFoundError:
            raise FileNotFoundError(f"src {path!r} does not exist") from None
        except IsADirectoryError:
            raise IsADirectoryError(f"src {path!r} is a directory, not a .npy file") from None
        with f:
            magic = f.read(npformat.MAGIC_LEN)
            if len(magic) < npformat.MAGIC_LEN or not magic.startswith(npformat.MAGIC_PREFIX):
                raise ValueError(f"src {path!r} is not a .npy file (no NumPy magic string; "
                                 f".npz archives and pickles are not supported)")
            version = (magic[-2], magic[-1])
            f.seek(0)
            try:
                npformat.read_magic(f)
                if version == (1, 0):
                    shape, fortran, dtype = npformat.read_array_header_1_0(f)
                elif version in ((2, 0), (3, 0)):  # 3.0 only differs by a utf-8 header
                    shape, fortran, dtype = npformat.read_array_header_2_0(f)
                else:
                    raise ValueError(f"unsupported .npy format version {version}")
            except (ValueError, SyntaxError, UnicodeDecodeError) as e:
                raise ValueError(f"src {path!r}: malformed .npy header: {e}") from None
            self.offset = f.tell()
            size = os.fstat(f.fileno()).st_size
        dtype = np.dtype(dtype)
        if dtype.names is not None or dtype.subdtype is not None or dtype.hasobject or not (
                dtype.kind in "biu" or (dtype.kind == "f" and dtype.itemsize <= 8)):
            raise TypeError(f"src {path!r} holds {dtype} data; apply_file takes float16, "
                            f"float32, float64, bool and integer arrays")
        self.shape, self.fortran, self.dtype = tuple(shape), bool(fortran), dtype
        self.count = math.prod(self.shape)
        self.nbytes = self.count * dtype.itemsize
        if size < self.offset + self.nbytes:
            raise ValueError(f"src {path!r} is truncated: its header announces {self.nbytes} "
                             f"bytes of data, the file holds {max(size - self.offset, 0)}")


def _check_dst(src: str, dst: str) -> str:
    """The destination directory, after checking that ``dst`` may be written."""
    if os.path.realpath(src) == os.path.realpath(dst) or (
            os.path.exists(dst) and os.path.samefile(src, dst)):
        raise ValueError(f"dst {dst!r} is the same file as src; apply_file never writes its "
                         f"source (write to another name, then rename)")
    if os.path.isdir(dst):
        raise IsADirectoryError(f"dst {dst!r} is a directory; give a file name")
    directory = os.path.dirname(os.path.abspath(dst))
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"the directory of dst {dst!r} does not exist: {directory!r}")
    return directory


def _header(shape: tuple, fortran: bool, dtype: np.dtype) -> bytes:
    d = {"descr": npformat.dtype_to_descr(dtype), "fortran_order": fortran, "shape": shape}
    buf = io.BytesIO()
    try:
        npformat.write_array_header_1_0(buf, d)
    except ValueError:  # a header longer than 64 KiB (thousands of dimensions)
        buf = io.BytesIO()
        npformat.write_array_header_2_0(buf, d)
    return buf.getvalue()


def _compute_chunk(fn: Callable[..., Any], fd: int, src: _Source, start: int, n: int,
                   out: np.ndarray, beta: Any, threshold: Any) -> None:
    """``fn`` of elements [start, start + n) of the source into ``out`` (of length n)."""
    isz = src.dtype.itemsize
    off = src.offset + start * isz
    base = off - off % mmap.ALLOCATIONGRANULARITY  # map offsets must be aligned
    mm = mmap.mmap(fd, off - base + n * isz, access=mmap.ACCESS_READ, offset=base)
    if hasattr(mm, "madvise") and hasattr(mmap, "MADV_SEQUENTIAL"):
        mm.madvise(mmap.MADV_SEQUENTIAL)  # read ahead; pages may be dropped once used
    a = np.frombuffer(mm, dtype=src.dtype, count=n, offset=off - base)  # read-only view
    try:
        fn(a, beta, threshold, out=out)
    except BaseException:
        del a
        try:
            mm.close()
        except BufferError:  # the traceback's frames still hold the view: unmapped with them
            pass
        raise
    del a  # the map cannot close while an array points into it
    mm.close()  # unmapped now, so these pages leave the process's resident set


class _Progress:
    """A one-line progress bar on stderr, redrawn at most every ``_PROGRESS_INTERVAL`` s."""

    def __init__(self, label: str, total: int, stream):
        self.label, self.total, self.stream = label, total, stream
        self.t0 = self.last = time.monotonic()

    def update(self, done: int, final: bool = False) -> None:
        now = time.monotonic()
        if not final and now - self.last < _PROGRESS_INTERVAL:
            return
        self.last = now
        frac = done / self.total if self.total else 1.0
        width = 30
        filled = int(frac * width)
        rate = done / max(now - self.t0, 1e-9) / 1e6
        self.stream.write(f"\r{self.label} {frac * 100:5.1f}% |{'#' * filled}"
                          f"{'.' * (width - filled)}| {done / 1e6:.0f}/{self.total / 1e6:.0f} MB"
                          f" {rate:.0f} MB/s" + ("\n" if final else ""))
        self.stream.flush()


def _check_options(func: Any, chunk_bytes: Any, progress: Any) -> tuple[Callable, int]:
    if func == "softplus_backward":
        raise ValueError("func='softplus_backward' needs two arrays (grad_output and x); "
                         "apply_file maps one file: use softplus_grad, or softplus_backward "
                         "on memory maps of both files")
    if not isinstance(func, str) or func not in UNARY:
        raise ValueError(f"func={func!r} is not one of {', '.join(UNARY)}")
    if chunk_bytes is None:
        chunk_bytes = DEFAULT_CHUNK_BYTES
    elif isinstance(chunk_bytes, bool) or not isinstance(chunk_bytes, int):
        raise TypeError(f"chunk_bytes must be an integer >= 1 or None, got "
                        f"{type(chunk_bytes).__name__}")
    elif chunk_bytes < 1:
        raise ValueError(f"chunk_bytes must be >= 1, got {chunk_bytes}")
    if progress is not None and not isinstance(progress, bool):
        raise TypeError(f"progress must be None (automatic), True or False, got {progress!r}")
    return UNARY[func], chunk_bytes


def apply_file(src: str | os.PathLike, dst: str | os.PathLike, func: str = "softplus",
               beta: float = 1.0, threshold: float | None = 20.0, *,
               chunk_bytes: int | None = None, progress: bool | None = None) -> None:
    """Apply a fastsoftplus function to a ``.npy`` file, chunk by chunk, into a new ``.npy`` file.

    For arrays bigger than memory: the source is memory-mapped a chunk at a time and the result
    written as it is computed, so memory use stays within a few chunks whatever the file size.
    ``dst`` appears under its name only when complete (temporary file in the same directory,
    then an atomic rename); a failed or interrupted run leaves no partial ``dst`` and removes
    the temporary file; ``src`` is only ever read.

    Parameters
    ----------
    src : str or os.PathLike
        A ``.npy`` file (format 1.0, 2.0 or 3.0) of float16, float32, float64, bool or integer
        data; any shape, C or Fortran order, either byte order.
    dst : str or os.PathLike
        The output file, replaced if it exists; not `src`; its directory must exist. Written as
        ``.npy`` whatever its name: the same shape and order as `src`, the dtype the function
        gives (float16/32/64 kept, bool and integers -> float64, native byte order).
    func : {"softplus", "softplus_grad", "softplus_inverse"}
        The function to apply. ``softplus_backward`` takes two arrays and is refused.
    beta, threshold :
        As for `fastsoftplus.softplus` (``threshold=None``: no cut-off).
    chunk_bytes : int, optional
        Bytes per chunk, counted on the larger of the input and output element sizes
        (default `DEFAULT_CHUNK_BYTES`, 32 MiB). Each chunk is computed with the threads of
        `fastsoftplus.get_num_threads`.
    progress : bool, optional
        Draw a progress bar on stderr. Default: only when stderr is a terminal.

    Raises
    ------
    FileNotFoundError
        `src`, or the directory of `dst`, does not exist.
    IsADirectoryError
        `src` or `dst` is a directory.
    ValueError
        `src` is not a ``.npy`` file (or is truncated); `dst` is `src`; an unknown `func` or
        ``softplus_backward``; invalid `beta`/`threshold` (as `fastsoftplus.softplus`);
        `chunk_bytes` < 1.
    TypeError
        `src` holds unsupported data (complex, object, structured, str, datetime, float128);
        `chunk_bytes` or `progress` of the wrong type; `beta`/`threshold` not real numbers.
    OSError
        Reading or writing failed (disk full, permissions); nothing is left under `dst`.

    Examples
    --------
    >>> import numpy as np, fastsoftplus, tempfile, os
    >>> d = tempfile.mkdtemp()
    >>> np.save(os.path.join(d, "x.npy"), np.array([-1.0, 0.0, 30.0]))
    >>> fastsoftplus.apply_file(os.path.join(d, "x.npy"), os.path.join(d, "y.npy"))
    >>> np.load(os.path.join(d, "y.npy"))
    array([ 0.31326169,  0.69314718, 30.        ])
    """
    fn, chunk_bytes = _check_options(func, chunk_bytes, progress)
    src, dst = os.fspath(src), os.fspath(dst)
    source = _Source(src)
    directory = _check_dst(src, dst)
    # beta/threshold checked by the function itself (and the result dtype learnt) on one element
    rdt = np.asarray(fn(np.zeros(1, source.dtype), beta, threshold)).dtype
    header = _header(source.shape, source.fortran, rdt)
    per_chunk = max(1, chunk_bytes // max(source.dtype.itemsize, rdt.itemsize))
    show = sys.stderr.isatty() if progress is None else progress
    bar = _Progress(f"{func} {os.path.basename(src)}:", source.nbytes, sys.stderr) if show else None

    # Nothing has been written so far. O_EXCL: never reuse a file someone else created.
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    while True:
        tmp = os.path.join(directory, f".{os.path.basename(dst)}.{os.urandom(4).hex()}.tmp")
        try:
            fd_out = os.open(tmp, flags, 0o666)  # the umask applies, as for any new file
            break
        except FileExistsError:
            continue
        except OSError as e:  # read-only directory, permissions: say which directory
            raise type(e)(e.errno, f"cannot create a temporary file in the directory of dst "
                                   f"({directory!r}): {e.strerror}") from None
    try:
        with open(fd_out, "wb") as out_file, open(src, "rb") as in_file:
            out_file.write(header)
            starts = range(0, source.count, per_chunk)
            # Two buffers: one is written (by a thread, write() releases the GIL) while the next
            # chunk is computed into the other. The pool's exit waits for a pending write, also
            # on error, so the file is never closed under the writer.
            bufs = [np.empty(min(per_chunk, source.count), rdt)
                    for _ in range(min(len(starts), 2))]
            with ThreadPoolExecutor(1, thread_name_prefix="fastsoftplus-apply") as writer:
                pending = None
                for i, start in enumerate(starts):
                    n = min(per_chunk, source.count - start)
                    chunk = bufs[i % 2][:n]  # its previous write (chunk i-2) is complete
                    _compute_chunk(fn, in_file.fileno(), source, start, n, chunk, beta,
                                   threshold)
                    if pending is not None:
                        pending.result()  # re-raises a failed write
                    pending = writer.submit(out_file.write, memoryview(chunk).cast("B"))
                    if bar is not None:
                        bar.update((start + n) * source.dtype.itemsize)
                if pending is not None:
                    pending.result()
            out_file.flush()
            os.fsync(out_file.fileno())
        os.replace(tmp, dst)
    except BaseException:  # KeyboardInterrupt and SystemExit too: no temporary file stays
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if bar is not None:
            try:
                bar.stream.write("\n")  # end the bar's line before the traceback
            except Exception:
                pass
        raise
    if bar is not None:
        bar.update(source.nbytes, final=True)
    _fsync_dir(directory)


def _fsync_dir(directory: str) -> None:
    """Make the rename durable (POSIX); best effort, the file is complete either way."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# --- command line: python -m fastsoftplus apply SRC DST ---------------------------------------

def _beta_arg(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not (v > 0 and math.isfinite(v)):
        raise argparse.ArgumentTypeError(f"{text!r}: beta must be a finite number > 0")
    return v


def _threshold_arg(text: str) -> float | None:
    if text.strip().lower() in ("none", "inf", "+inf"):
        return None
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number or 'none'") from None
    if v != v:
        raise argparse.ArgumentTypeError("threshold must not be NaN ('none' for no cut-off)")
    return v


def _func_arg(text: str) -> str:
    if text == "softplus_backward":
        raise argparse.ArgumentTypeError(
            "softplus_backward needs two arrays (grad_output and x); apply maps one file")
    if text not in UNARY:
        raise argparse.ArgumentTypeError(f"{text!r} is not one of {', '.join(UNARY)}")
    return text


_SUFFIXES = {"": 1, "k": 2**10, "m": 2**20, "g": 2**30}


def _bytes_arg(text: str) -> int:
    t = text.strip().lower().removesuffix("b").removesuffix("i")
    unit = t[-1:] if t[-1:] in "kmg" else ""
    try:
        v = int(float(t[:len(t) - len(unit)]) * _SUFFIXES[unit])
    except (ValueError, OverflowError):
        raise argparse.ArgumentTypeError(f"{text!r} is not a size (e.g. 65536, 64M, 1G)") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: the chunk size must be at least 1 byte")
    return v


def _threads_arg(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: the thread count must be >= 1")
    return v


def add_subparser(sub) -> argparse.ArgumentParser:
    """Add the ``apply`` subcommand to the subparsers of ``python -m fastsoftplus``."""
    p = sub.add_parser(
        "apply", help="apply a function to a .npy file bigger than memory (atomic output)",
        description="Compute FUNC of every element of the .npy file SRC, chunk by chunk, into "
                    "the .npy file DST (written to a temporary file, renamed when complete).")
    p.add_argument("src", metavar="SRC", help="input .npy file (float, integer or bool data)")
    p.add_argument("dst", metavar="DST", help="output .npy file (replaced if it exists)")
    p.add_argument("--func", default="softplus", type=_func_arg, metavar="F",
                   help=f"one of {', '.join(UNARY)} (default: softplus)")
    p.add_argument("--beta", default=1.0, type=_beta_arg, metavar="B",
                   help="finite number > 0 (default: 1)")
    p.add_argument("--threshold", default=20.0, type=_threshold_arg, metavar="T",
                   help="linear above beta*x > T; 'none' for no cut-off (default: 20)")
    p.add_argument("--chunk-bytes", type=_bytes_arg, metavar="N",
                   help=f"bytes per chunk, e.g. 16M (default: {DEFAULT_CHUNK_BYTES // 2**20}M)")
    p.add_argument("--threads", type=_threads_arg, metavar="N",
                   help="set_num_threads(N) first (default: FASTSOFTPLUS_NUM_THREADS or the cores)")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="progress bar on stderr (default: only on a terminal)")
    return p


def cli(args: argparse.Namespace) -> int:
    """Run ``apply`` from parsed arguments; the exit status (0 done, 1 failed, 130 interrupted)."""
    prog = "python -m fastsoftplus apply"
    if args.threads is not None:
        from ._threads import set_num_threads
        set_num_threads(args.threads)
    try:
        apply_file(args.src, args.dst, args.func, args.beta, args.threshold,
                   chunk_bytes=args.chunk_bytes, progress=args.progress)
    except KeyboardInterrupt:
        print(f"{prog}: interrupted; {args.dst!r} was not written", file=sys.stderr)
        return 130
    except (OSError, ValueError, TypeError) as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 1
    return 0
