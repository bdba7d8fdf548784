"""Stage 0, primitives every stage shares: atomic writes, file locks, choices a folder keeps
once made, and signals held while a record is written.

Public for plugins: a file written whole or not at all, and a lock between processes."""

from ablate.base.atomic import WriteError, write_file_atomic, write_parquet_atomic, write_text_atomic
from ablate.base.locks import FileLock

__all__ = ["FileLock", "WriteError", "write_file_atomic", "write_parquet_atomic", "write_text_atomic"]
