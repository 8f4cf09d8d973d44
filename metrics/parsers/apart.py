"""A run's files parsed in a process of their own.

Parsing (reading, `json.loads`, the record transforms, the extras' JSON text) is most of a
run's Python work, and the run's own process has identities to resolve and PostgreSQL to feed.
A Python process runs Python on one core at a time, so the parser gets a process: forked (not
spawned, which would set Django up again) before the run starts its writer thread, it sends
its items back in batches through a pipe. A pipe holds little, so a parser that is ahead waits:
memory stays bounded whatever the file size.

    with parsed_apart(paths, max_decompressed_bytes=…) as files:
        for parsed in files:            # a `Parsed` per path, in order
            for item in parsed.items:   # as open_metrics_file gives them (what is left
                …                       # unread is skipped at the next file)

What goes wrong comes back as it would in one process: `Refused` (a file refused, at its start
or on the way) with its message; anything else as ParserProcessError, with the parser's
traceback. The parser process is stopped on the way out, whatever happened.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import traceback
from collections.abc import Iterator
from contextlib import contextmanager, suppress

from metrics.parsers import MetricRow, Parsed, Refused, Rejected, open_metrics_file
from metrics.parsers.records import Invalid, copy_text

BATCH = 1000  # items per message: about 1 MB of Copilot rows


class ParserProcessError(RuntimeError):
    """The parser process failed; the message is its traceback."""


def _portable(item):
    """An item as it travels: a metric row's extras as their COPY text (pickling the dict
    would cost more than encoding it), or the row's rejection."""
    if isinstance(item, MetricRow):
        try:
            item.extras_text = copy_text(item.extras)
        except Invalid as exc:
            return Rejected(item.line, str(exc))
        item.extras = {}
    return item


def _parse(paths: list[str], max_decompressed_bytes: int, send) -> None:
    """The parser process: (kind, value, batch) messages, in order."""
    try:
        for path in paths:
            with open_metrics_file(path, max_decompressed_bytes=max_decompressed_bytes) as parsed:
                send.send(("file", parsed.format, None))
                batch = []
                for item in parsed.items:
                    batch.append(_portable(item))
                    if len(batch) >= BATCH:
                        send.send(("items", parsed.position(), batch))
                        batch = []
                send.send(("items", parsed.position(), batch))
            send.send(("end", None, None))
    except Refused as exc:
        send.send(("refused", str(exc), None))
    except BaseException:
        send.send(("error", traceback.format_exc(), None))
    finally:
        send.close()


def _receive(connection) -> tuple:
    try:
        kind, value, batch = connection.recv()
    except EOFError:
        raise ParserProcessError("the parser process ended without finishing") from None
    if kind == "refused":
        raise Refused(value)
    if kind == "error":
        raise ParserProcessError(value)
    return kind, value, batch


def _items(connection, at: list) -> Iterator:
    while True:
        kind, position, batch = _receive(connection)
        if kind == "end":
            return
        at[0] = position
        yield from batch


def _files(connection, count: int) -> Iterator[Parsed]:
    items = iter(())
    for _ in range(count):
        for _item in items:  # what the caller left of the previous file
            pass
        _kind, fmt, _batch = _receive(connection)
        at = [0]
        items = _items(connection, at)
        yield Parsed(fmt, items, lambda at=at: at[0])


@contextmanager
def parsed_apart(paths, *, max_decompressed_bytes: int):
    """The files at `paths`, parsed in a child process: an iterator of their `Parsed`."""
    paths = [str(p) for p in paths]
    receiving, sending = multiprocessing.Pipe(duplex=False)
    # os.fork, not multiprocessing.Process: the ingest worker's processes are Celery's
    # daemonic pool processes, which multiprocessing does not let have children.
    pid = os.fork()
    if pid == 0:  # the parser process
        code = 1
        try:
            receiving.close()
            _parse(paths, max_decompressed_bytes, sending)
            code = 0
        finally:
            # No atexit handlers, no flushing of the run's buffers, no closing of its
            # database connection: none of them is the parser's.
            os._exit(code)
    sending.close()  # the parser's end: EOF here once the parser is gone
    try:
        yield _files(receiving, len(paths))
    finally:
        receiving.close()
        # A run that stops early does not wait for the rest of its files; a parser that has
        # finished is only reaped.
        with suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
