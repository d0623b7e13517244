"""The training recipe, shared by ``llmhead train`` and ``recipes/train.py``: a YAML config with data, model and
train sections (plus ``key=value`` overrides, dotted) -> a trained model in ``<output_dir>/model`` and
``<output_dir>/metrics.json``.

Every configuration and data problem is raised before the model loads (a ValueError or OSError, which the commands
print as one ``error: ...`` line with exit code 2); unknown config keys fail with the nearest valid names. Values are
read as YAML 1.2 (in the file and in key=value overrides): 1e-3, 5E-5, .5 and 1_000 are numbers, only true/false are
booleans (``chat_template: on`` is the string 'on').
"""

from __future__ import annotations

import dataclasses
import json
import re
import resource
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from llmhead.cli.errors import CONFIG_ERRORS, fail
from llmhead.config import TRAIN_FIELD_MODES, ModelConfig, TrainConfig, build, for_mode, invalid, modes_using
from llmhead.data import corpora, distinct_roles, read_raw_labels, read_table, read_texts

CORPORA = {
    "rotten_tomatoes": corpora.rotten_tomatoes,
    "bbc_news": corpora.bbc_news,
    "kaomoji": corpora.kaomoji,
    "vader_tweets": corpora.vader_tweets,
}


def _is_columns(value) -> bool:
    return (isinstance(value, str) and value != "") or (
        isinstance(value, list) and value != [] and all(isinstance(v, str) and v for v in value)
    )


@dataclass
class DataConfig:
    dataset: str | None = None  # a packaged corpus: rotten_tomatoes | bbc_news | kaomoji | vader_tweets
    train: str | None = None  # or files: .csv .tsv .jsonl .json .parquet
    eval: str | None = None  # carved from train when absent
    test: str | None = None
    text: str | list[str] = "text"  # a column, or two columns for a text pair
    label: str | list[str] = "label"
    train_limit: int | None = None  # use only this many training examples (a seeded sample)

    def __post_init__(self):
        p = []
        if self.dataset is not None and not (isinstance(self.dataset, str) and self.dataset in CORPORA):
            p.append(f"dataset must be one of {sorted(CORPORA)}, got {self.dataset!r}")
        for name in ("train", "eval", "test"):
            value = getattr(self, name)
            if value is not None and not (isinstance(value, str) and value.strip()):
                p.append(f"{name} must be a file path or null, got {value!r}")
        if (self.dataset is None) == (self.train is None):
            p.append("set exactly one of dataset (a packaged corpus) or train (a file)")
        for name in ("text", "label"):
            if not _is_columns(getattr(self, name)):
                p.append(f"{name} must be a column name or a list of column names, got {getattr(self, name)!r}")
        limit = self.train_limit
        if limit is not None and not (isinstance(limit, int) and not isinstance(limit, bool) and limit >= 1):
            p.append(f"train_limit must be an int >= 1 or null, got {limit!r}")
        if p:
            raise invalid(p)


@dataclass
class RecipeConfig:
    output_dir: str = "runs/train"
    threads: int | None = None  # torch CPU threads; None keeps torch's default
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self):
        p = []
        if not (isinstance(self.output_dir, str) and self.output_dir.strip()):
            p.append(f"output_dir must be a folder path, got {self.output_dir!r}")
        threads = self.threads
        if threads is not None and not (isinstance(threads, int) and not isinstance(threads, bool) and threads >= 1):
            p.append(f"threads must be an int >= 1 or null, got {threads!r}")
        if p:
            raise invalid(p)


class YAML12Loader(yaml.SafeLoader):
    """PyYAML's safe loader with YAML 1.2 core-schema floats and booleans.

    PyYAML implements YAML 1.1, where ``1e-3`` (no dot) is a string and ``on``/``off``/``yes``/``no`` are booleans:
    ``train.lr=1e-3`` would be refused as a string and ``model.chat_template: on`` would become True."""


