"""Commands of the model lifecycle: ``eta train`` and the ``eta models`` group."""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from stream_features.errors import EtaError
from stream_features.settings import Settings

if TYPE_CHECKING:
    from predictor.models.dataset import Split
    from predictor.models.registry import AliasMove, Registry
    from predictor.models.training import Objective

__all__ = ["models_app", "register"]

models_app = typer.Typer(
    help="The model registry: versions and stage aliases.",
    no_args_is_help=True,
    rich_markup_mode=None,
)
_console = Console()
_OBJECTIVES = ("auto", "huber", "l1", "l2", "log_l2")
_NAME_HELP = "model name (default: ETA_MODEL_NAME)"


@contextmanager
def _errors() -> Iterator[None]:
    """Print an EtaError's own message (and a refused model's metrics) and exit 1."""
    from predictor.errors import ModelNotBetterError
    from predictor.models.tables import metrics_table

    try:
        yield
    except EtaError as exc:
        if isinstance(exc, ModelNotBetterError) and exc.metrics:
            _console.print(metrics_table(exc.metrics, "validation (refused)"))
        _console.print(f"[bold red]error:[/] {escape(str(exc))}")
        raise typer.Exit(1) from exc


def _registry(settings: Settings) -> Registry:
    """The registry of the settings, with its Redis mirror when ETA_REDIS_URL is set."""
    import redis

    from predictor.models.registry import Registry
    from stream_features.redis_client import redis_client

    url = settings.redis_url_value()
    client = None
    if url is not None:
        client = redis_client(url, socket_timeout=2.0, socket_connect_timeout=2.0)
        try:
            client.ping()
        except redis.RedisError as exc:
            _console.print(
                f"[yellow]Redis at {url.split('@')[-1]} is not answering ({escape(str(exc))})[/]"
            )
            client = None
    return Registry(settings.registry_dir, client)


def _report_move(move: AliasMove) -> None:
    _console.print(
        f"[bold green]{move.name}@{move.stage}[/]: {move.from_version or '—'} → "
        f"[bold]{move.to_version}[/] ({move.action} by {move.who} at {move.at})"
    )
    if not move.redis_updated:
        _console.print(
            "[yellow]Redis pointers were not updated[/] (ETA_REDIS_URL not set or not answering): "
            "running services learn of this move only from the local registry files"
        )


def _compare(split: Split, max_rounds: int) -> None:
    from predictor.models.tables import objectives_table
    from predictor.models.training import OBJECTIVES, TrainConfig, train_model
    from predictor.models.workflow import feature_dtypes

    metrics: dict[str, dict[str, Any]] = {}
    trees: dict[str, int] = {}
    for objective in OBJECTIVES:
        with _console.status(f"training {objective}…"):
            config = TrainConfig(objective=objective, num_boost_round=max_rounds)
            result = train_model(split, feature_dtypes(), config)
        metrics[objective], trees[objective] = result.metrics, result.best_iteration
    _console.print(objectives_table(metrics, trees))


