"""What the server writes for download stays inside its disk budget (issue 18): the Batch tab's CSV exports and the
Train tab's model zips are written straight into gradio's cache (on disk once: gradio serves them from there), each
reserved in ``server.OUTPUT_SPACE`` before it is written, and a client's CSV exports are rate-limited.

The attacks, against the real app in-process (private GRADIO_TEMP_DIR and system temp folder, both measured): large
exports from several threads and addresses never put more than the cap on disk; past it every call still gets its
table and the download button says the space is full (nothing written); the cleanup's deletions give the space
back; one address past its export rate gets its table and a wait; a trained model past the cap is still the
session's. ``namecls/ui/server.py`` holds the settings and their worst cases; ``bench/disk.py`` measures them.
"""

import os
import tempfile
import threading
import time
from pathlib import Path

for _key, _value in (("GRADIO_ANALYTICS_ENABLED", "False"), ("HF_HUB_OFFLINE", "1"),
                     ("HF_HUB_DISABLE_TELEMETRY", "1"), ("NO_PROXY", "localhost,127.0.0.1")):
    os.environ.setdefault(_key, _value)

import httpx  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from gradio_client import Client  # noqa: E402

import app  # noqa: E402
import namecls  # noqa: E402
from namecls.ui import server  # noqa: E402

# 2,000 names whose export rows are the largest a row gets: each error row echoes the name and the letters dropped
# from it (bench/disk.py's "dropped" names): ~1.7 MB a CSV.
BIG = "\n".join("😀" * 99 + chr(0x1F600 + i % 50) for i in range(2000))
CAP = 6 * 2**20


@pytest.fixture(scope="module")
def capped(tmp_path_factory):
    """(demo, url, gradio's cache folder, the system temp folder) of an app launched with both folders private."""
    cache, tmp = tmp_path_factory.mktemp("gradio-cache"), tmp_path_factory.mktemp("system-temp")
    before, before_tmp = os.environ.get("GRADIO_TEMP_DIR"), tempfile.tempdir
    # Read by Blocks() (its cache), launch()'s App, and by gradio at each event (the folder it serves files from
    # without copying them): set for as long as the app runs, as in production.
    os.environ["GRADIO_TEMP_DIR"] = str(cache)
    tempfile.tempdir = str(tmp)  # where checkpoint.save_zip stages a checkpoint
    demo = None
    try:
        demo = app.build_demo(ui_visibility="undocumented")
        _, url, _ = demo.launch(prevent_thread_lock=True, quiet=True, **app.launch_kwargs())
        assert demo.GRADIO_CACHE == str(cache)
        yield demo, url.rstrip("/"), cache, tmp
    finally:
        if demo is not None:
            demo.close()
        tempfile.tempdir = before_tmp
        if before is None:
            os.environ.pop("GRADIO_TEMP_DIR", None)
        else:
            os.environ["GRADIO_TEMP_DIR"] = before


@pytest.fixture
def space(monkeypatch):
    """A fresh CAP-byte output space and export rate for the app, for one test."""
    fresh = server.OutputSpace(CAP, prune_seconds=0.2)
    monkeypatch.setattr(server, "OUTPUT_SPACE", fresh)
    monkeypatch.setattr(server, "EXPORT_RATE", server.UploadRate(per_minute=20))
    return fresh


def on_disk(*folders) -> tuple[int, int, list[str]]:
    """(bytes of the files under ``folders``, bytes allocated to them and to their folders, the files' paths). Each
    inode counts once."""
    size = allocated = 0
    seen, paths = set(), []
    for folder in folders:
        for root, dirs, files in os.walk(folder):
            for name in dirs + files:
                path = os.path.join(root, name)
                try:
                    st = os.lstat(path)
                except OSError:
                    continue  # renamed or deleted meanwhile
                if (st.st_dev, st.st_ino) in seen:
                    continue
                seen.add((st.st_dev, st.st_ino))
                allocated += st.st_blocks * 512
                if name in files:
                    size += st.st_size
                    paths.append(path)
    return size, allocated, paths


def empty(*folders) -> None:
    """As the cleanup does once files are old: everything in the folders goes."""
    for folder in folders:
        server.sweep_cache(folder, max_age=-1)


def batch(url: str, text: str, address: str):
    """The Batch tab's event as a script calls it, from ``address`` (uvicorn trusts X-Forwarded-For from
    127.0.0.1); the client downloads nothing (its downloads would land in this process's GRADIO_TEMP_DIR)."""
    client = Client(url, verbose=False, download_files=False, headers={"x-forwarded-for": address})
    return client.predict(None, text, "gru", "lists", api_name="/ui_batch")


