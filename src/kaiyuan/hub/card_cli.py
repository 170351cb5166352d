"""``kaiyuan card MODEL``: write and register the model card and the data cards of its datasets."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def card_command(
    model: Annotated[str, typer.Argument(help="Model, adapter, export or dataset: registry id, id prefix or name.")],
    out: Annotated[Path | None, typer.Option("--out", help="Also write the cards here: README.md (the model card) "
                                                          "and datasets/<dataset id>/README.md.")] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print the card paths and their metadata as JSON.")]
    = False,
) -> None:
    """Write Hugging Face cards from the manifests: the model card (license, base model, datasets, tags, a
    model-index of every registered evaluation; lineage, license verdict, openness grade, how it was made) and a
    data card for each dataset. Each card is registered as its own artifact (kind card) linked to what it
    documents, which is how `kaiyuan openness` finds it."""
    from kaiyuan.cli import console, print_json
    from kaiyuan.hub.card import write_cards

    cards = write_cards(model, out=out)
    if json_output:
        print_json(cards.to_dict())
        return
    for written in ([cards.model] if cards.model else []) + cards.data:
        what = "data card" if written.documents.kind == "dataset" else "model card"
        console.print(f"{what} for {written.documents.name} ({written.documents.id}): {written.card.id}",
                      markup=False, highlight=False)
        console.print(f"    {written.out or written.path}", markup=False, highlight=False)
    for warning in cards.warnings:
        console.print(f"warning: {warning}", markup=False, highlight=False, style="yellow")


def register(app: typer.Typer) -> None:
    """Add ``kaiyuan card`` to the ``kaiyuan`` app."""
    app.command("card")(card_command)