def train(
    training_set: Path = typer.Option(..., exists=True, dir_okay=False, help="Parquet file"),
    name: str = typer.Option(None, help=_NAME_HELP),
    register_: bool = typer.Option(True, "--register/--no-register", help="add to the registry"),
    promote: str = typer.Option(None, help="also point this stage at the new version"),
    force: bool = typer.Option(False, help="keep a model that does not beat the baselines"),
    objective: str = typer.Option(
        "auto",
        help="auto (default: l1, huber and l2, then two leaf/learning-rate settings of the best, "
        "chosen by MAE on the latest training rows) | huber | l1 | l2 | log_l2",
    ),
    valid_fraction: float = typer.Option(0.2, help="latest share of orders to validate on"),
    max_rounds: int = typer.Option(2000, help="boosting rounds before early stopping"),
    out: Path = typer.Option(None, help="also keep the artifact in this directory"),
    compare_objectives: bool = typer.Option(
        False, help="train every objective on the same split, print them, register nothing"
    ),
) -> None:
    """Train the duration model on a training set, judge it against baselines, register it."""
    from predictor.models.tables import metrics_table, search_table
    from predictor.models.training import DEFAULT_OBJECTIVE, TrainConfig
    from predictor.models.workflow import load_split, train_to_artifact

    settings = Settings()
    name = name or settings.model_name
    if objective not in _OBJECTIVES:
        raise typer.BadParameter(f"{objective!r} is not one of {', '.join(_OBJECTIVES)}")
    with _errors():
        split = load_split(training_set, valid_fraction)
        _console.print(
            f"train {split.y_train.size} rows {split.train_window[0]:%Y-%m-%d %H:%M} → "
            f"{split.train_window[1]:%Y-%m-%d %H:%M}, validate {split.y_valid.size} rows up to "
            f"{split.valid_window[1]:%Y-%m-%d %H:%M} UTC ({split.dropped_labels} rows without "
            "a usable label left out)"
        )
        if compare_objectives:
            _compare(split, max_rounds)
            return
        registry = _registry(settings) if register_ else None
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        with (
            tempfile.TemporaryDirectory() as tmp,
            _console.status(f"training {objective}…") as status,
        ):
            target = out or (
                Path(tmp) / name
                if register_
                else settings.data_dir / "artifacts" / f"{name}-{stamp}"
            )
            search = objective == "auto"

            def on_candidate(config: TrainConfig) -> Callable[[int, float], None]:
                what = f"{config.objective}, {config.num_leaves} leaves, "
                what += f"lr {config.learning_rate:g}"
                return lambda i, mae: status.update(
                    f"training {what}: tree {i}, stopping-rows MAE {mae:.1f} s"
                )

            outcome = train_to_artifact(
                split,
                target,
                name=name,
                training_set=str(training_set.resolve()),
                config=TrainConfig(
                    objective=DEFAULT_OBJECTIVE if search else cast("Objective", objective),
                    num_boost_round=max_rounds,
                ),
                registry=registry,
                promote=promote,
                force=force,
                progress=lambda i, mae: status.update(f"tree {i}: stopping-rows MAE {mae:.1f} s"),
                search=search,
                on_candidate=on_candidate,
            )
        result = outcome.result
        if outcome.candidates:
            _console.print(
                search_table(
                    [
                        (
                            c.label,
                            c.result.best_iteration,
                            c.result.stop_mae_s,
                            c.result.metrics["model"]["mae_s"],
                            c.config == result.config,
                        )
                        for c in outcome.candidates
                    ],
                    outcome.searched_rows,
                    split.y_train.size,
                )
            )
        chosen = result.config
        how = (
            f"{chosen.objective} ({chosen.num_leaves} leaves, lr {chosen.learning_rate:g}) won"
            if outcome.candidates
            else objective
        )
        title = f"{name}: {how}, {result.best_iteration} trees (validation)"
        _console.print(metrics_table(result.metrics, title))
        if outcome.range is not None:
            from predictor.models.quantiles import range_table

            _console.print(range_table(outcome.range))
        if outcome.forced:
            _console.print("[bold yellow]kept with --force: it does not beat every baseline[/]")
        if outcome.version is not None:
            _console.print(
                f"registered [bold]{name}:{outcome.version}[/] in {settings.registry_dir}"
            )
        if out is not None or not register_:
            _console.print(f"artifact written to {outcome.artifact_dir}")
        if outcome.promotion is not None:
            _report_move(outcome.promotion)


@models_app.command("list")
def list_models() -> None:
    """Every model name with its versions and stages."""
    settings = Settings()
    with _errors():
        registry = _registry(settings)
        table = Table(title=f"models in {registry.root}")
        for column in ("name", "versions", "latest", "stages"):
            table.add_column(column)
        for name in registry.names():
            versions = registry.versions(name)
            stages = ", ".join(f"{s}={v}" for s, v in sorted(registry.aliases(name).items()))
            table.add_row(name, str(len(versions)), versions[-1] if versions else "—", stages)
        _console.print(table)
        for name in registry.names():  # how the versions differ: objective, data, error
            if registry.versions(name):
                _console.print(_versions_table(registry, name))


STANDARD_STAGES = ("production", "staging", "archived")
"""Stages ``eta models promote`` takes without ``--new-stage``."""


def _split_ref(ref: str, default_name: str) -> tuple[str, str | None]:
    """``NAME[:VERSION]`` apart.

    >>> _split_ref("eta:3", "x"), _split_ref("eta", "x"), _split_ref(":2", "x")
    (('eta', '3'), ('eta', None), ('x', '2'))
    """
    name, _, version = ref.partition(":")
    return name or default_name, version or None


