"""Disk and connections under attack (issue 18): what a hostile client can make the live app hold.

Launches the app in-process (``app.build_demo(ui_visibility="undocumented")``, ``app.launch_kwargs()``: the
production limits unless the NAMECLS_* variables below say otherwise) with a fresh ``GRADIO_TEMP_DIR`` (gradio's
upload folder and cache) and ``TMPDIR`` (the Batch tab's CSV exports, the Train tab's zips), then:

1. upload flood, many addresses: ``--offer-mb`` of ~1 MB one-file uploads from ``--threads`` threads, each request
   from its own address (X-Forwarded-For, trusted from 127.0.0.1): the upload folder's peak size against
   ``MAX_UPLOAD_DISK_BYTES``, and what the refused got;
2. upload flood, one address: ``--one-client`` small uploads as fast as they go: how many got through (the burst);
3. slow connections: ``--slow`` connections that send their headers and then a byte of body every 0.5 s, and as many
   that send a header line a byte at a time: when the server closed them (BODY_SECONDS, HEADER_SECONDS);
4. CSV exports: ``--export-clients`` clients calling the Batch tab's event with 10,000 names whose rows are the
   largest an export holds (error rows echoing 100 four-byte letters) for ``--export-seconds``: the bytes written
   to the export folder and to gradio's cache per second, and that rate over a file's lifetime (1.5 x CACHE_SECONDS);
5. a model zip: one training at the largest settings (GRU, 256 hidden, 2 layers, 1 epoch, the two smallest
   languages): its time and zip size, and one training after another over a file's lifetime.

    python bench/disk.py                          # production limits; the slow phase takes ~75 s
    NAMECLS_BODY_SECONDS=5 NAMECLS_HEADER_SECONDS=3 python bench/disk.py --skip-zip

Refusals are expected (that is the point); the floors checked: the upload folder never holds more than the cap,
every refusal is 413/429 with its reason, every slow connection is closed by its deadline (+ 3 s).
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
EXPORT_NAMES = {
    "dropped": lambda i: "😀" * 99 + chr(0x1F600 + i % 50),  # the reason lists the dropped letters: 860 B a row
    "long": lambda i: "x" * 1000 + str(i),  # too long before normalising: the quickest error, 154 B a row
}


def exports(url: str, tmp: Path, cache: Path, clients: int, seconds: float, server, kind: str) -> None:
    from gradio_client import Client

    text = "\n".join(EXPORT_NAMES[kind](i) for i in range(10_000))
    before_tmp, before_cache = folder_bytes(tmp)[0], folder_bytes(cache)[0]
    calls, stop = [], time.monotonic() + seconds

    def run():
        c = Client(url, verbose=False)
        while time.monotonic() < stop:
            t = time.monotonic()
            c.predict(None, text, "gru", api_name="/ui_batch")
            calls.append(time.monotonic() - t)

    workers = [threading.Thread(target=run) for _ in range(clients)]
    began = time.monotonic()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    wall = time.monotonic() - began
    grew_tmp, grew_cache = folder_bytes(tmp)[0] - before_tmp, folder_bytes(cache)[0] - before_cache
    rate = (grew_tmp + grew_cache) / wall
    life = 1.5 * server.CACHE_SECONDS
    print(f"\n## 4. CSV exports ({kind!r} names): {clients} clients x 10,000 names for {wall:.0f} s: {len(calls)} "
          f"exports ({sorted(calls)[len(calls) // 2]:.2f} s median), {grew_tmp / max(1, len(calls)) / 2**20:.2f} MB "
          f"each; export folder +{grew_tmp / 2**20:.0f} MB, gradio cache +{grew_cache / 2**20:.0f} MB "
          f"({grew_cache / max(1, grew_tmp):.1f} copies): {rate / 2**20:.1f} MB/s; over a file's lifetime "
          f"({life:.0f} s): {rate * life / 2**30:.1f} GB")


def model_zip(server) -> None:
    from namecls.checkpoint import save_zip
    from namecls.fit import fit, find_or_download_data

    folder = find_or_download_data()
    sizes = {f.stem: len(f.read_bytes().splitlines()) for f in Path(folder).glob("*.txt")}
    smallest = sorted(sizes, key=sizes.get)[:2]
    began = time.monotonic()
    mine = fit(folder, kind="gru", languages=smallest, hidden_size=256, num_layers=2, epochs=1, time_budget=5)
    took = time.monotonic() - began
    path = Path(tempfile.mkdtemp(prefix="namecls-yours-")) / "namecls-gru-yours.zip"
    save_zip(mine, path)
    size = path.stat().st_size
    life = 1.5 * server.CACHE_SECONDS
    print(f"\n## 5. Model zip: GRU 256 x 2 layers, 1 epoch on {smallest}: {took:.1f} s, zip {size / 2**20:.2f} MB; "
          f"one after another for {life:.0f} s, 3 copies (its temp folder, two in gradio's cache, as an export): "
          f"{life / took * size * 3 / 2**30:.1f} GB")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--offer-mb", type=int, default=300, help="MB of uploads offered in phase 1 (default: 300)")
    p.add_argument("--threads", type=int, default=4, help="threads of phase 1 (default: 4)")
    p.add_argument("--one-client", type=int, default=200, help="uploads from one address in phase 2 (default: 200)")
    p.add_argument("--slow", type=int, default=30, help="slow connections of each kind in phase 3 (default: 30)")
    p.add_argument("--export-clients", type=int, default=4, help="clients of phase 4 (default: 4)")
    p.add_argument("--export-seconds", type=float, default=15, help="length of phase 4, each kind (default: 15)")
    p.add_argument("--skip-zip", action="store_true", help="skip phase 5 (a training)")
    args = p.parse_args()

    import torch

    torch.set_num_threads(1)
    import app
    from namecls import service
    from namecls.ui import server

    print(f"# bench/disk.py, {time.strftime('%Y-%m-%d %H:%M %Z')}\nmachine: {machine()}")
    print(f"settings: {' '.join(sys.argv[1:]) or '(defaults)'}; upload space "
          f"{server.MAX_UPLOAD_DISK_BYTES / 2**20:.0f} MB, {server.UPLOADS_PER_MINUTE:g} uploads a minute per "
          f"address, body {server.BODY_SECONDS:g} s, headers {server.HEADER_SECONDS:g} s, cache "
          f"{server.CACHE_SECONDS} s; work folder {WORK}", flush=True)
    demo = app.build_demo(ui_visibility="undocumented")
    _, url, _ = demo.launch(prevent_thread_lock=True, quiet=True, **app.launch_kwargs())
    url = url.rstrip("/")
    try:
        upload_flood(url, WORK / "cache", args.offer_mb, args.threads, server, service)
        one_client_flood(url, args.one_client)
        server.sweep_cache(WORK / "cache", max_age=-1)  # as the cleanup would: the upload space is free again
        time.sleep(1.5)
        slow_connections(url, args.slow, server)
        for kind in EXPORT_NAMES:
            exports(url, WORK / "tmp", WORK / "cache", args.export_clients, args.export_seconds, server, kind)
        if not args.skip_zip:
            model_zip(server)
    finally:
        demo.close()
        import shutil

        shutil.rmtree(WORK, ignore_errors=True)


if __name__ == "__main__":
    main()
