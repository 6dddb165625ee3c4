"""The "Train your own" tab through the app's own events (gradio_client on an in-process server): a short
training on three languages, its downloadable checkpoint zip, "Yours" in Classify, the Stop button, one training
at a time (a second one queues), and the capped store of trained models. Needs the names data (CI has it)."""

import os
import time

for _key, _value in (("GRADIO_ANALYTICS_ENABLED", "False"), ("HF_HUB_OFFLINE", "1"),
                     ("HF_HUB_DISABLE_TELEMETRY", "1"), ("NO_PROXY", "localhost,127.0.0.1")):
    os.environ.setdefault(_key, _value)

import pytest  # noqa: E402
from gradio_client import Client  # noqa: E402
from gradio_client.utils import Status  # noqa: E402

import app  # noqa: E402
import namecls  # noqa: E402
from namecls.ui import yours  # noqa: E402

THREE = ["Chinese", "Japanese", "Russian"]
RUNNING = (Status.PROCESSING, Status.ITERATING)  # a generator's job iterates
# cell, hidden size, GRU layers, learning rate, epochs, time budget, languages, the watched name
SHORT = ("gru", 32, 1, 0.01, 2, 5, THREE, "Nguyen")


@pytest.fixture(scope="module")
def url(data_dir):
    os.environ["NAMECLS_DATA_DIR"] = str(data_dir)  # namecls.fit reads it when the tab gives no folder
    demo = app.build_demo(ui_visibility="undocumented")
    _, address, _ = demo.launch(prevent_thread_lock=True, quiet=True, **app.launch_kwargs())
    yield address
    demo.close()


def test_a_short_training_gives_a_model_that_classifies_and_downloads(url):
    client = Client(url, verbose=False)
    progress, loss, accuracy, watched, result, download, *radios = client.predict(*SHORT, api_name="/ui_train")
    assert "done" in progress and "Validation accuracy" in result and "**yours**" in result
    from namecls.fit import validation_accuracy

    for kind, label in (("rnn", "RNN"), ("gru", "GRU")):  # the committed models, on the same validation names
        assert f"| committed {label}¹ | {100 * validation_accuracy(app.MODELS[kind], THREE):.1f}% |" in result
    assert len(loss["data"]) >= 2 and len(accuracy["data"]) >= 1  # the curves were drawn
    assert watched["label"] in THREE  # the watched name's last answer is one of the three languages
    assert all(choice == ["Yours", "yours"] for radio in radios for choice in radio["choices"][-1:])
    path = download["value"] if isinstance(download, dict) else download
    downloaded = namecls.load(path["path"] if isinstance(path, dict) else path)
    assert downloaded.labels == THREE
    # "Yours" in Classify answers what the downloaded checkpoint answers.
    label, _, answer = client.predict("Nguyen", "yours", 3, api_name="/ui_classify")
    assert label["label"] == downloaded.predict("Nguyen", k=1)[0][0] and "prediction set" in answer
    # A session without a trained model cannot choose it.
    with pytest.raises(Exception, match="(?i)400 Bad Request|unknown model|choose one of"):  # gradio or us
        Client(url, verbose=False).predict("Nguyen", "yours", 3, api_name="/ui_classify")


def test_stop_ends_a_training_early(url):
    client = Client(url, verbose=False)
    job = client.submit("gru", 64, 1, 0.01, 30, 60, THREE, "", api_name="/ui_train")
    deadline = time.monotonic() + 60
    while job.status().code not in RUNNING and time.monotonic() < deadline:
        time.sleep(0.2)
    started = time.monotonic()  # at once: a fast machine could finish a short training before a later Stop
    client.predict(api_name="/ui_train_stop")
    result = job.result(timeout=120)[4]
    assert "stopped by stop" in result
    assert time.monotonic() - started < 45  # far sooner than the 60 s budget and 30 epochs


def test_one_training_at_a_time(url):
    first, second = Client(url, verbose=False), Client(url, verbose=False)
    job1 = first.submit("gru", 64, 1, 0.01, 30, 15, THREE, "", api_name="/ui_train")  # ~15 s of training
    deadline = time.monotonic() + 60
    while job1.status().code not in RUNNING and time.monotonic() < deadline:
        time.sleep(0.1)
    job2 = second.submit(*SHORT, api_name="/ui_train")
    seen = set()
    while not job2.done() and time.monotonic() < deadline + 60:
        seen.add((job2.status().code, job1.done()))
        time.sleep(0.1)
    assert (Status.IN_QUEUE, False) in seen  # the second waited while the first was training
    assert "Validation accuracy" in job1.result()[4] and "Validation accuracy" in job2.result()[4]


def test_the_store_of_trained_models_is_capped_and_ages():
    store = yours.TrainedModels(capacity=2, seconds=0.5)
    for session in "abc":
        store.put(session, object())
    assert len(store) == 2 and store.get("a") is None and store.get("c") is not None
    time.sleep(0.6)
    assert store.get("c") is None  # too old
    store.put("d", object())  # putting clears every model past its age ("b")
    assert len(store) == 1
    store.drop("d")
    assert store.get("d") is None and len(store) == 0
