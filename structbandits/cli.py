"""The ``structbandits`` command line.

    structbandits demo                      the built-in demo, results under ./results/
    structbandits run CONFIG [--set k=v]    a built-in config by name or a TOML file
    structbandits list                      the built-in configs and reproductions
    structbandits reproduce NAME            a paper reproduction (ermab-fig3, ermab-fig4, gambitts-*)

A bad config or value prints one line naming the key and exits with code 2.
"""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path
from typing import Annotated, Optional

import typer

from structbandits.errors import ValidationError

app = typer.Typer(
    help="Structured Bayesian bandits: simulate and compare Thompson-sampling policies.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

OutOption = Annotated[Optional[Path], typer.Option("--out", "-o", help="Results folder (default: results/NAME-TIMESTAMP).")]
ProgressOption = Annotated[bool, typer.Option("--progress/--no-progress", help="Show a progress bar.")]


def _run_and_report(config: str, overrides: list[str], out: Path | None, progress: bool) -> None:
    from structbandits.experiments import run_config, summarize

    try:
        results, folder = run_config(config, overrides, out, progress=progress)
    except ValidationError as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(code=2) from None
    typer.echo(summarize(results).to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    typer.echo(f"Results: {folder}")


@app.command()
def demo(
    horizon: Annotated[Optional[int], typer.Option(help="Rounds per simulation (default 500).")] = None,
    seeds: Annotated[Optional[int], typer.Option(help="Simulations per agent (default 20).")] = None,
    out: OutOption = None,
    progress: ProgressOption = True,
) -> None:
    """Run the built-in demo: LinTS against uniform random on a linear bandit; prints the results path."""
    overrides = [f"{key}={value}" for key, value in (("horizon", horizon), ("seeds", seeds)) if value is not None]
    _run_and_report("demo", overrides, out, progress)


@app.command()
def run(
    config: Annotated[str, typer.Argument(help="A built-in config name (see `structbandits list`) or a TOML file.")],
    set_: Annotated[Optional[list[str]], typer.Option("--set", help="Override a key: --set agents.lints.sigma0=2 (repeatable).")] = None,
    out: OutOption = None,
    progress: ProgressOption = True,
) -> None:
    """Run an experiment config; writes results.parquet, summary.csv, config.json and plots."""
    _run_and_report(config, set_ or [], out, progress)


REPRODUCTIONS = {
    "ermab-fig3": "Equitable RMAB, Fig. 3: per-group outcomes of every policy on the synthetic domain (25 seeds, H=20)",
    "ermab-fig4": "Equitable RMAB, Fig. 4: Gini and utility of every policy on the synthetic, maternal and diabetes domains",
    "gambitts-illustrative": "GAMBITTS section 6.1: the 1-D mHealth case, po/fo-GAMBITTS vs standard TS (250 runs, 1000 rounds)",
    "gambitts-misspecification": "GAMBITTS: the agent models the wrong style dimension",
    "gambitts-arms": "GAMBITTS: K in {3, 5, 15, 30, 40} prompts",
    "gambitts-noise": "GAMBITTS: the reference's five outcome-noise levels",
    "gambitts-simulator-draws": "GAMBITTS: offline generator draws per cell in {15, 50, 100, 500, all}",
    "gambitts-dimension": "GAMBITTS: agent style dimension in {3, 5, 10, 15, 20}",
    "gambitts-nonlinear": "GAMBITTS: MLP outcome model with ensemble agents",
}


@app.command(name="list")
def list_configs() -> None:
    """List the built-in configs and the paper reproductions, one line each."""
    from structbandits.experiments import builtin_configs

    for name, path in sorted(builtin_configs().items()):
        description = tomllib.loads(path.read_text()).get("description", "")
        typer.echo(f"{name:<24} {description}")
    for name, description in REPRODUCTIONS.items():
        typer.echo(f"{name:<24} (reproduce) {description}")


@app.command()
def reproduce(
    name: Annotated[str, typer.Argument(help=f"One of: {', '.join(REPRODUCTIONS)}.")],
    seeds: Annotated[Optional[int], typer.Option(help="Simulations per setting and policy (ermab: 25, gambitts: 250).")] = None,
    horizon: Annotated[int, typer.Option(help="Rounds per simulation (gambitts only).")] = 1000,
    out: OutOption = None,
    progress: ProgressOption = True,
) -> None:
    """Run a paper reproduction; writes its tidy results, summary table and figures to the results folder."""
    if name not in REPRODUCTIONS:
        typer.echo(f"error: name: expected one of {', '.join(REPRODUCTIONS)}, got {name!r}", err=True)
        raise typer.Exit(code=2)
    seeds = seeds if seeds is not None else (250 if name.startswith("gambitts") else 25)
    if seeds < 1 or horizon < 1:
        typer.echo(f"error: {'seeds' if seeds < 1 else 'horizon'}: expected an integer >= 1", err=True)
        raise typer.Exit(code=2)
    from structbandits.experiments.pipeline import default_output_dir

    folder = Path(out) if out is not None else default_output_dir(name)
    if name.startswith("gambitts"):
        from structbandits.experiments import summarize
        from structbandits.experiments.gambitts import run_gambitts_experiment

        results = run_gambitts_experiment(name, runs=seeds, horizon=horizon, out=folder, progress=progress)
        typer.echo(summarize(results).to_string(index=False, float_format=lambda v: f"{v:.3f}"))
        typer.echo(f"Results: {folder.resolve()}")
        return
    from structbandits.experiments.restless import run_ermab_figure, summarise_restless

    frame = run_ermab_figure(name.removeprefix("ermab-"), seeds=seeds, out=folder, progress=progress)
    typer.echo(summarise_restless(frame).to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    typer.echo(f"Wall time: {frame.attrs['wall_s']:.1f} s")
    typer.echo(f"Results: {folder.resolve()}")


def main() -> None:
    """Console-script entry point."""
    app(prog_name="structbandits")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