def _versions_table(registry: Registry, name: str) -> Table:
    from predictor.errors import ArtifactError, ModelNotFoundError
    from predictor.models.artifact import read_metadata

    versions, aliases = registry.versions(name), registry.aliases(name)
    if not versions:
        raise ModelNotFoundError(registry.root, name)
    table = Table(title=f"{name} in {registry.root}")
    columns = ("version", "created", "objective", "trees", "trained on", "valid MAE (s)", "stages")
    for column in columns:
        table.add_column(column)
    for v in versions:
        stages = ", ".join(s for s, target in sorted(aliases.items()) if target == v)
        try:
            meta = read_metadata(registry.path(name, v))
        except ArtifactError as exc:  # one broken version must not hide the others
            table.add_row(v, "", f"[red]unusable: {exc.reason}[/]", "", "", "", stages)
            continue
        mae = meta.get("metrics", {}).get("validation", {}).get("model", {}).get("mae_s")
        created = str(meta.get("created_at", ""))[:19]
        trees = str(meta.get("num_trees", "—"))
        objective = str(meta.get("objective", "—"))
        shown_mae = "—" if mae is None else f"{mae:.1f}"  # an imported model has no validation
        table.add_row(v, created, objective, trees, _trained_on(meta), shown_mae, stages)
    return table


def _window(part: dict[str, Any] | None) -> str:
    if not part:
        return "—"
    return f"{part['min_created_at']} → {part['max_created_at']}, {part['rows']} rows"


def _trained_on(meta: dict[str, Any]) -> str:
    """The training rows' window and count, as a versions table shows them.

    >>> _trained_on({"training": {"train": {"min_created_at": "2026-03-01T00:00:00+00:00",
    ...     "max_created_at": "2026-03-07T23:59:00+00:00", "rows": 80000}}})
    '2026-03-01 00:00 → 2026-03-07 23:59, 80,000 rows'
    """
    train_ = meta.get("training", {}).get("train", {})
    if not train_:
        return "—"
    lo, hi = str(train_["min_created_at"]), str(train_["max_created_at"])
    return f"{lo[:16].replace('T', ' ')} → {hi[:16].replace('T', ' ')}, {train_['rows']:,} rows"


@models_app.command()
def show(ref: str = typer.Argument(..., help="NAME or NAME:VERSION")) -> None:
    """A model's versions and stage moves, or one version's metadata and metrics."""
    from predictor.models.artifact import read_metadata
    from predictor.models.tables import history_table, metrics_table

    settings = Settings()
    with _errors():
        registry = _registry(settings)
        name, version = _split_ref(ref, settings.model_name)
        if version is None:
            _console.print(_versions_table(registry, name))
            _console.print(history_table(registry.history(name)[-10:], "last stage moves"))
            return
        meta = read_metadata(registry.path(name, version))
        stages = [s for s, target in registry.aliases(name).items() if target == version]
        training = meta.get("training", {})
        info = Table(title=f"{name}:{version}", show_header=False)
        for key, value in (
            ("stages", ", ".join(stages) or "—"),
            ("created / registered", f"{meta.get('created_at')} / {meta.get('registered_at')}"),
            ("objective / trees", f"{meta.get('objective', '—')} / {meta.get('num_trees', '—')}"),
            (
                "features",
                f"{len(meta['feature_names'])} (registry {meta['feature_registry_hash']})",
            ),
            ("train", _window(training.get("train"))),
            ("valid", _window(training.get("valid"))),
            ("training set", str(meta.get("training_set"))),
            ("libraries", ", ".join(f"{k} {v}" for k, v in meta.get("libraries", {}).items())),
        ):
            info.add_row(key, value)
        _console.print(info)
        if "metrics" in meta:
            _console.print(metrics_table(meta["metrics"]["validation"], "validation metrics"))
        else:
            _console.print("no validation metrics: not trained here (see imported_from)")


@models_app.command("register")
def register_artifact(
    artifact_dir: Path = typer.Argument(
        ..., exists=True, file_okay=False, help="an exported model directory (eta train's output)"
    ),
    name: str = typer.Option(None, help="model name (default: the artifact's)"),
) -> None:
    """Verify an artifact directory and add it as the next version."""
    from predictor.models.artifact import read_metadata

    settings = Settings()
    with _errors():
        registry = _registry(settings)
        name = name or str(read_metadata(artifact_dir)["name"])
        version = registry.register(artifact_dir, name)
        _console.print(f"registered [bold]{name}:{version}[/] in {registry.root}")


@models_app.command()
def promote(
    version: str = typer.Argument(..., help="the version to point the stage at, e.g. 2"),
    stage: str = typer.Option(..., help="production, staging, archived, or an existing alias"),
    new_stage: bool = typer.Option(
        False, "--new-stage", help="create the stage if it is none of those (a custom alias)"
    ),
    name: str = typer.Option(None, help=_NAME_HELP),
) -> None:
    """Point a stage at a version (services follow it without a restart)."""
    settings = Settings()
    with _errors():
        registry = _registry(settings)
        name = name or settings.model_name
        known = sorted(set(STANDARD_STAGES) | set(registry.aliases(name)))
        if stage not in known and not new_stage:  # a typo would make a stage nobody serves
            raise typer.BadParameter(
                f"{name} has no stage {stage!r} (there: {', '.join(known)}); "
                "--new-stage creates it",
                param_hint="--stage",
            )
        _report_move(registry.promote(name, version, stage))


