"""Tab "Model card": each checkpoint's scores on its held-out test split, how it was trained, and its limits.

Tables and text here are pure functions of a checkpoint's ``config.json`` and ``metrics.json``; the figures
(:mod:`namecls.ui.render.figures`) are drawn on a session's first visit to the tab, once per process.
"""

from __future__ import annotations

import functools

import gradio as gr
import pandas as pd

from ..common import outside_lists
from ..render.figures import card_figures
from ..render.html import MODEL_LABELS, esc, percent
from ..render.overlay import FigureImage

LIMITATIONS_MD = """\
### Limitations — read before you trust an answer
- **A surname is not a nationality, an ethnicity or a person's origin.** The model guesses which *language's list
  of surnames* a spelling most resembles. People marry, migrate, transliterate and change names.
- **18 languages only.** Every input gets one or more of them, however foreign: a Turkish name like *Demirkan*
  gets "Russian" alone from both models. A prediction set's promise holds for names like the training ones; it
  says nothing about names from elsewhere, and a one-language set is no proof the name is from that language.
- **Skewed data.** Russian is 47% of the data's rows (9,408 of 20,074); Vietnamese has 73 rows, Portuguese 74. Small
  languages are predicted less reliably: look at the per-language recall, not only the accuracy.
- **Probabilities are calibrated on average, not per name.** A temperature fitted on validation names makes "80%"
  right about 80% of the time over many names of these 18 languages (see the reliability diagram); it promises
  nothing for names from elsewhere. Names shorter than three letters, and
  letters outside `a-z A-Z .,:;-'` (dropped after transliteration with unidecode), leave little to go on.
- **Dirty labels.** The source lists contain duplicates, 465 name strings listed under more than one language, and
  24 lines "To The First Page" in the Russian file.
"""

PROTOCOL_TEXT = {
    "clean": "unique (name, language) pairs, split 80/10/10 into train / validation / test, grouped by name string "
             "(no name is in two parts) and stratified by language",
    "seed": "the PyTorch tutorial's protocol: a stratified 10% test split over all rows (duplicates included), "
            "a tenth of the rest held out for validation",
}


HEADLINE_COLUMNS = {"accuracy": "accuracy", "macro_f1": "macro-F1", "balanced_accuracy": "balanced accuracy",
                    "top3_accuracy": "top-3 accuracy"}


def headline_table(metrics_by_model: dict[str, dict]) -> pd.DataFrame:
    """Test-set headline numbers of each model and of the baselines (listed once if every model shares them)."""
    rows = []
    for kind, metrics in metrics_by_model.items():
        test = metrics.get("test") or {}
        rows.append({"model": MODEL_LABELS.get(kind, kind), **{v: test.get(k) for k, v in HEADLINE_COLUMNS.items()}})
    baselines = {kind: m.get("baselines") or {} for kind, m in metrics_by_model.items()}
    shared = len({repr(sorted(b.items())) for b in baselines.values()}) == 1
    names = {"majority": "baseline: always the most frequent language",
             "tfidf_logreg": "baseline: character n-gram TF-IDF + logistic regression"}
    for kind, base in baselines.items():
        for key, scores in base.items():
            label = names.get(key, f"baseline: {key}") + ("" if shared else f" ({MODEL_LABELS.get(kind, kind)} split)")
            rows.append({"model": label, **{v: scores.get(k) for k, v in HEADLINE_COLUMNS.items()}})
        if shared:
            break
    table = pd.DataFrame(rows, columns=["model", *HEADLINE_COLUMNS.values()])
    for col in HEADLINE_COLUMNS.values():
        table[col] = pd.to_numeric(table[col]).round(3)
    return table


OUTSIDE_COLUMNS = ["model", "expecting", "names", "top-1", "90% set held it", "set size"]
PRIOR_WORDS = {"lists": "lists' mix", "equal": "all equally"}
PART_WORDS = {"test": "test split", "dev": "real surnames", "final": "real surnames"}


