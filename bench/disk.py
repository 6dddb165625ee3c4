"""Disk and connections under attack (issue 18): what a hostile client can make the live app hold.

Launches the app in-process (``app.build_demo(ui_visibility="undocumented")``, ``app.launch_kwargs()``: the
production limits unless the NAMECLS_* variables below say otherwise) with a fresh ``GRADIO_TEMP_DIR`` (gradio's
upload folder and cache, where the CSV exports and model zips are written) and ``TMPDIR`` (where a zip is staged), then:

1. upload flood, many addresses: ``--offer-mb`` of ~1 MB one-file uploads from ``--threads`` threads, each request
   from its own address (X-Forwarded-For, trusted from 127.0.0.1): the upload folder's peak size against
   ``MAX_UPLOAD_DISK_BYTES``, and what the refused got;
2. upload flood, one address: ``--one-client`` small uploads as fast as they go: how many got through (the burst);
3. slow connections: ``--slow`` connections that send their headers and then a byte of body every 0.5 s, and as many
   that send a header line a byte at a time: when the server closed them (BODY_SECONDS, HEADER_SECONDS);
4. CSV exports, many addresses: ``--export-clients`` threads calling the Batch tab's event as a script would, each
   call from its own address, with 10,000 names whose rows are the largest an export holds (error rows echoing 100
   four-byte letters, ~8.6 MB a CSV), until the output space has refused ``--export-refusals`` of them or
   ``--export-seconds`` passed: the peak on disk (gradio's cache and the system temp folder, sampled) against
   ``MAX_OUTPUT_DISK_BYTES``, files written and refused, and that every call still got its 10,000-row table; then
   one address with small batches (``--one-exporter`` calls): how many got a file (``EXPORTS_PER_MINUTE``) and what
   the others were told; then the cleanup's deletion gives the space back;
5. model zips: one training at the largest settings (GRU, 256 hidden, 2 layers, 1 epoch, the two smallest
   languages), its time and zip size, then its zip written the way the Train tab writes it (``server.write_zip``),
   one after another until the space refuses: the peak on disk (the zip's staging included) against the cap.

The clients download nothing (gradio_client would save every file it is given into this process's
``GRADIO_TEMP_DIR``, the very folder measured). ``NAMECLS_OUTPUT_SPACE_MB=50`` makes phases 4 and 5 quicker.

    python bench/disk.py                          # production limits; the slow phase takes ~75 s
    NAMECLS_BODY_SECONDS=5 NAMECLS_HEADER_SECONDS=3 python bench/disk.py --skip-zip
    python bench/disk.py --phases 45              # the downloads only

Refusals are expected (that is the point); the floors checked: the upload folder never holds more than the cap,
every refusal is 413/429 with its reason, every slow connection is closed by its deadline (+ 3 s), the files
written for download never hold more than their cap, every export refused still got its table and the reason.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, machine  # noqa: E402

WORK = Path(tempfile.mkdtemp(prefix="namecls-bench-disk-"))
for _sub in ("cache", "tmp"):
    (WORK / _sub).mkdir()
os.environ["GRADIO_TEMP_DIR"] = str(WORK / "cache")
os.environ["TMPDIR"] = str(WORK / "tmp")  # before anything asks tempfile where it is
tempfile.tempdir = None
sys.path.insert(0, str(ROOT))


def folder_bytes(folder: Path) -> tuple[int, int]:
    """(bytes of the files under ``folder``, how many), each inode once."""
    seen, size = set(), 0
    for root, _, files in os.walk(folder):
        for name in files:
            try:
                st = os.lstat(os.path.join(root, name))
            except OSError:
                continue
            if (st.st_dev, st.st_ino) not in seen:
                seen.add((st.st_dev, st.st_ino))
                size += st.st_size
    return size, len(seen)


def multipart(name: str, data: bytes) -> tuple[bytes, str]:
    b = "namecls-bench-disk"
    body = (f'--{b}\r\nContent-Disposition: form-data; name="files"; filename="{name}"\r\n'
            f"Content-Type: text/plain\r\n\r\n").encode() + data + f"\r\n--{b}--\r\n".encode()
    return body, f"multipart/form-data; boundary={b}"


def upload_flood(url: str, cache: Path, offer_mb: int, threads: int, server, service) -> None:
    import httpx

    size = service.MAX_UPLOAD_BYTES - 1000
    count = offer_mb * 2**20 // size
    answers, peak, done = [], [0], threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], folder_bytes(cache)[0])
            time.sleep(0.01)

    def flood(k):
        with httpx.Client(timeout=60) as http:
            for i in range(k, count, threads):
                body, kind = multipart(f"flood{i}.txt", f"{i:08d}\n".encode() * (size // 9))
                address = f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}"
                r = http.post(url + "/gradio_api/upload", content=body,
                              headers={"content-type": kind, "x-forwarded-for": address})
                answers.append((r.status_code, r.text[:80]))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    began = time.monotonic()
    workers = [threading.Thread(target=flood, args=(k,)) for k in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    wall = time.monotonic() - began
    done.set()
    sampler.join()
    end, files = folder_bytes(cache)
    codes = sorted({a for a in answers})
    ok = sum(1 for a in answers if a[0] == 200)
    print(f"\n## 1. Upload flood: {count} x {size / 2**20:.2f} MB ({count * size / 2**20:.0f} MB) from {threads} "
          f"threads, one address each, in {wall:.1f} s")
    print(f"cap MAX_UPLOAD_DISK_BYTES {server.MAX_UPLOAD_DISK_BYTES / 2**20:.0f} MB; upload folder peak "
          f"{max(peak[0], end) / 2**20:.1f} MB, at the end {end / 2**20:.1f} MB in {files} files; accepted {ok}, "
          f"refused {len(answers) - ok}")
    for code, text in codes:
        if code != 200:
            print(f"  {code}: {sum(1 for a in answers if a == (code, text))} x {text!r}")
    assert max(peak[0], end) <= server.MAX_UPLOAD_DISK_BYTES, "the upload folder held more than the cap"
    assert all(code in (200, 413) for code, _ in answers)


def one_client_flood(url: str, n: int) -> None:
    import httpx

    body, kind = multipart("one.txt", b"Nguyen\n")
    with httpx.Client(timeout=30) as http:
        began = time.monotonic()
        codes = [http.post(url + "/gradio_api/upload", content=body,
                           headers={"content-type": kind, "x-forwarded-for": "10.255.0.1"}) for _ in range(n)]
        wall = time.monotonic() - began
    ok = sum(1 for r in codes if r.status_code == 200)
    limited = [r for r in codes if r.status_code == 429]
    print(f"\n## 2. One address, {n} small uploads in {wall:.1f} s: accepted {ok}, 429 {len(limited)}"
          + (f" (Retry-After {limited[0].headers.get('retry-after')} s: {limited[0].text!r})" if limited else ""))
    assert ok + len(limited) == n


def slow_connections(url: str, n: int, server) -> None:
    from urllib.parse import urlparse

    where = urlparse(url)
    body, kind = multipart("slow.txt", b"Nguyen\n" * 1000)
    head = (f"POST /gradio_api/upload HTTP/1.1\r\nHost: x\r\nContent-Type: {kind}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode()
    socks = []
    for i in range(2 * n):
        s = socket.create_connection((where.hostname, where.port))
        s.setblocking(False)
        s.sendall(head if i < n else b"GET / HTTP/1.1\r\nHost: x\r\n")
        socks.append([s, time.monotonic(), None, b""])
    limit = max(server.BODY_SECONDS, server.HEADER_SECONDS) + 10
    began = time.monotonic()
    while time.monotonic() - began < limit and any(c[2] is None for c in socks):
        time.sleep(0.5)
        for c in socks:
            if c[2] is not None:
                continue
            try:
                data = c[0].recv(65536)
                if not data:
                    c[2] = time.monotonic() - c[1]
                c[3] += data
            except BlockingIOError:
                pass
            except OSError:
                c[2] = time.monotonic() - c[1]
            if c[2] is None:
                try:
                    c[0].send(b"A" if socks.index(c) < n else b"x")
                except OSError:
                    pass
    for c in socks:
        c[0].close()
    for label, group, deadline in (("body", socks[:n], server.BODY_SECONDS),
                                   ("headers", socks[n:], server.HEADER_SECONDS)):
        times = [c[2] for c in group if c[2] is not None]
        first = {c[3][:12] for c in group}
        low, high = min(times, default=float("nan")), max(times, default=float("nan"))
        print(f"\n## 3. {n} slow {label} (deadline {deadline:g} s): closed {len(times)}/{n}, after "
              f"{low:.1f}-{high:.1f} s; answers {sorted(first)}")
        assert len(times) == n and max(times) <= deadline + 3, f"a slow {label} connection outlived its deadline"


# 10,000 names whose export rows are large and cheap: an error row echoes the name (≤ 100 characters) and its reason
EXPORT_NAMES = "\n".join("😀" * 99 + chr(0x1F600 + i % 50) for i in range(10_000))  # dropped letters: 860 B a row


class Peak:
    """The largest size (bytes allocated, folders included) the folders reach while it runs, sampled every 10 ms."""

    def __init__(self, *folders: Path):
        self.folders, self.bytes, self._done = folders, 0, threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def allocated(self) -> int:
        seen, total = set(), 0
        for folder in self.folders:
            for root, dirs, files in os.walk(folder):
                for name in dirs + files:
                    try:
                        st = os.lstat(os.path.join(root, name))
                    except OSError:
                        continue
                    if (st.st_dev, st.st_ino) not in seen:
                        seen.add((st.st_dev, st.st_ino))
                        total += st.st_blocks * 512
        return total

    def _sample(self):
        while not self._done.is_set():
            self.bytes = max(self.bytes, self.allocated())
            time.sleep(0.01)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._done.set()
        self._thread.join()
        self.bytes = max(self.bytes, self.allocated())


def _button(download) -> tuple[bool, str]:
    """(whether the Batch tab's answer offers a file, its button's label)."""
    return bool(download.get("value")), str(download.get("label"))


def exports(url: str, tmp: Path, cache: Path, clients: int, seconds: float, refusals: int, one: int,
            server) -> None:
    from gradio_client import Client

    def call(address: str, text: str):
        c = Client(url, verbose=False, download_files=False, headers={"x-forwarded-for": address})
        return c.predict(None, text, "gru", "lists", api_name="/ui_batch")

    server.sweep_cache(cache, max_age=-1)
    server.OUTPUT_SPACE.prune()
    cap = server.MAX_OUTPUT_DISK_BYTES
    answers, stop, counter, lock = [], time.monotonic() + seconds, [0], threading.Lock()

    def run():
        while time.monotonic() < stop and sum(not a[1] for a in answers) < refusals:
            with lock:
                counter[0] += 1
                i = counter[0]
            t = time.monotonic()
            summary, table, download = call(f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}", EXPORT_NAMES)
            answers.append((time.monotonic() - t, *_button(download), summary.startswith("**10,000** names"),
                            len(table["data"])))

    began = time.monotonic()
    with Peak(cache, tmp) as peak:
        workers = [threading.Thread(target=run) for _ in range(clients)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
    wall = time.monotonic() - began
    written = [a for a in answers if a[1]]
    refused = [a for a in answers if not a[1]]
    each = max((os.path.getsize(p) for p in cache.rglob("*.csv")), default=0)
    print(f"\n## 4. CSV exports, {clients} clients, each call from its own address, 10,000 names "
          f"(~{each / 2**20:.1f} MB a CSV) for {wall:.0f} s: {len(answers)} calls "
          f"({sorted(a[0] for a in answers)[len(answers) // 2]:.2f} s "
          f"median), {len(written)} files written, {len(refused)} refused")
    print(f"cap MAX_OUTPUT_DISK_BYTES {cap / 2**20:.0f} MB; peak on disk (gradio cache + system temp) "
          f"{peak.bytes / 2**20:.1f} MB; output space used {server.OUTPUT_SPACE.used / 2**20:.1f} MB; "
          f"{len(list(cache.rglob('*.csv')))} CSV files on disk (one per export: gradio serves them, no copy)")
    for label in sorted({a[2] for a in answers}):
        print(f"  {sum(1 for a in answers if a[2] == label)} x {label!r}")
    assert peak.bytes <= cap, "the files written for download held more than the cap"
    assert all(a[3] and a[4] == 10_000 for a in answers), "a call did not get its whole table"
    assert all(a[2] == f"No CSV file: {server.OutputSpace.FULL}" for a in refused)

    server.sweep_cache(cache, max_age=-1)  # as the cleanup would, CACHE_SECONDS later
    server.OUTPUT_SPACE.prune()
    began = time.monotonic()
    small = [call("10.255.0.2", "Nguyen\nQin\nSmith") for _ in range(one)]
    wall = time.monotonic() - began
    got = [_button(d) for _, _, d in small]
    print(f"\n## 4b. One address, {one} small batches in {wall:.1f} s: {sum(g for g, _ in got)} got a file "
          f"(EXPORTS_PER_MINUTE {server.EXPORTS_PER_MINUTE:g}), {sum(not g for g, _ in got)} told "
          f"{next((label for g, label in got if not g), '-')!r}; every table answered: "
          f"{all(s.startswith('**3** names') for s, _, _ in small)}")
    server.sweep_cache(cache, max_age=-1)
    server.OUTPUT_SPACE.prune()
    print(f"after the cleanup deleted them: output space used {server.OUTPUT_SPACE.used / 2**20:.1f} MB; a new export "
          f"gets a file: {_button(call('10.255.0.3', 'Nguyen')[2])[0]}")
    server.sweep_cache(cache, max_age=-1)
    server.OUTPUT_SPACE.prune()


def model_zip(tmp: Path, cache: Path, server) -> None:
    from namecls.data.names import find_or_download_data
    from namecls.training.fit import fit

    folder = find_or_download_data()
    sizes = {f.stem: len(f.read_bytes().splitlines()) for f in Path(folder).glob("*.txt")}
    smallest = sorted(sizes, key=sizes.get)[:2]
    began = time.monotonic()
    mine = fit(folder, kind="gru", languages=smallest, hidden_size=256, num_layers=2, epochs=1, time_budget=5)
    took = time.monotonic() - began
    cap = server.MAX_OUTPUT_DISK_BYTES
    paths, began = [], time.monotonic()
    with Peak(cache, tmp) as peak:
        while (path := server.write_zip(mine, "namecls-gru-yours.zip", cache)) is not None:
            paths.append(path)
    wall = time.monotonic() - began
    size = os.path.getsize(paths[0]) if paths else 0
    life = 1.5 * server.CACHE_SECONDS
    print(f"\n## 5. Model zip: GRU 256 x 2 layers, 1 epoch on {smallest}: {took:.1f} s, zip {size / 2**20:.2f} MB "
          f"(reserved while written: ZIP_RESERVE_BYTES {server.ZIP_RESERVE_BYTES / 2**20:.0f} MB); uncapped, one "
          f"training after another for {life:.0f} s: {life / took * size / 2**30:.2f} GB")
    print(f"written as the Train tab writes them until refused: {len(paths)} zips in {wall:.1f} s, then "
          f"{server.OutputSpace.FULL!r}; cap {cap / 2**20:.0f} MB, peak on disk (gradio cache + system temp, the "
          f"zip's staging included) {peak.bytes / 2**20:.1f} MB; {len(list(cache.rglob('*.zip')))} zip files on disk")
    assert peak.bytes <= cap, "the model zips held more than the cap"
    server.sweep_cache(cache, max_age=-1)
    server.OUTPUT_SPACE.prune()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--offer-mb", type=int, default=300, help="MB of uploads offered in phase 1 (default: 300)")
    p.add_argument("--threads", type=int, default=4, help="threads of phase 1 (default: 4)")
    p.add_argument("--one-client", type=int, default=200, help="uploads from one address in phase 2 (default: 200)")
    p.add_argument("--slow", type=int, default=30, help="slow connections of each kind in phase 3 (default: 30)")
    p.add_argument("--export-clients", type=int, default=4, help="clients of phase 4 (default: 4)")
    p.add_argument("--export-seconds", type=float, default=300, help="phase 4 at most this long (default: 300)")
    p.add_argument("--export-refusals", type=int, default=8,
                   help="phase 4 ends after this many exports refused for want of space (default: 8)")
    p.add_argument("--one-exporter", type=int, default=30, help="small batches from one address (default: 30)")
    p.add_argument("--skip-zip", action="store_true", help="skip phase 5 (a training)")
    p.add_argument("--phases", default="12345", help="the phases to run, e.g. 45 (default: 12345)")
    args = p.parse_args()

    import torch

    torch.set_num_threads(1)
    import app
    from namecls.serving import service
    from namecls.ui import server

    print(f"# bench/disk.py, {time.strftime('%Y-%m-%d %H:%M %Z')}\nmachine: {machine()}")
    print(f"settings: {' '.join(sys.argv[1:]) or '(defaults)'}; upload space "
          f"{server.MAX_UPLOAD_DISK_BYTES / 2**20:.0f} MB, {server.UPLOADS_PER_MINUTE:g} uploads a minute per "
          f"address, body {server.BODY_SECONDS:g} s, headers {server.HEADER_SECONDS:g} s, cache "
          f"{server.CACHE_SECONDS} s, output space {server.MAX_OUTPUT_DISK_BYTES / 2**20:.0f} MB, "
          f"{server.EXPORTS_PER_MINUTE:g} exports a minute per address; work folder {WORK}", flush=True)
    demo = app.build_demo(ui_visibility="undocumented")
    _, url, _ = demo.launch(prevent_thread_lock=True, quiet=True, **app.launch_kwargs())
    url = url.rstrip("/")
    try:
        if "1" in args.phases:
            upload_flood(url, WORK / "cache", args.offer_mb, args.threads, server, service)
        if "2" in args.phases:
            one_client_flood(url, args.one_client)
        server.sweep_cache(WORK / "cache", max_age=-1)  # as the cleanup would: the upload space is free again
        time.sleep(1.5)
        if "3" in args.phases:
            slow_connections(url, args.slow, server)
        if "4" in args.phases:
            exports(url, WORK / "tmp", WORK / "cache", args.export_clients, args.export_seconds, args.export_refusals,
                    args.one_exporter, server)
        if "5" in args.phases and not args.skip_zip:
            model_zip(WORK / "tmp", WORK / "cache", server)
    finally:
        demo.close()
        import shutil

        shutil.rmtree(WORK, ignore_errors=True)


if __name__ == "__main__":
    main()
