"""The ``namecls`` command line (``python -m namecls`` is the same): classify a few names, a whole file, or trace
one name character by character, on the committed checkpoints.

    namecls predict Qin Nakamura O'Connell [--model gru] [-k 3] [--prior lists] [--json]
    namecls batch voters.csv -o voters-namecls.parquet [--column surname] [--prior lists] [--chunk-size 10000]
    namecls trace Nakamura [--model gru] [--prior lists]

``--prior equal`` answers as if every language were equally likely before the name is read
(:mod:`namecls.posthoc.prior`);
the default, ``lists``, is the network's answer as trained, the training lists' proportions (half of them Russian).

``batch`` streams: it reads, classifies (:func:`namecls.serving.bulk.annotate`, the library's batch path) and writes one
chunk at a time, so its memory stays flat however long the file is. Bad input (an unknown model, a missing file or
column, an unreadable file, an unknown extension, a CSV/TSV row with more or fewer fields than its header) ends
the command with one line on stderr, ``namecls: error: …``, and exit code 2, never a traceback; an output file is
written beside its final name and renamed there only when the whole input went through (Ctrl-C or a SIGTERM
removes it). Text cells of a CSV, TSV or TXT output that a spreadsheet would run as a formula are defused as the
app's Batch tab download defuses them (``--raw-cells`` writes them as they are).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import itertools
import json
import os
import signal
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from . import bulk, service
from ..posthoc import prior as prior_rule
from ..inference import MODEL_NAMES
from ..errors import InputError

if TYPE_CHECKING:  # the bulk extra's pyarrow: imported only when a Parquet file is read or written
    import pyarrow.parquet

TAB = "\t"
FORMATS = {".csv": "csv", ".tsv": "tsv", ".txt": "txt", ".parquet": "parquet"}
STREAM_FORMATS = ("csv", "tsv", "txt")  # what stdin and stdout ("-") can carry
SEPARATORS = {"csv": ",", "tsv": TAB, "txt": TAB}  # a .txt output is written tab-separated, with a header
DEFAULT_CHUNK = service.MAX_BATCH_NAMES


class _Parser(argparse.ArgumentParser):
    """argparse, with a usage mistake reported in one line (``--help`` shows the usage)."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _one_line(err: BaseException) -> str:
    """An exception's message on one line (pandas' parser messages span several)."""
    return " ".join(part.strip() for part in str(err).splitlines() if part.strip())


def _table(headers: list[str], rows: list[list[str]]) -> str:
    """Plain-text columns for a terminal, each as wide as its widest cell."""
    widths = [max(len(cell) for cell in column) for column in zip(headers, *rows)]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip()
                     for row in [headers, *rows])


def _percent(p: float) -> str:
    return f"{p:.1%}"


# ---------------------------------------------------------------------------------------------------------------
# predict and trace


def _checked_names(names: list[str]) -> list:
    """Each name validated (:func:`namecls.serving.service.check_name`); the first bad one ends the command."""
    checked = []
    for name in names:
        try:
            checked.append(service.check_name(name))
        except ValueError as err:
            raise ValueError(f"name {name!r}: {err}") from None
    return checked


def predict(args: argparse.Namespace) -> None:
    """A table of each name's top-k languages, prediction set and training languages; or, with ``--json``, one
    JSON object per line: :func:`namecls.serving.service.predict_details`, as the app's ``/predict_details`` returns
    it."""
    k = bulk.check_k(args.model, args.k)
    clf = service.pick_model(bulk.MODELS, args.model)
    prior = service.check_prior(clf, args.prior)
    details = [service.details(clf, norm, k, prior=prior) for norm in _checked_names(args.names)]
    if args.json:
        for row in details:
            print(json.dumps(row, ensure_ascii=False))
        return
    headers = ["name", *(f"#{i}" for i in range(1, k + 1)), "prediction set", "in training as"]
    rows = [[row["name"], *(f"{lang} {_percent(p)}" for lang, p in row["top"].items()),
             " or ".join(row["set"] or []), ", ".join(row["seen_as"] or []) or "-"] for row in details]
    print(_table(headers, rows))