def outside_lists_table(report: dict) -> pd.DataFrame:
    """Both models under each prior, on the test split and on real surnames from outside the lists (the final set
    once measured), from ``checkpoints/outside_lists.json`` (:func:`namecls.ui.common.outside_lists`); short columns,
    so that a phone shows them all. Empty without the report."""
    rows = []
    for kind, by_prior in (report.get("results") or {}).items():
        if kind not in MODEL_LABELS:
            continue
        for prior, by_part in by_prior.items():
            for part, row in by_part.items():
                if part == "dev" and "final" in by_part:  # the untouched set is the honest one, once measured
                    continue
                rows.append([MODEL_LABELS[kind], PRIOR_WORDS.get(prior, prior), PART_WORDS.get(part, part),
                             round(row["top1"], 3), round(row.get("coverage", 0), 3),
                             round(row.get("mean_size", 0), 2)])
    return pd.DataFrame(rows, columns=OUTSIDE_COLUMNS)


def outside_lists_md(report: dict) -> str:
    """The table's point in plain words, every number from ``report`` (empty without it)."""
    gru = ((report.get("results") or {}).get("gru")) or {}
    if not {"lists", "equal"} <= set(gru):
        return ""
    real = "final" if "final" in gru["lists"] else "dev"
    lists, equal, test = gru["lists"][real], gru["equal"][real], gru["lists"]["test"]
    rnn = (((report.get("results") or {}).get("rnn")) or {}).get("equal", {}).get(real)
    return (f"**Outside the lists.** The test split comes from the same lists as training, half of them Russian. On "
            f"{lists['n']:,} real surnames from outside the lists{_drawn(report)}, the GRU's "
            f"first answer was right {percent(lists['top1'])} of the time (test split: {percent(test['top1'])}) and "
            f"its 90% sets held the right language only {percent(lists['coverage'])} of the time. Expecting every "
            f"language equally (the choice at the top of the page) brings those to {percent(equal['top1'])} and "
            f"{percent(equal['coverage'])}, with {equal['mean_size']:.1f} languages a set on average."
            + (f" The RNN's sets under that choice held the right language {percent(rnn['coverage'])} of the time "
               f"but with {rnn['mean_size']:.1f} languages on average: too many to narrow a name down much."
               if rnn else ""))


def _drawn(report: dict) -> str:
    """' (100 for each of 14 languages, from a public names database)', or empty."""
    real = report.get("real_surnames") or {}
    if not isinstance(real, dict) or not real.get("languages"):
        return ""
    return f" ({real['per_language']} for each of {real['languages']} languages, from a public names database)"


PER_LANGUAGE_COLUMNS = ["language", "precision", "recall", "F1", "set coverage", "mean set size", "support"]


def per_language_table(metrics: dict) -> pd.DataFrame:
    """Precision, recall, F1 and support of each language on the test set, and how often its names' prediction sets
    held it (and how large they were), when the checkpoint has prediction sets."""
    per = (metrics.get("test") or {}).get("per_language") or {}
    sets = (((metrics.get("conformal") or {}).get("test") or {}).get("per_language")) or {}
    rows = [{"language": lang, "precision": round(s["precision"], 3), "recall": round(s["recall"], 3),
             "F1": round(s["f1"], 3), "set coverage": round(sets[lang]["coverage"], 3) if lang in sets else None,
             "mean set size": round(sets[lang]["mean_size"], 2) if lang in sets else None,
             "support": int(s["support"])} for lang, s in per.items()]
    return pd.DataFrame(rows, columns=PER_LANGUAGE_COLUMNS)