_FLOAT = "tag:yaml.org,2002:float"
_BOOL = "tag:yaml.org,2002:bool"
YAML12Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag not in (_FLOAT, _BOOL)]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
YAML12Loader.add_implicit_resolver(_BOOL, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))
YAML12Loader.add_implicit_resolver(
    _FLOAT,
    re.compile(
        r"""^(?:[-+]?[0-9][0-9_]*\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?[0-9][0-9_]*[eE][-+]?[0-9]+
        |[-+]?\.[0-9][0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


def load_yaml(text: str, where: str):
    """``text`` read as YAML 1.2 scalars; a syntax error is a ValueError naming ``where``, the line and column."""
    try:
        return yaml.load(text, Loader=YAML12Loader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        at = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        what = "; ".join(str(x) for x in (exc.context, exc.problem) if x)
        raise ValueError(f"{where} is not valid YAML{at}: {what}") from None
    except yaml.YAMLError as exc:
        raise ValueError(f"{where} is not valid YAML: {exc}") from None


def read_raw(path: str | None, overrides: list[str]) -> dict:
    """The YAML file's dict with ``key.sub=value`` overrides applied (values parsed as YAML 1.2)."""
    raw = {}
    if path:
        file = Path(path)
        if not file.is_file():
            raise FileNotFoundError(f"config file not found: {file}")
        raw = load_yaml(file.read_text(), str(file))
        if raw is None:
            raw = {}
        if not isinstance(raw, dict):
            raise invalid([f"{file} must hold a mapping of sections (data:, model:, train:...), got {raw!r}"])
    for item in overrides:
        if "=" not in item:
            raise ValueError(f"override {item!r} must look like key=value, e.g. train.epochs=5")
        key, value = item.split("=", 1)
        *parents, leaf = key.split(".")
        if not all(parents) or not leaf:
            raise ValueError(f"override {item!r}: the key must look like section.name, e.g. train.epochs=5")
        node = raw
        for depth, p in enumerate(parents):
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                section = ".".join(parents[: depth + 1])
                raise invalid([f"override {item!r}: {section} is {node!r}, not a section of key: value"])
        node[leaf] = load_yaml(value, f"override {item!r}")  # so that 5, 1e-3, [] and null get their types
    return raw


def load_config(path: str | None, overrides: list[str], raw: dict | None = None) -> RecipeConfig:
    raw = read_raw(path, overrides) if raw is None else raw
    sections = {"data": DataConfig, "model": ModelConfig, "train": TrainConfig}
    top = {k: v for k, v in raw.items() if k not in sections}
    built = {name: build(cls, raw.get(name), where=f"{name}.") for name, cls in sections.items()}
    cfg = build(RecipeConfig, {**top, **built})
    for_mode(cfg.train, cfg.model.mode)  # train options the model's mode never reads are refused now
    return cfg


def splits(cfg: DataConfig):
    """(train, eval, test) sources: a packaged corpus's splits or the configured files."""
    if cfg.dataset:
        dd = CORPORA[cfg.dataset]()
        train, eval_, test = dd["train"], dd["validation"], dd["test"]
    else:
        train, eval_, test = cfg.train, cfg.eval, cfg.test
    if cfg.train_limit is not None:
        import datasets

        if not isinstance(train, datasets.Dataset):
            train = datasets.Dataset.from_dict(read_table(train, "train").columns)
        if cfg.train_limit > len(train):
            raise ValueError(f"data.train_limit={cfg.train_limit} exceeds the {len(train)} training examples")
        train = train.shuffle(seed=0).select(range(cfg.train_limit))
    return train, eval_, test


def check_test_labels(cfg: RecipeConfig, train, test) -> None:
    """Fail on a test label that training never saw now, not after training."""
    from llmhead.data.labels import LabelSpace

    m, d = cfg.model, cfg.data
    train_raw = read_raw_labels(read_table(train, "train"), d.label, m.task)
    table = read_table(test, "test")
    read_texts(table, d.text, m.template, m.pair_separator)
    LabelSpace.learn(m.task, train_raw, m.labels, d.label).encode(read_raw_labels(table, d.label, m.task), table.origin)


def check_data(cfg: RecipeConfig, train, eval_) -> None:
    """The training and validation data's columns, texts and labels, checked before torch is even imported: a
    misspelled column is reported in a second. (fit checks them again, with the labels it learns.)"""
    m, d = cfg.model, cfg.data
    distinct_roles(d.text, d.label)
    for source, role in ((train, "train"), (eval_, "eval")):
        if source is not None:
            table = read_table(source, role)
            read_texts(table, d.text, m.template, m.pair_separator)
            read_raw_labels(table, d.label, m.task)


def check_output(out: Path) -> None:
    """Where the run will write (``out/model``, ``out/metrics.json``) can take it: said before training, not after."""
    from llmhead.io.folder import check_target
    from llmhead.io.layout import MANIFEST

    check_target(out / "model", MANIFEST)
    metrics = out.expanduser() / "metrics.json"
    if metrics.is_dir() or metrics.is_symlink():
        raise FileExistsError(f"{metrics} is not a file: the run writes its metrics there; choose another output_dir")


def prepare(raw: dict):
    """Every check that needs no weights: the configuration, the data files, the test labels, the model source.
    Returns (config, classifier, train, eval, test); raises a ValueError or OSError naming the problem."""
    import llmhead

    cfg = load_config(None, [], raw)
    train, eval_, test = splits(cfg.data)
    check_data(cfg, train, eval_)
    if test is not None:
        check_test_labels(cfg, train, test)
    check_output(Path(cfg.output_dir))
    clf = llmhead.Classifier(cfg.model)  # resolves the model: a misspelled alias, a missing file, an offline hub
    return cfg, clf, train, eval_, test


def train(raw: dict) -> dict:
    """Train, evaluate on the test data (if any), save ``<output_dir>/model`` and ``metrics.json``; print a summary.
    A configuration or data problem is one ``error:`` line and exit code 2 (``fail``)."""
    import torch

    try:
        cfg, clf, train_data, eval_, test = prepare(raw)
    except CONFIG_ERRORS as exc:
        fail(exc)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)

    start = time.perf_counter()
    text, label = cfg.data.text, cfg.data.label
    text = tuple(text) if isinstance(text, list) else text
    options = dataclasses.asdict(cfg.train)
    if cfg.model.mode in modes_using(TRAIN_FIELD_MODES, "handle_sigterm"):
        options["handle_sigterm"] = True  # a cluster's preemption is this script's business: checkpoint and exit 0
    try:
        clf.fit(train_data, eval_, text=text, label=label, **options)
    except CONFIG_ERRORS as exc:
        # fit checks the data (columns, labels, verbalizers) before any weights load; a problem found after they
        # loaded is not a configuration problem and keeps its traceback
        if clf.loaded:
            raise
        fail(exc)
    fit_s = time.perf_counter() - start
    if not main_process():  # under torchrun / accelerate launch, rank 0 saves and reports
        return {}
    out = Path(cfg.output_dir)
    n_train = len(read_table(train_data, "train"))
    result = {
        "fit_seconds": round(fit_s, 1),
        "train_examples": n_train,
        "evaluations": len(clf.history),
        "best_val_loss": min((h["val_loss"] for h in clf.history if "val_loss" in h), default=None),
        "truncated_texts": clf.truncated,
        "config": dataclasses.asdict(cfg),
    }
    if test is not None:  # before the save, so that the model card shows the test metrics
        result["test"] = clf.evaluate(test, text=text, label=label)
        if cfg.data.dataset:  # a packaged corpus's split reads "Dataset"; name it
            clf.metrics = {f"{cfg.data.dataset} (test split)": clf.metrics.popitem()[1]}
    if cfg.data.dataset:  # likewise the training and validation data
        clf.trained_on.update(train=f"{cfg.data.dataset} (train split)", eval=f"{cfg.data.dataset} (validation split)")
    saved = clf.save(out / "model")
    result["total_seconds"] = round(time.perf_counter() - start, 1)
    result["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)  # Linux: KiB
    (out / "metrics.json").write_text(json.dumps(result, indent=2))
    print_summary(result, saved, out / "metrics.json")
    return result


def main_process() -> bool:
    """Rank 0 of a launched run (or the only process). PartialState reads mpirun's ranks (OMPI_COMM_WORLD_*, PMI_*)
    only when told the run is on the CPU, and a head-only fit made no Accelerator that would have: without cpu=,
    every rank of `accelerate launch` with mpirun would think itself rank 0 and save."""
    import torch
    from accelerate import PartialState
    from accelerate.utils import parse_flag_from_env

    cpu = not torch.cuda.is_available() or parse_flag_from_env("ACCELERATE_USE_CPU")
    return PartialState(cpu=cpu).is_main_process


def print_summary(result: dict, saved: Path, metrics_file: Path) -> None:
    """What the run printed last: the test metrics (if any), where the model and metrics went, the times."""
    if "test" in result:
        summary = {k: round(v, 4) for k, v in result["test"].items() if isinstance(v, float)}
        print(f"test metrics: {json.dumps(summary)}")
    print(f"model saved to {saved}  (load with llmhead.load({str(saved)!r}), or: llmhead predict {saved} FILE)")
    print(
        f"fit {result['fit_seconds']} s, fit+save+test {result['total_seconds']} s, peak RSS {result['peak_rss_mb']} MB"
    )
    print(f"metrics written to {metrics_file}")