def trace(args: argparse.Namespace) -> None:
    """The most probable language after each character of one name (:func:`namecls.serving.service.trace`)."""
    (name,) = _checked_names([args.name])
    t = service.trace(bulk.MODELS, name, args.model, args.prior)
    rows = []
    for i, (char, probs) in enumerate(zip(t["chars"], t["probs"]), 1):
        best = max(range(len(probs)), key=probs.__getitem__)
        rows.append([str(i), "(space)" if char == " " else char, t["labels"][best], _percent(probs[best])])
    read_as = "" if t["normalized"] == t["name"] else f", read as {t['normalized']!r}"
    prior = "" if t["prior"] == prior_rule.DEFAULT else f", {t['prior']} prior"
    print(f"{t['name']} ({t['model']}{prior}{read_as}): the top language after each character")
    print(_table(["step", "character", "top language", "probability"], rows))


# ---------------------------------------------------------------------------------------------------------------
# batch


def _format(place: str, forced: str | None, role: str) -> str:
    """The format of an input or output: ``--format`` (or CSV) for ``-``, else the file's extension."""
    if place == "-":
        return forced or "csv"
    suffix = Path(place).suffix.lower()
    if suffix not in FORMATS:
        raise ValueError(f"{role} {place!r} has an unknown extension {suffix or '(none)'!r}: use "
                         f"{', '.join(FORMATS)}")
    return FORMATS[suffix]


def _header_names(fields: list[str], sep: str) -> list[str]:
    """The column names pandas' ``read_csv`` gives a header row (a repeated name gets ``.1``, an empty one
    ``Unnamed: i``), so the columns are named as they always were."""
    import pandas as pd

    text = io.StringIO()
    csv.writer(text, delimiter=sep).writerow(fields)
    return [str(name) for name in pd.read_csv(io.StringIO(text.getvalue()), sep=sep, dtype=str, nrows=0).columns]


def _read_delimited(handle, sep: str, chunk_size: int):
    """pandas frames of at most ``chunk_size`` rows from a CSV/TSV handle: a header row, every cell text as it is,
    blank lines skipped. Every row must have as many fields as the header: one with more or fewer (which pandas'
    reader would shift into an index or pad with empty cells without a word) is a ``ValueError`` naming its line,
    and so is a quote left open or followed by text."""
    import pandas as pd

    reader = csv.reader(handle, delimiter=sep, strict=True)
    quote_hint = f" (quote a field that holds a {'tab' if sep == TAB else 'comma'})"
    rows: list[list[str]]  # the fields of the rows read since the last frame
    names, rows, start, line = None, [], 0, 0  # line: the last physical line read (a quoted field may span lines)

    def frame():
        columns = zip(*rows) if rows else [()] * len(names)
        return pd.DataFrame({name: pd.array(list(cells), dtype="str") for name, cells in zip(names, columns)},
                            index=pd.RangeIndex(start, start + len(rows)))

    try:
        for fields in reader:
            at, line = line + 1, reader.line_num
            if not fields:  # a blank line
                continue
            if names is None:
                names = _header_names(fields, sep)
                continue
            if len(fields) != len(names):
                raise ValueError(f"line {at} has {len(fields)} field{'s' * (len(fields) != 1)}, the header has "
                                 f"{len(names)}{quote_hint if len(fields) > len(names) else ''}")
            rows.append(fields)
            if len(rows) == chunk_size:
                yield frame()
                start, rows = start + len(rows), []
    except csv.Error as err:
        raise ValueError(f"line {line + 1}: {err}") from None
    if names is None:
        raise ValueError("it is empty: a CSV or TSV input needs a header row")
    if rows or not start:  # the last rows; an empty table still gives its (empty) frame
        yield frame()


def _read_text(handle, fmt: str, chunk_size: int, column: str):
    """pandas frames of at most ``chunk_size`` rows from a CSV/TSV (:func:`_read_delimited`) or TXT (one name a
    line, blank lines skipped, as the app's Batch tab reads them) handle."""
    import pandas as pd

    if fmt == "txt":
        names = filter(None, (line.strip() for line in handle))
        chunks = iter(lambda: list(itertools.islice(names, chunk_size)), [])
        first = next(chunks, [])
        for chunk in itertools.chain([first], chunks):  # an empty file still gives its (empty) table
            yield pd.DataFrame({column: pd.array(chunk, dtype="str")})
        return
    yield from _read_delimited(handle, SEPARATORS[fmt], chunk_size)