@pytest.mark.slow
def test_exports_from_many_threads_never_hold_more_than_the_space(capped, space):
    """The attack: 24 exports of 2,000 large rows (~41 MB) from 4 threads, each its own address, into a 6 MB space.
    The folders never hold more than 6 MB; every call gets its whole table; the exports that fit get a file (on disk
    once, in gradio's cache, served), the others a button saying the space is full; deleting the files frees it."""
    demo, url, cache, tmp = capped
    empty(cache, tmp)
    assert on_disk(cache, tmp)[1] == 0
    answers, peak, done = [], [0, 0], threading.Event()

    def sample():
        while not done.is_set():
            apparent, allocated, _ = on_disk(cache, tmp)
            peak[:] = max(peak[0], apparent), max(peak[1], allocated)

    def flood(k):
        for _ in range(6):
            answers.append(batch(url, BIG, f"198.51.100.{k}"))

    sampler = threading.Thread(target=sample)
    sampler.start()
    threads = [threading.Thread(target=flood, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    done.set()
    sampler.join()
    apparent, allocated, paths = on_disk(cache, tmp)
    assert len(answers) == 24
    assert max(peak[0], apparent) <= CAP and max(peak[1], allocated) <= CAP
    for summary, table, _ in answers:  # the table is answered either way
        assert summary.startswith("**2,000** names classified") and len(table["data"]) == 2000
    buttons = [download for _, _, download in answers]
    given = [b for b in buttons if b.get("value")]
    refused = [b for b in buttons if not b.get("value")]
    assert all(b["label"] == "Download CSV" and b["interactive"] is True for b in given)
    assert refused and all(b["label"] == f"No CSV file: {server.OutputSpace.FULL}" and b["visible"] is True
                           and b["interactive"] is False for b in refused)
    size = os.path.getsize(given[0]["value"]["path"])
    assert len(given) == len(paths) == CAP // space.charge(size)  # all the space, no more; one copy each
    assert sorted(b["value"]["path"] for b in given) == sorted(paths)
    assert all(Path(p).parent.parent == cache for p in paths)  # in gradio's cache: served, not copied
    served = httpx.get(given[0]["value"]["url"], timeout=30)
    assert served.status_code == 200 and served.content == Path(paths[0]).read_bytes()
    assert served.content.startswith(b"\xef\xbb\xbfname,error,normalised,")
    assert sorted(on_disk(cache, tmp)[2]) == sorted(paths)  # serving it made no copy either
    # Still full; then the cleanup deletes the files (their folders too) and the space is free again.
    assert not batch(url, BIG, "198.51.100.50")[2].get("value")
    empty(cache)
    time.sleep(space.prune_seconds)  # (it looks for deleted files at most this often)
    again = batch(url, BIG, "198.51.100.51")[2]
    assert again["value"] and again["label"] == "Download CSV"
    assert space.used == space.charge(size) and len(on_disk(cache, tmp)[2]) == 1


@pytest.mark.slow
def test_the_sweeper_gives_the_space_back(capped, space, monkeypatch):
    """The app's own sweeper (server.start_sweeper, started by build_demo): once it has deleted a file that aged
    out, with its folder, the file's space is free at once, not only at the next refusal."""
    demo, url, cache, tmp = capped
    empty(cache, tmp)
    path = batch(url, "Nguyen\nQin\n", "198.51.100.60")[2]["value"]["path"]
    assert space.used == space.charge(os.path.getsize(path))
    monkeypatch.setattr(server, "CACHE_SECONDS", 0.5)  # read at each of its passes (every SWEEP_SECONDS)
    deadline = time.monotonic() + 4 * server.SWEEP_SECONDS + 5
    while space.used and time.monotonic() < deadline:
        time.sleep(0.1)
    assert space.used == 0 and not os.path.exists(os.path.dirname(path))


@pytest.mark.slow
def test_one_address_past_its_export_rate_gets_its_table_and_a_wait(capped, space, monkeypatch):
    """A script calling the Batch event in a loop from one address: past its burst (2 here) the table is still
    answered, the button says when the next export is possible, and nothing is written; another address is not
    held back."""
    demo, url, cache, tmp = capped
    monkeypatch.setattr(server, "EXPORT_RATE", server.UploadRate(per_minute=2, burst=2))
    empty(cache, tmp)
    first = [batch(url, "Nguyen\nQin\n", "203.0.113.7") for _ in range(2)]
    assert all(download["value"] for _, _, download in first)
    held = space.used
    summary, table, download = batch(url, "Nguyen\nQin\n", "203.0.113.7")
    assert summary.startswith("**2** names classified") and len(table["data"]) == 2
    assert download["value"] is None and download["interactive"] is False
    assert download["label"].startswith("No CSV file: too many CSV exports from your address (at most 2 a minute), "
                                        "try again in ") and download["label"].endswith(" s")
    assert 1 <= int(download["label"].split("try again in ")[1].split()[0]) <= 30
    assert space.used == held and len(on_disk(cache, tmp)[2]) == 2
    assert batch(url, "Nguyen\nQin\n", "203.0.113.8")[2]["value"]


@pytest.mark.slow
def test_a_trained_model_past_the_space_is_still_the_sessions(capped, data_dir, monkeypatch):
    """A training whose zip does not fit: the answer is given, "Yours" classifies for the session, and the button
    says the space is full; with room, the zip is in gradio's cache once (served from there) and loads."""
    demo, url, cache, tmp = capped
    os.environ["NAMECLS_DATA_DIR"] = str(data_dir)  # namecls.fit reads it when the tab gives no folder
    short = ("gru", 32, 1, 0.01, 1, 5, ["Chinese", "Japanese", "Russian"], "Nguyen")
    empty(cache, tmp)
    small = server.OutputSpace(server.ZIP_RESERVE_BYTES - 1)
    monkeypatch.setattr(server, "OUTPUT_SPACE", small)
    client = Client(url, verbose=False, download_files=False)
    *_, result, download, _, _, _ = client.predict(*short, api_name="/ui_train")
    assert "**yours**" in result
    assert download["value"] is None and download["interactive"] is False and download["visible"] is True
    assert download["label"] == (f"No zip to download: {server.OutputSpace.FULL} (your model is still yours in "
                                 f"this session)")
    label, *_ = client.predict("Nguyen", "yours", 3, "lists", api_name="/ui_classify")
    assert label["value"]["label"] in short[6]
    assert small.used == 0 and on_disk(cache, tmp)[2] == []  # nothing written, staging included
    roomy = server.OutputSpace(2 * server.ZIP_RESERVE_BYTES)
    monkeypatch.setattr(server, "OUTPUT_SPACE", roomy)
    *_, result, download, _, _, _ = client.predict(*short, api_name="/ui_train")
    assert download["label"] == "Download your model (.zip)" and download["interactive"] is True
    path = download["value"]["path"]
    assert on_disk(cache, tmp)[2] == [path] and Path(path).parent.parent == cache  # once, in gradio's cache
    assert roomy.used == roomy.charge(os.path.getsize(path))  # the staging's reservation given back
    assert namecls.load(path).labels == short[6]


# OutputSpace on its own.

def test_output_space_never_overshoots_under_threads(tmp_path):
    """8 threads storing files of many sizes into one space: what is on disk never passes the cap, the space
    counts exactly the files kept, and deleting them gives it all back."""
    cap = 2 * 2**20
    space = server.OutputSpace(cap, prune_seconds=0.0)
    stored, peak, done = [], [0], threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], on_disk(tmp_path)[1])

    def writer(k):
        for i in range(30):
            data = bytes([k]) * (1000 + 37_000 * ((k * 30 + i) % 7))
            path = space.store(tmp_path, f"f{k}-{i}.bin", lambda p, data=data: p.write_bytes(data), len(data))
            if path is not None:
                stored.append(path)
                if i % 3 == 0:  # some go, as the cleanup deletes them
                    os.remove(path)
                    os.rmdir(os.path.dirname(path))

    sampler = threading.Thread(target=sample)
    sampler.start()
    threads = [threading.Thread(target=writer, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    done.set()
    sampler.join()
    kept = [p for p in stored if os.path.exists(p)]
    assert peak[0] <= cap and on_disk(tmp_path)[1] <= cap
    assert len(stored) > len(kept) > 0
    space.prune()
    assert space.used == sum(space.charge(os.path.getsize(p)) for p in kept) <= cap
    empty(tmp_path)
    space.prune()
    assert space.used == 0


def test_output_space_writes_nothing_past_the_cap_and_cleans_up_a_failed_write(tmp_path):
    space = server.OutputSpace(64 * 1024)
    calls = []
    assert space.store(tmp_path, "big.csv", calls.append, 64 * 1024) is None  # its charge does not fit
    assert calls == [] and list(tmp_path.iterdir()) == [] and space.used == 0

    def broken(path):
        path.write_bytes(b"x" * 5000)
        raise OSError("disk on fire")

    with pytest.raises(OSError, match="disk on fire"):
        space.store(tmp_path, "a.csv", broken, 5000)
    assert list(tmp_path.iterdir()) == [] and space.used == 0

    def larger_than_said(path):
        path.write_bytes(b"x" * 40_000)

    path = space.store(tmp_path, "b.csv", larger_than_said, 100)  # a wrong bound: kept, as the rest fits
    assert path and space.used == space.charge(40_000)
    assert space.store(tmp_path, "c.csv", larger_than_said, 100) is None  # the rest does not fit: deleted
    assert [p.name for p in tmp_path.rglob("*.csv")] == ["b.csv"] and space.used == space.charge(40_000)


def test_write_export_is_the_csv_the_table_gives(tmp_path, monkeypatch):
    from namecls.serving import service

    monkeypatch.setattr(server, "OUTPUT_SPACE", server.OutputSpace(CAP))
    table = pd.DataFrame({"name": ["=HYPERLINK(1)", "Ślusàrski"], "top-1": ["Polish", "Polish"]})
    path = Path(server.write_export(table, "namecls-gru", tmp_path))
    assert path.name.startswith("namecls-gru-") and len(path.stem) == len("namecls-gru-") + 8
    assert path.read_bytes() == service.csv_bytes(table) == Path(service.write_csv(table)).read_bytes()
    assert pd.read_csv(path, encoding="utf-8-sig")["name"].tolist() == ["'=HYPERLINK(1)", "Ślusàrski"]