@models_app.command()
def rollback(
    stage: str = typer.Option("production", help="the stage to move back"),
    name: str = typer.Option(None, help=_NAME_HELP),
) -> None:
    """Point a stage back at the version it pointed at before its latest move."""
    settings = Settings()
    with _errors():
        _report_move(_registry(settings).rollback(name or settings.model_name, stage))


@models_app.command()
def history(
    name: str = typer.Option(None, help=_NAME_HELP),
    stage: str = typer.Option(None, help="only this stage"),
) -> None:
    """Every stage move: who, when, from, to."""
    from predictor.models.tables import history_table

    settings = Settings()
    with _errors():
        name = name or settings.model_name
        moves = _registry(settings).history(name, stage)
        _console.print(history_table(moves, f"{name}: stage moves"))


@models_app.command("compile")
def compile_version(
    ref: str = typer.Argument(..., help="NAME:VERSION, or NAME for its latest version"),
) -> None:
    """Compile a version with lleaves into its cache now, so a promotion swaps in at once.

    When another process is compiling the same version, this waits for its library instead
    of compiling it a second time.
    """
    from predictor.models.compiled import PARITY_TOLERANCE_S, compile_model
    from predictor.models.tables import compile_table

    settings = Settings()
    with _errors():
        registry = _registry(settings)
        name, version = _version_of(registry, ref, settings.model_name)
        ref = f"{name}:{version}"
        with _console.status(f"compiling {ref} with lleaves…") as status:

            def waiting() -> None:
                status.update(f"another process is compiling {ref}: waiting for its library…")

            model = compile_model(registry.load(name, version), on_wait=waiting)
        _console.print(compile_table(ref, model.scoring_info, PARITY_TOLERANCE_S))


@models_app.command("sync-redis")
def sync_redis() -> None:
    """Write every local stage pointer to Redis (after Redis lost its data)."""
    settings = Settings()
    with _errors():
        registry = _registry(settings)
        if registry.redis is None:
            _console.print("[yellow]no Redis (set ETA_REDIS_URL): nothing written[/]")
            raise typer.Exit(1)
        _console.print(f"{registry.sync_redis()} pointers written to Redis")


def _version_of(registry: Registry, ref: str, default_name: str) -> tuple[str, str]:
    """``NAME@STAGE``, ``NAME:VERSION`` or ``NAME`` (its latest version) as (name, version)."""
    from predictor.errors import ModelNotFoundError

    if "@" in ref:
        name, _, stage = ref.partition("@")
        name = name or default_name
        return name, registry.resolve(name, stage)
    name, version = _split_ref(ref, default_name)
    version = version or next(reversed(registry.versions(name)), None)
    if version is None:
        raise ModelNotFoundError(registry.root, name)
    return name, version


@models_app.command("export")
def export_model(
    ref: str = typer.Argument(..., help="NAME@STAGE, NAME:VERSION, or NAME for its latest"),
    mlflow: Path = typer.Option(..., "--mlflow", help="a new directory for the MLflow model"),
) -> None:
    """Write a version as an MLflow model: its LightGBM flavour and a pyfunc that scores as
    etastream does (feature order, target transform), with a signature and the feature
    registry's hash (``pip install -e '.[mlflow]'``; docs/models.md)."""
    settings = Settings()
    with _errors():
        registry = _registry(settings)
        name, version = _version_of(registry, ref, settings.model_name)
        from predictor.models.mlflow_io import export_mlflow

        out = export_mlflow(registry.load(name, version), mlflow)
    _console.print(f"{name}:{version} written as an MLflow model to {out}")


@models_app.command("import")
def import_model(
    directory: Path = typer.Argument(..., help="an MLflow LightGBM model directory"),
    name: str | None = typer.Option(None, "--name", help="model name; default ETA_MODEL_NAME"),
) -> None:
    """Register an MLflow LightGBM model whose signature names the feature registry's inputs
    in order (refused, saying why, otherwise) as the next version of NAME."""
    settings = Settings()
    with _errors():
        from predictor.models.mlflow_io import import_mlflow

        model = name or settings.model_name
        version = import_mlflow(directory, _registry(settings), model)
    _console.print(f"registered {model}:{version} from {directory}")


def register(app: typer.Typer) -> None:
    from predictor.promote_cli import promote_if_better

    models_app.command("promote-if-better")(promote_if_better)
    app.command()(train)
    app.add_typer(models_app, name="models")