def _pyarrow():
    """pyarrow, which Parquet files need: the ``bulk`` extra, not a requirement of the app or the library."""
    try:
        import pyarrow
    except ImportError:
        raise InputError("Parquet files need pyarrow: pip install 'namecls[bulk]' (or pyarrow)") from None
    return pyarrow


def _parquet():
    """pyarrow.parquet (:func:`_pyarrow`)."""
    _pyarrow()
    import pyarrow.parquet

    return pyarrow.parquet


def _read_parquet(path: Path, chunk_size: int):
    """pandas frames of at most ``chunk_size`` rows from a Parquet file, each column keeping its Arrow type."""
    import pandas as pd

    pq = _parquet()
    with pq.ParquetFile(path) as source:
        batches = source.iter_batches(batch_size=chunk_size)
        first = next(batches, None) or source.schema_arrow.empty_table()  # an empty file still gives its table
        for batch in itertools.chain([first], batches):
            yield batch.to_pandas(types_mapper=pd.ArrowDtype)


def _frames(place: str, fmt: str, chunk_size: int, txt_column: str):
    """The input's chunks as pandas frames (at least one, maybe empty); a read failure becomes a ``ValueError``
    that names the input."""
    label = "stdin" if place == "-" else place
    try:
        if fmt == "parquet":
            yield from _read_parquet(Path(place), chunk_size)
        elif place == "-":
            yield from _read_text(open(sys.stdin.fileno(), encoding="utf-8-sig", newline="", closefd=False), fmt,
                                  chunk_size, txt_column)
        else:
            with open(place, encoding="utf-8-sig", newline="") as handle:
                yield from _read_text(handle, fmt, chunk_size, txt_column)
    except UnicodeDecodeError:
        raise ValueError(f"cannot read {label}: it is not UTF-8 text (save it as UTF-8)") from None
    except (ValueError, OSError) as err:  # pandas' and pyarrow's parse errors are ValueErrors
        raise ValueError(f"cannot read {label}: {_one_line(err)}") from None


def _name_column(columns, wanted: str | None, label: str) -> str:
    """``--column``, else the first column headed like a surname (as the Batch tab: name, surname, last_name …)."""
    if wanted is not None:
        return wanted
    for column in columns:
        if str(column).strip().lower() in service.NAME_HEADERS:
            return column
    raise ValueError(f"{label} has no column headed name, surname, last_name or the like: name the column with "
                     f"--column (its columns: {', '.join(map(str, columns)) or 'none'})")


class _TextSink:
    """Writes frames one after another to a text handle as CSV or TSV (:func:`namecls.serving.service.write_table`,
    the Batch tab's writer), the header before the first; with ``defuse``, formula-like text cells defused."""

    def __init__(self, handle, fmt: str, defuse: bool = True):
        self.handle, self.separator, self.header, self.defuse = handle, SEPARATORS[fmt], True, defuse

    def __call__(self, frame) -> None:
        service.write_table(frame, self.handle, self.separator, self.header, self.defuse)
        self.header = False


class _ParquetSink:
    """Writes frames one after another into one Parquet file; the first frame's dtypes fix every column's type."""

    def __init__(self, path: Path):
        self.path = path
        self.writer: pyarrow.parquet.ParquetWriter | None = None

    def __call__(self, frame) -> None:
        pa, pq = _pyarrow(), _parquet()
        if self.writer is None:
            self.writer = pq.ParquetWriter(self.path, pa.Schema.from_pandas(frame, preserve_index=False))
        self.writer.write_table(pa.Table.from_pandas(frame, schema=self.writer.schema, preserve_index=False))

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