def sets_md(metrics: dict) -> str:
    """The prediction sets of one checkpoint in a few lines of Markdown (empty if it has none)."""
    conformal = metrics.get("conformal") or {}
    test = conformal.get("test") or {}
    if not test:
        return ""
    asked = conformal.get("coverage_asked", 0.9)
    per = test.get("per_language") or {}
    low = sorted((s["coverage"], lang) for lang, s in per.items() if s.get("support", 0) >= 5)[:3]  # as answer_html
    return (f"**Prediction sets** (split conformal, fitted on the validation split): each answer's set takes the "
            f"most probable languages in order until their probability reaches a level fitted on validation names "
            f"so that {100 * asked:g}% of such names would have their language in the set. On the test split the "
            f"sets held the right language **{percent(test['coverage'])}** "
            f"of the time, with {test['mean_size']:.2f} languages on average and one language "
            f"{percent(test['singletons'])} of the time. The promise is over names, not per language: "
            + ", ".join(f"{esc(lang)} {percent(cov)} ({per[lang]['support']} names)" for cov, lang in low)
            + " are the least covered among languages with at least 5 test names (see the table).")


def calibration_md(metrics: dict) -> str:
    """Calibration and the low-confidence flag of one checkpoint in a few lines of Markdown (empty if none)."""
    cal, flag = metrics.get("calibration") or {}, metrics.get("low_confidence") or {}
    if not cal:
        return ""
    test, val = cal.get("test") or {}, cal.get("validation") or {}
    lines = [f"**Calibration** (temperature T = {cal['temperature']:.3f}, fitted on the validation split by minimum "
             f"NLL): expected calibration error on the test split {test.get('ece_before', float('nan')):.3f} → "
             f"**{test.get('ece_after', float('nan')):.3f}** (validation {val.get('ece_before', float('nan')):.3f} "
             f"→ {val.get('ece_after', float('nan')):.3f}); accuracy is unchanged (dividing by T keeps the order)."]
    if flag:
        rates = flag.get("test") or {}
        acc_f, acc_c = rates.get("accuracy_flagged"), rates.get("accuracy_confident")
        lines.append(f"The API's **`low_confidence` flag** is set when the top probability is below "
                     f"**{percent(flag['threshold'])}**: the largest threshold at which flagged validation names get "
                     f"the right language at most "
                     f"{percent(flag.get('target_accuracy', 0.5))} of the time. It flags "
                     f"{percent(rates.get('flag_rate', 0))} of test names (right "
                     f"{'n/a' if acc_f is None else percent(acc_f)} of the time, against "
                     f"{'n/a' if acc_c is None else percent(acc_c)} for the others).")
    return "\n\n".join(lines)


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _duration(seconds) -> str:
    if not isinstance(seconds, (int, float)):
        return "?"
    if seconds < 60:
        return f"{seconds:.1f} s"
    return f"{seconds / 60:.1f} min"


def facts_table(config: dict, metrics: dict) -> pd.DataFrame:
    """Architecture, training settings, split sizes and provenance of one checkpoint, as (fact, value) rows."""
    model = config.get("model", {})
    train = config.get("train_config") or metrics.get("train_config") or {}
    sizes = metrics.get("split_sizes") or {}
    protocol = config.get("protocol", metrics.get("protocol", "?"))
    rows = [
        ("architecture", ", ".join(f"{k}={_fmt(v)}" for k, v in model.items() if k != "kind")),
        ("languages", len(config.get("labels", []))),
        ("protocol", f"{protocol}: {PROTOCOL_TEXT.get(protocol, '')}".rstrip(": ")),
        ("split seed", config.get("split_seed", metrics.get("split_seed", "?"))),
        ("split sizes (names)", ", ".join(f"{k} {v:,}" for k, v in sizes.items())),
        ("epochs run (selected)", f"{metrics.get('epochs_run', '?')} ({metrics.get('best_epoch', '?')})"),
        ("training time", _duration(metrics.get("training_seconds"))),
        ("training settings", ", ".join(f"{k}={_fmt(v)}" for k, v in train.items())),
        ("normalisation", config.get("normalization", "?")),
        ("data fingerprint", str(config.get("data_fingerprint", "?"))[:16] + "…"),
        ("versions", ", ".join(f"{k} {v}" for k, v in (config.get("versions") or {}).items())),
    ]
    return pd.DataFrame([(k, str(v)) for k, v in rows], columns=["fact", "value"])


