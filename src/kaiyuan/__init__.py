"""kaiyuan (开源): an open model's whole life — data, training, evaluation, export, serving — with provenance."""

__version__ = "0.1.0"