@contextlib.contextmanager
def _sink(place: str, fmt: str, defuse: bool = True):
    """A function that writes one annotated frame after another: to stdout, or to a temporary file beside
    ``place`` that is renamed to ``place`` when the block ends without an error (and removed if it does not, be it
    an error, Ctrl-C or SIGTERM). ``defuse``: text output's formula-like cells are defused (:class:`_TextSink`)."""
    if place == "-":
        yield _TextSink(sys.stdout, fmt, defuse)
        sys.stdout.flush()
        return
    final = Path(place)
    if not final.parent.is_dir():
        raise ValueError(f"cannot write {place}: there is no folder {str(final.parent)!r}")
    partial = final.with_name(f".{final.name}.{os.getpid()}.part")
    try:
        if fmt == "parquet":
            with contextlib.closing(_ParquetSink(partial)) as sink:
                yield sink
        else:
            with open(partial, "w", encoding="utf-8", newline="") as handle:
                yield _TextSink(handle, fmt, defuse)
        os.replace(partial, final)
    finally:
        partial.unlink(missing_ok=True)


def _row_count(place: str, fmt: str) -> int | None:
    """The number of rows of a Parquet file (from its footer), for the progress bar; None for text."""
    if fmt != "parquet":
        return None
    with _parquet().ParquetFile(place) as source:
        return source.metadata.num_rows


def _input(args: argparse.Namespace, fmt: str, k: int):
    """The input's chunks and its name column, with annotate's checks (the column is there, none is named like an
    answer) made on the first chunk's columns, before anything is written."""
    label = "stdin" if args.input == "-" else args.input
    frames = _frames(args.input, fmt, args.chunk_size, args.column or "name")
    first = next(frames)
    column = _name_column(first.columns, args.column, label)
    try:
        bulk.annotate(first.iloc[:0], column, args.model, k)
    except ValueError as err:
        raise ValueError(f"{label}: {err}") from None
    return itertools.chain([first], frames), column


def batch(args: argparse.Namespace) -> None:
    """Annotate every name of a CSV, TSV, TXT or Parquet file (or stdin), one chunk at a time, into another (or
    stdout): the input's columns, then the answer columns of :func:`namecls.serving.bulk.annotate`."""
    from tqdm import tqdm

    if args.input != "-":
        source = Path(args.input)
        if not source.exists():
            raise ValueError(f"no such file: {args.input}")
        if not source.is_file():
            raise ValueError(f"{args.input} is not a file")
        if args.output != "-" and Path(args.output).resolve() == source.resolve():
            raise ValueError("the output would overwrite the input: choose another -o")
    in_format = _format(args.input, args.format, "input")
    out_format = _format(args.output, args.format, "output")
    k = bulk.check_k(args.model, args.k)  # loads the checkpoint now: the progress bar's rate leaves it out
    service.check_prior(service.pick_model(bulk.MODELS, args.model), args.prior)
    frames, column = _input(args, in_format, k)
    with _sink(args.output, out_format, defuse=not args.raw_cells) as write, \
            tqdm(total=_row_count(args.input, in_format), unit=" names", file=sys.stderr, disable=args.no_progress,
                 desc="namecls batch") as bar:  # the bar after the sink: a folder that is not there, no bar
        for frame in frames:
            _stop_if_terminated()  # a SIGTERM whose exception was swallowed (e.g. raised inside a __del__)
            write(bulk.annotate(frame, column, args.model, k, args.prior))
            bar.update(len(frame))


# ---------------------------------------------------------------------------------------------------------------