def test_share_md(metrics: dict, language: str = "Russian") -> str:
    """'Russian is 52% of this test set (932 of 1,805 names)', from the per-language support."""
    per = (metrics.get("test") or {}).get("per_language") or {}
    total = sum(s["support"] for s in per.values())
    if not total or language not in per:
        return ""
    n = per[language]["support"]
    return f"{esc(language)} is {percent(n / total)} of this test set ({n:,} of {total:,} names)."


def alt_text(which: str, kind: str) -> str:
    """What a model-card figure shows, for a screen reader (the figure's own title and axes, in words)."""
    label = MODEL_LABELS[kind]
    return {"confusion": f"{label}: confusion matrix on the test set, true language by row, predicted by column",
            "training": f"{label}: training loss and validation accuracy after each epoch",
            "reliability": f"{label}: reliability diagram on the test set, confidence against accuracy"}[which]


def build(models: dict, ui: dict) -> None:
    """Lay out the tab (tables and text at once, figures on the first visit) and wire its event."""
    with gr.Tab("Model card", id="model-card") as tab:
        gr.Markdown("Scores on each checkpoint's held-out **test split**, read from its `metrics.json`; baselines "
                    "scored on the same split.")
        gr.Dataframe(headline_table({kind: clf.metrics for kind, clf in models.items()}),
                     label="Headline numbers (test set)", interactive=False, elem_id="headline", wrap=True)
        report = outside_lists()
        outside = outside_lists_md(report)
        if outside:
            gr.Markdown(outside, elem_id="outside-lists")
            gr.Dataframe(outside_lists_table(report), label="Names like the lists' and real surnames from outside them",
                         interactive=False, elem_id="outside-table", wrap=True)
        plots = []
        with gr.Tabs():
            for kind, clf in models.items():
                label = MODEL_LABELS[kind]
                with gr.Tab(label, id=f"card-{kind}"):
                    gr.Dataframe(per_language_table(clf.metrics), label=f"{label}: per language (test set)",
                                 interactive=False, max_height=800)
                    confusion = gr.HTML(elem_id=f"card-{kind}-confusion")
                    training = gr.HTML(elem_id=f"card-{kind}-training")
                    sets = sets_md(clf.metrics)
                    gr.Markdown(sets, elem_id=f"sets-{kind}", visible=bool(sets))
                    calibration = calibration_md(clf.metrics)
                    gr.Markdown(calibration, elem_id=f"calibration-{kind}", visible=bool(calibration))
                    reliability = gr.HTML(visible=bool(calibration), elem_id=f"card-{kind}-reliability")
                    plots += [confusion, training, reliability]
                    gr.Dataframe(facts_table(clf.config, clf.metrics), label=f"{label}: data, protocol, settings",
                                 interactive=False, wrap=True, column_widths=["30%", "70%"],
                                 max_height=1000)  # every row in view (the default height cut the last one)
                    share = test_share_md(clf.metrics)
                    if share:
                        gr.Markdown(share)
        gr.Markdown(LIMITATIONS_MD)
        drawn = gr.State(False)

    @functools.cache
    def figures() -> list[str]:
        """Every checkpoint's figures as images with their titles for alt text, drawn once per app on the first
        visit to the tab (drawing them while building the page added ~2 s to start-up). Each keeps a readable size
        on a phone and scrolls sideways in its box."""
        return [f'<div class="scroll-x card-figure">'
                f'{FigureImage.from_figure(figure).image_html(alt_text(which, kind))}</div>'
                for kind, clf in models.items()
                for which, figure in card_figures(clf.metrics, clf.labels, MODEL_LABELS[kind]).items()]

    def show(already: bool):
        """The figures on a session's first visit to the tab (then ``drawn``); later visits resend nothing."""
        return gr.skip() if already else [*figures(), True]

    tab.select(show, drawn, [*plots, drawn], api_name="ui_card", show_progress="minimal", **ui)
