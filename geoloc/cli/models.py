"""`geoloc models list|show`: the model registry."""

from __future__ import annotations

import json

import click

COMMANDS = ["models"]


@click.group()
def models() -> None:
    """Show the registered models (trained with 'geoloc train').

    Example: geoloc models list
    """


def _pct(value) -> str:
    return "-" if value is None else f"{100 * value:.1f}"


@models.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array instead of a table.")
def list_(as_json: bool) -> None:
    """List the registered models, newest first.

    Example: geoloc models list --json
    """
    from ..db.models import list_models

    rows = list_models()
    if as_json:
        out = [{k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in r._mapping.items()} for r in rows]
        click.echo(json.dumps(out, indent=1))
        return
    if not rows:
        click.echo("no models registered (train one with 'geoloc train --name NAME')")
        return
    click.echo(f"{'name':24} {'backbone':17} {'dim':>4} {'px':>4} {'status':8} {'epochs':>6} {'R@1 %':>6} {'minutes':>7}")
    for r in rows:
        minutes = "-" if r.train_seconds is None else f"{r.train_seconds / 60:.1f}"
        click.echo(f"{r.name:24} {r.backbone:17} {r.dim:>4} {r.input_size:>4} {r.status:8} {r.epochs:>6} "
                   f"{_pct(r.recall_at_1):>6} {minutes:>7}")


@models.command()
@click.argument("name")
def show(name: str) -> None:
    """Print everything the registry knows about one model (JSON): settings, data, history, weights.

    Example: geoloc models show mnv3s-160
    """
    from ..db.models import show_model

    click.echo(json.dumps(show_model(None, name), indent=1))


from .models_whiten import whiten  # noqa: E402  (its own file: the command is longer than the rest)

models.add_command(whiten)
