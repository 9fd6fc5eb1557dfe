"""Atomic writes: a reader never sees a half-written results file or checkpoint, and a failed
write says why (disk full, file too large, read-only or forbidden directory) in one line."""

import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from mtlrun.errors import MtlrunError

_TEMP_SUFFIX = ".tmp"  # temp files are `.<name>.<random>.tmp`, next to their target


class _Writer:
    """A file object that remembers the first OSError or KeyboardInterrupt its `write` raised:
    torch.save reports a failed write as a RuntimeError about the zip position instead."""

    def __init__(self, f: IO) -> None:
        self._f = f
        self.error: BaseException | None = None

    def write(self, data: Any) -> Any:
        try:
            return self._f.write(data)
        except (OSError, KeyboardInterrupt) as e:
            if self.error is None:
                self.error = e
            raise

    def __getattr__(self, name: str) -> Any:
        return getattr(self._f, name)


def write_atomic(path: str | Path, write: Callable[[IO], None], mode: str = "w") -> None:
    """Call `write(f)` on a temp file next to `path`, fsync it, then rename it over `path`.
    On failure the temp file is removed and `path` is untouched; an OSError becomes a one-line
    MtlrunError with the real cause, a KeyboardInterrupt propagates as it is."""
    path = Path(path)
    # named before it exists, so that an interrupt inside the open (which mkstemp's returned
    # name would miss) still finds and removes it; 0o666 less the umask, like any file
    tmp = path.parent / f".{path.name}.{secrets.token_hex(8)}{_TEMP_SUFFIX}"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        f = os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), mode)
        try:
            writer = _Writer(f)
            try:
                write(writer)
            except BaseException as e:
                if writer.error is not None and e is not writer.error:
                    raise writer.error from None  # the cause, not torch's report of it
                raise
            if writer.error is not None:  # swallowed by `write`: the file is incomplete
                raise writer.error
            f.flush()
            os.fsync(f.fileno())
        except BaseException:
            _close_quietly(f)  # its buffer would only fail again; the first error counts
            raise
        f.close()
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise MtlrunError(f"cannot write {path}: {e.strerror or e}") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _close_quietly(f: IO) -> None:
    try:
        f.close()
    except OSError:
        try:  # a buffered file whose flush failed keeps its data: close the descriptor anyway
            os.close(f.fileno())
        except (OSError, ValueError):
            pass


def write_text_atomic(path: str | Path, text: str) -> None:
    write_atomic(path, lambda f: f.write(text))


def remove_stale_temps(directory: str | Path) -> list[Path]:
    """Delete the temp files (`.<name>.<random>.tmp`) that interrupted `write_atomic` calls left
    in `directory` (not below it); returns them. Only for a directory this process owns: a
    concurrent writer's temp file would go too."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    stale = [p for p in directory.glob(f".*{_TEMP_SUFFIX}") if p.is_file() and not p.is_symlink()]
    for p in stale:
        p.unlink(missing_ok=True)
    return stale