def _positive(text: str) -> int:
    """An argument that must be a whole number, at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The ``namecls`` parser: one subcommand each for :func:`predict`, :func:`batch` and :func:`trace`."""
    parser = _Parser(prog="namecls", description="Which of 18 languages a surname comes from, with a character "
                     "RNN and a GRU (the committed checkpoints).")
    commands = parser.add_subparsers(title="commands", required=True, metavar="COMMAND")

    def model_option(p, default="gru"):
        p.add_argument("--model", choices=MODEL_NAMES, default=default,
                       help=f"which network answers: rnn or gru (default: {default})")

    def prior_option(p):
        p.add_argument("--prior", choices=prior_rule.PRIORS, default=prior_rule.DEFAULT,
                       help="how likely each language is before the name is read: lists, as common as in the "
                       "training lists (half of them Russian), or equal, every language equally likely, for names "
                       f"whose mix favours no language (default: {prior_rule.DEFAULT})")

    def k_option(p):
        p.add_argument("-k", type=int, default=3, help="how many of the most probable languages to give, 1-18 "
                       "(default: 3)")

    p = commands.add_parser("predict", help="the most probable languages of one or more names",
                            description="The most probable languages of each name, its prediction set and its "
                            "languages in the training lists.")
    p.add_argument("names", nargs="+", metavar="NAME", help="a surname (quote it if it has spaces)")
    model_option(p)
    k_option(p)
    prior_option(p)
    p.add_argument("--json", action="store_true", help="one JSON object per name and line (the fields of the app's "
                   "/predict_details) instead of a table")
    p.set_defaults(command=predict)

    p = commands.add_parser("batch", help="annotate every name of a CSV, TSV, TXT or Parquet file",
                            description="Classify every name of a file, a chunk at a time (memory stays flat), "
                            "into another file: the input's columns, then normalized, top1, probability, top2, "
                            "probability2 ... top{k}, probability{k}, low_confidence, set, seen_as and error. "
                            "Formats go by extension (.csv, .tsv, .txt: one name a line, .parquet).")
    p.add_argument("input", metavar="INPUT", help="the file to read, or - for stdin (CSV unless --format)")
    p.add_argument("-o", "--output", default="-", metavar="OUTPUT",
                   help="the file to write (its extension picks the format; a .txt is written tab-separated), or "
                   "- for stdout (default: -, CSV unless --format)")
    p.add_argument("--column", help="the column that holds the names (default: the first headed name, surname, "
                   "last_name or the like; for a .txt input, the name given to its one column, default: name)")
    model_option(p)
    k_option(p)
    prior_option(p)
    p.add_argument("--chunk-size", type=_positive, default=DEFAULT_CHUNK, metavar="N",
                   help=f"names read, classified and written at a time (default: {DEFAULT_CHUNK:,})")
    p.add_argument("--format", choices=STREAM_FORMATS,
                   help="the format of - (stdin and stdout; default: csv); files go by their extension")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    p.add_argument("--raw-cells", action="store_true",
                   help="write CSV, TSV and TXT output cells exactly as they are. By default a text cell (or "
                   "column name) that a spreadsheet would run as a formula, one starting with = + - @ or a tab or "
                   "carriage return, gets a leading apostrophe, as the app's Batch tab download does. Parquet "
                   "output is always raw")
    p.set_defaults(command=batch)

    p = commands.add_parser("trace", help="the top language after each character of a name",
                            description="How the network reads one name: after each character, its most probable "
                            "language and that language's probability.")
    p.add_argument("name", metavar="NAME", help="a surname (quote it if it has spaces)")
    model_option(p)
    prior_option(p)
    p.set_defaults(command=trace)
    return parser


class _Terminated(BaseException):
    """Raised by the SIGTERM handler, so a terminated command unwinds (and removes its partial output) as Ctrl-C
    does; a BaseException, so no ``except Exception`` swallows it."""


_TERMINATED = threading.Event()


def _raise_terminated(signum, frame):
    _TERMINATED.set()
    raise _Terminated


def _stop_if_terminated() -> None:
    """Raise :class:`_Terminated` if a SIGTERM arrived: Python drops an exception a signal handler raises while a
    destructor runs, so the batch loop checks again between chunks."""
    if _TERMINATED.is_set():
        raise _Terminated


@contextlib.contextmanager
def _sigterm_unwinds():
    """While the block runs (in the main thread), SIGTERM raises :class:`_Terminated`; the old handler after."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _TERMINATED.clear()
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(argv: list[str] | None = None) -> int:
    """Run one command; 0 when it went through, 2 for bad input (one line on stderr), 130 when interrupted (Ctrl-C),
    143 when terminated (SIGTERM); either way a partial output file is removed."""
    args = build_parser().parse_args(argv)
    try:
        with _sigterm_unwinds():
            args.command(args)
    except BrokenPipeError:  # the reader of stdout went away (`namecls batch big.csv | head`): stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except (ValueError, OSError) as err:  # the library's ValueErrors and files that cannot be read or written
        print(f"namecls: error: {_one_line(err)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("namecls: interrupted", file=sys.stderr)
        return 130
    except _Terminated:
        print("namecls: terminated", file=sys.stderr)
        return 143
    return 0
